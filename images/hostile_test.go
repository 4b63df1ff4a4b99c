package images_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"

	"github.com/otel-go-launcher/otel-go-launcher/images"
	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// Hostile inputs, made byte by byte as an attacker would make them: each test is the
// regression test of one finding of the privilege boundary review.

// rawLayout writes an OCI layout's files by hand.
type rawLayout struct {
	t   *testing.T
	dir string
}

func newRawLayout(t *testing.T) *rawLayout {
	t.Helper()
	l := &rawLayout{t: t, dir: filepath.Join(t.TempDir(), "layout")}
	os.MkdirAll(filepath.Join(l.dir, "blobs", "sha256"), 0o755)
	l.write("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	return l
}

func (l *rawLayout) write(name string, b []byte) {
	l.t.Helper()
	if err := os.WriteFile(filepath.Join(l.dir, name), b, 0o644); err != nil {
		l.t.Fatal(err)
	}
}

func sha(b []byte) v1.Hash {
	h := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h[:])}
}

func (l *rawLayout) blob(b []byte, mt types.MediaType) v1.Descriptor {
	d := v1.Descriptor{MediaType: mt, Size: int64(len(b)), Digest: sha(b)}
	l.write("blobs/sha256/"+d.Digest.Hex, b)
	return d
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func (l *rawLayout) index(children ...v1.Descriptor) v1.Descriptor {
	return l.blob(mustJSON(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: children}), types.OCIImageIndex)
}

// top makes index.json list the descriptors.
func (l *rawLayout) top(ds ...v1.Descriptor) {
	l.write("index.json", mustJSON(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: ds}))
}

// tarOf is a layer's tar of files, in the order given (name, content, name, ...).
func tarOf(files ...string) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for i := 0; i < len(files); i += 2 {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: files[i], Mode: 0o755, Size: int64(len(files[i+1])), Format: tar.FormatPAX})
		tw.Write([]byte(files[i+1]))
	}
	tw.Close()
	return b.Bytes()
}

func zstdOf(b []byte) []byte {
	zw, _ := zstd.NewWriter(nil)
	return zw.EncodeAll(b, nil)
}

func gz(b []byte) []byte {
	var out bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&out, gzip.BestSpeed)
	zw.Write(b)
	zw.Close()
	return out.Bytes()
}

// image writes an image of the stored layers, whose config gives diffIDs.
func (l *rawLayout) image(layers [][]byte, diffIDs []v1.Hash) v1.Descriptor {
	config := mustJSON(map[string]any{"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Entrypoint": []string{"/app"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}})
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, Config: l.blob(config, types.OCIConfigJSON)}
	for _, layer := range layers {
		m.Layers = append(m.Layers, l.blob(layer, types.OCILayer))
	}
	return l.blob(mustJSON(m), types.OCIManifestSchema1)
}

// leaf is a good one-layer image.
func (l *rawLayout) leaf() v1.Descriptor {
	layer := tarOf("app", "#!/bin/true\n")
	return l.image([][]byte{gz(layer)}, []v1.Hash{sha(layer)})
}

func fakeLauncher() images.Launchers {
	return &images.BinaryLauncher{Binary: testenv.FakeELF(testenv.ELFMachineAMD64, "launch"), Source: "test"}
}

// oneLine fails unless err is an error of one line that says want.
func oneLine(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one saying %q", want)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error of more than one line: %q", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
}

// noLeftovers fails if dir holds anything but the names given: a temporary file or
// directory left behind, or a destination written despite a failure.
func noLeftovers(t *testing.T, dir string, keep ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !slices.Contains(keep, e.Name()) {
			t.Errorf("left in %s: %s", dir, e.Name())
		}
	}
}

// wrapTo reads src, wraps it and writes it to dst with the limits given.
func wrapTo(ctx context.Context, lim images.Limits, src, dst string) error {
	rw := &images.IO{Limits: lim}
	defer rw.Close()
	srcRef, err := images.ParseRef(src)
	if err != nil {
		return err
	}
	dstRef, err := images.ParseRef(dst)
	if err != nil {
		return err
	}
	in, err := rw.Read(ctx, srcRef)
	if err != nil {
		return err
	}
	out, err := images.Wrap(ctx, in, fakeLauncher(), nil, images.Options{})
	if err != nil {
		return err
	}
	return rw.Write(ctx, dstRef, out, "app:1")
}

// A few kilobytes of layout, indexes nested 20 deep each naming its child twice, cost
// 2^20 wraps (over ten minutes) before the visited set and the depth limit: now one
// line, at once. Nested to the limit, it wraps each distinct index once.
func TestNestedIndexes(t *testing.T) {
	nested := func(depth int) string {
		l := newRawLayout(t)
		d := l.leaf()
		for range depth {
			d = l.index(d, d)
		}
		l.top(d)
		return l.dir
	}
	deep := nested(20)
	start := time.Now()
	err := wrapTo(context.Background(), images.Limits{}, "oci:"+deep, "oci:"+filepath.Join(t.TempDir(), "out"))
	oneLine(t, err, "nests indexes 9 deep, over the limit of 8")
	if !errors.Is(err, images.ErrLimit) {
		t.Errorf("%v: not an ErrLimit", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("refusing 20 nested indexes took %v", d)
	}

	// 8 deep (the limit), each index naming its child twice: 2^8 = 256 paths to one
	// image, wrapped once; every blob written once.
	out := filepath.Join(t.TempDir(), "out")
	start = time.Now()
	if err := wrapTo(context.Background(), images.Limits{}, "oci:"+nested(8), "oci:"+out); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("wrapping 8 nested indexes took %v", d)
	}
	blobs, _ := os.ReadDir(filepath.Join(out, "blobs", "sha256"))
	// 8 indexes, the manifest, the config, the image's layer and the launcher's.
	if len(blobs) != 12 {
		t.Errorf("%d blobs written, want 12", len(blobs))
	}
}

// countingIndex counts the children opened through it, by digest.
type countingIndex struct {
	index
	opened map[v1.Hash]int
}

// index is v1.ImageIndex under a name that does not hide its method ImageIndex.
type index = v1.ImageIndex

func (x *countingIndex) Image(h v1.Hash) (v1.Image, error) {
	x.opened[h]++
	return x.index.Image(h)
}

func (x *countingIndex) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	x.opened[h]++
	child, err := x.index.ImageIndex(h)
	return &countingIndex{index: child, opened: x.opened}, err
}

// Wrap opens each distinct index and image once, however often indexes name them.
func TestWrapVisitsEachManifestOnce(t *testing.T) {
	l := newRawLayout(t)
	d := l.leaf()
	for range 6 {
		d = l.index(d, d, d)
	}
	l.top(d)
	rw := &images.IO{}
	defer rw.Close()
	in, err := rw.Read(context.Background(), images.Ref{Transport: images.OCILayout, Path: l.dir})
	if err != nil {
		t.Fatal(err)
	}
	opened := map[v1.Hash]int{}
	in.Index = &countingIndex{index: in.Index, opened: opened}
	if _, err := images.Wrap(context.Background(), in, fakeLauncher(), nil, images.Options{}); err != nil {
		t.Fatal(err)
	}
	if len(opened) != 6 { // 5 indexes below the top, 1 image
		t.Errorf("opened %d distinct manifests, want 6", len(opened))
	}
	for h, n := range opened {
		if n != 1 {
			t.Errorf("opened %s %d times, want once", h, n)
		}
	}
}

// sparseEntry writes a PAX (GNU 1.0) sparse file of size bytes of which only the
// last is stored: tar readers expand the rest, the hole, to zeros. archive/tar writes
// no sparse files (it drops GNU.sparse records), so the extended header is made here.
func sparseEntry(tw *tar.Writer, w *bytes.Buffer, name string, size int64) error {
	var records []byte
	for _, kv := range [][2]string{{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"}, {"GNU.sparse.name", name}, {"GNU.sparse.realsize", fmt.Sprint(size)}} {
		rec := " " + kv[0] + "=" + kv[1] + "\n"
		n := len(rec) + 1
		for len(fmt.Sprint(n))+len(rec) != n {
			n++
		}
		records = append(records, fmt.Sprint(n)+rec...)
	}
	if err := headerAs(tw, w, &tar.Header{Typeflag: tar.TypeReg, Name: "PaxHeaders/" + name, Size: int64(len(records)), Mode: 0o644, Format: tar.FormatUSTAR}, records, func(h []byte) { h[156] = tar.TypeXHeader }); err != nil {
		return err
	}
	sparseMap := make([]byte, 512)
	copy(sparseMap, fmt.Sprintf("1\n%d\n1\n", size-1))
	return headerAs(tw, w, &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: 513, Mode: 0o644, Format: tar.FormatUSTAR}, append(sparseMap, 'x'), nil)
}

// gnuSparseEntry is the same in GNU's older form: type 'S', the map in the header.
func gnuSparseEntry(tw *tar.Writer, w *bytes.Buffer, name string, size int64) error {
	octal := func(b []byte, v int64) { copy(b, fmt.Sprintf("%0*o", len(b)-1, v)) }
	return headerAs(tw, w, &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: 1, Mode: 0o644, Format: tar.FormatGNU}, []byte{'x'}, func(h []byte) {
		h[156] = tar.TypeGNUSparse
		octal(h[386:398], size-1) // one region: the last byte
		octal(h[398:410], 1)
		octal(h[483:495], size) // the real size
	})
}

// headerAs writes an entry as archive/tar makes it, then edits its header block with
// edit and sets the block's checksum again.
func headerAs(tw *tar.Writer, w *bytes.Buffer, hdr *tar.Header, data []byte, edit func(h []byte)) error {
	if err := tw.Flush(); err != nil {
		return err
	}
	start := w.Len()
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	tw.Write(data)
	if err := tw.Flush(); err != nil {
		return err
	}
	if edit == nil {
		return nil
	}
	h := w.Bytes()[start : start+512]
	edit(h)
	copy(h[148:156], "        ")
	var sum int64
	for _, c := range h {
		sum += int64(c)
	}
	copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return nil
}

// An OCI archive with a sparse entry of 1 GiB was extracted to /tmp in full: now
// refused, reading its headers only, whatever the sparse form.
func TestSparseArchiveEntry(t *testing.T) {
	for _, form := range []string{"pax", "gnu"} {
		t.Run(form, func(t *testing.T) {
			tmp := t.TempDir()
			t.Setenv("TMPDIR", tmp)
			var b bytes.Buffer
			tw := tar.NewWriter(&b)
			layout := []byte(`{"imageLayoutVersion":"1.0.0"}`)
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "oci-layout", Size: int64(len(layout)), Mode: 0o644})
			tw.Write(layout)
			name := "blobs/sha256/" + strings.Repeat("ab", 32)
			var err error
			if form == "pax" {
				err = sparseEntry(tw, &b, name, 1<<30)
			} else {
				err = gnuSparseEntry(tw, &b, name, 1<<30)
			}
			if err != nil {
				t.Fatal(err)
			}
			tw.Close()
			dir := t.TempDir()
			archive := filepath.Join(dir, "sparse.tar")
			os.WriteFile(archive, b.Bytes(), 0o644)
			if b.Len() > 8<<10 {
				t.Fatalf("the archive is %d bytes", b.Len())
			}
			err = wrapTo(context.Background(), images.Limits{}, "oci-archive:"+archive, "oci:"+filepath.Join(dir, "out"))
			oneLine(t, err, archive, "sparse file: refused")
			noLeftovers(t, tmp)
			noLeftovers(t, dir, "sparse.tar")
		})
	}
}

// A gzipped layer that does not uncompress to its config's diff ID was written
// as if it did: now refused, for every destination that reads the layer, with
// nothing left at the destination. A layer whose bytes are not its digest's, the same.
func TestLayerDiffIDChecked(t *testing.T) {
	good := tarOf("app", "#!/bin/true\n")
	evil := tarOf("app", "#!/bin/rm -rf /\n")
	for name, c := range map[string]struct {
		layers  [][]byte
		diffIDs []v1.Hash
		tamper  func(l *rawLayout, layer v1.Hash)
		want    []string
	}{
		"gzipped":      {[][]byte{gz(evil)}, []v1.Hash{sha(good)}, nil, []string{"not to the diff ID its image config gives (" + sha(good).String() + ")"}},
		"uncompressed": {[][]byte{evil}, []v1.Hash{sha(good)}, nil, []string{"not to the diff ID its image config gives"}},
		"zstd":         {[][]byte{zstdOf(evil)}, []v1.Hash{sha(good)}, nil, []string{"not to the diff ID its image config gives"}},
		"zstd garbage": {[][]byte{append([]byte{0x28, 0xb5, 0x2f, 0xfd}, evil...)}, []v1.Hash{sha(good)}, nil, []string{"uncompressing it", "the image is corrupt"}},
		"blob changed": {[][]byte{gz(good)}, []v1.Hash{sha(good)}, func(l *rawLayout, layer v1.Hash) {
			l.write("blobs/sha256/"+layer.Hex, gz(evil)[:len(gz(good))])
		}, []string{"the image is corrupt or tampered with"}},
	} {
		for _, dst := range []string{"oci:%s/out", "oci-archive:%s/out.tar", "docker-archive:%s/out.tar"} {
			t.Run(name+"/"+strings.Split(dst, ":")[0], func(t *testing.T) {
				l := newRawLayout(t)
				d := l.image(c.layers, c.diffIDs)
				l.top(d)
				if c.tamper != nil {
					c.tamper(l, sha(c.layers[0]))
				}
				dir := t.TempDir()
				err := wrapTo(context.Background(), images.Limits{}, "oci:"+l.dir, fmt.Sprintf(dst, dir))
				oneLine(t, err, c.want...)
				noLeftovers(t, dir)
			})
		}
	}

	// A docker archive's gzipped layer, copied as stored to another docker archive.
	dir := t.TempDir()
	src := filepath.Join(dir, "src.tar")
	f, _ := os.Create(src)
	tw := tar.NewWriter(f)
	config := mustJSON(map[string]any{"architecture": "amd64", "os": "linux", "config": map[string]any{"Entrypoint": []string{"/app"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []v1.Hash{sha(good)}}})
	manifest := mustJSON([]map[string]any{{"Config": "config.json", "RepoTags": []string{"app:1"}, "Layers": []string{"layer.tar.gz"}}})
	for _, e := range []struct {
		name string
		b    []byte
	}{{"config.json", config}, {"layer.tar.gz", gz(evil)}, {"manifest.json", manifest}} {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: e.name, Size: int64(len(e.b)), Mode: 0o644})
		tw.Write(e.b)
	}
	tw.Close()
	f.Close()
	err := wrapTo(context.Background(), images.Limits{}, "docker-archive:"+src, "docker-archive:"+filepath.Join(dir, "out.tar"))
	oneLine(t, err, "layer.tar.gz uncompresses to "+sha(evil).String(), "not to the diff ID")
	noLeftovers(t, dir, "src.tar")
}

// copyTree copies a directory of regular files.
func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// tree lists a directory's files and their contents, symlinks as their targets.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			files[rel] = "-> " + target
		case d.IsDir():
			files[rel] = "/"
		default:
			b, _ := os.ReadFile(p)
			files[rel] = string(b)
		}
		return nil
	})
	return files
}

func sameTree(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s changed", what, k)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: %s appeared", what, k)
		}
	}
}

// Writing into an existing layout followed a symlinked blobs/ out of it: now each of
// the layout's own files and directories that is a symlink is refused, and neither
// what it points to nor the layout changes.
func TestExistingLayoutSymlinks(t *testing.T) {
	base := t.TempDir()
	first := newRawLayout(t)
	first.top(first.leaf())
	layout := filepath.Join(base, "layout")
	if err := wrapTo(context.Background(), images.Limits{}, "oci:"+first.dir, "oci:"+layout+":v1"); err != nil {
		t.Fatal(err)
	}
	// The next image's blobs, one of which will be planted as a symlink.
	next := newRawLayout(t)
	nextLayer := tarOf("other", "x")
	next.top(next.image([][]byte{gz(nextLayer)}, []v1.Hash{sha(nextLayer)}))
	nextBlob := "blobs/sha256/" + sha(gz(nextLayer)).Hex

	for _, planted := range []string{"blobs", "blobs/sha256", "index.json", "oci-layout", nextBlob} {
		t.Run(strings.ReplaceAll(planted, "/", "_"), func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "layout")
			copyTree(t, layout, dst)
			victim := filepath.Join(t.TempDir(), "victim")
			target := filepath.Join(dst, planted)
			if _, err := os.Stat(target); err == nil {
				os.Rename(target, victim) // what the layout held, moved out
			} else {
				os.WriteFile(victim, []byte("victim"), 0o644)
			}
			if err := os.Symlink(victim, target); err != nil {
				t.Fatal(err)
			}
			before, victimBefore := tree(t, dst), tree(t, filepath.Dir(victim))
			err := wrapTo(context.Background(), images.Limits{}, "oci:"+next.dir, "oci:"+dst+":v2")
			oneLine(t, err, filepath.Join(dst, planted)+" is a symlink: refused")
			sameTree(t, "the layout", tree(t, dst), before)
			sameTree(t, "the symlink's target", tree(t, filepath.Dir(victim)), victimBefore)
		})
	}

	// Without symlinks: written in place, v1 kept.
	if err := wrapTo(context.Background(), images.Limits{}, "oci:"+next.dir, "oci:"+layout+":v2"); err != nil {
		t.Fatal(err)
	}
	rw := &images.IO{}
	defer rw.Close()
	for _, tag := range []string{"v1", "v2"} {
		if _, err := rw.Read(context.Background(), images.Ref{Transport: images.OCILayout, Path: layout, Name: tag}); err != nil {
			t.Errorf("%s: %v", tag, err)
		}
	}
	noLeftovers(t, layout, "blobs", "index.json", "oci-layout")
}

// The temporary file had a predictable name (.DST.launch-wrap.tmp), removed and made
// again without O_EXCL|O_NOFOLLOW: whoever could write to DST's directory could put a
// symlink there in between, and root wrote the archive into its target. Now the name
// is random and the file made exclusively: a symlink at the old name, and another
// process turning every new name in the directory into a symlink as fast as it can,
// never get the victim written.
func TestTempFileRace(t *testing.T) {
	l := newRawLayout(t)
	l.top(l.leaf())
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("victim"), 0o644)
	for _, dst := range []string{"out.tar", "oci.tar"} {
		os.Symlink(victim, filepath.Join(dir, "."+dst+".launch-wrap.tmp"))
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	var swapped atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			// The old names, planted again the moment they are free.
			for _, dst := range []string{"out.tar", "oci.tar"} {
				os.Symlink(victim, filepath.Join(dir, "."+dst+".launch-wrap.tmp"))
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if e.Type()&fs.ModeSymlink != 0 || !strings.Contains(e.Name(), "launch-wrap") {
					continue
				}
				p := filepath.Join(dir, e.Name())
				if os.Remove(p) == nil && os.Symlink(victim, p) == nil {
					swapped.Add(1)
				}
			}
		}
	}()
	for i := range 20 {
		dst := []string{"docker-archive:%s/out.tar", "oci-archive:%s/oci.tar"}[i%2]
		err := wrapTo(context.Background(), images.Limits{}, "oci:"+l.dir, fmt.Sprintf(dst, dir))
		if err != nil && !strings.Contains(err.Error(), "replaced by someone else") && !strings.Contains(err.Error(), "no such file") {
			t.Errorf("write %d: %v", i, err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if b, _ := os.ReadFile(victim); string(b) != "victim" {
		t.Errorf("the victim was written: %d bytes", len(b))
	}
	t.Logf("%d temporary files turned into symlinks", swapped.Load())
}

// Every limit, each in one line that says what went over which limit.
func TestLimits(t *testing.T) {
	threeLayers := func(l *rawLayout) v1.Descriptor {
		var stored [][]byte
		var ids []v1.Hash
		for i := range 3 {
			u := tarOf(fmt.Sprint("f", i), "x")
			stored, ids = append(stored, gz(u)), append(ids, sha(u))
		}
		return l.image(stored, ids)
	}
	bomb := make([]byte, 2<<20) // 2 MiB of zeros, a few KiB gzipped
	for name, c := range map[string]struct {
		lim  images.Limits
		make func(l *rawLayout)
		want string
	}{
		"index entries": {images.Limits{IndexEntries: 2}, func(l *rawLayout) {
			d := l.leaf()
			l.top(l.index(d, d, d))
		}, "lists 3 manifests, over the limit of 2"},
		"layout entries": {images.Limits{IndexEntries: 2}, func(l *rawLayout) {
			d := l.leaf()
			l.top(d, d, d)
		}, "lists 3 manifests, over the limit of 2"},
		"distinct manifests": {images.Limits{Manifests: 3}, func(l *rawLayout) {
			other := tarOf("other", "x")
			l.top(l.index(l.leaf(), threeLayers(l), l.image([][]byte{gz(other)}, []v1.Hash{sha(other)})))
		}, "more than 3 distinct manifests and indexes"},
		"layers":        {images.Limits{Layers: 2}, func(l *rawLayout) { l.top(threeLayers(l)) }, "an image of 3 layers, over the limit of 2"},
		"manifest size": {images.Limits{ManifestSize: 300}, func(l *rawLayout) { l.top(threeLayers(l)) }, "over the limit of 300"},
		"config size":   {images.Limits{ConfigSize: 100}, func(l *rawLayout) { l.top(l.leaf()) }, "over the limit of 100"},
		"layer size": {images.Limits{LayerSize: 1 << 10}, func(l *rawLayout) {
			big := tarOf("big", strings.Repeat("x", 4<<10))
			l.top(l.image([][]byte{big}, []v1.Hash{sha(big)}))
		}, "over the limit of 1KiB (--max-layer-size)"},
		"uncompressed size": {images.Limits{LayerSize: 1 << 20}, func(l *rawLayout) {
			l.top(l.image([][]byte{gz(bomb)}, []v1.Hash{sha(bomb)}))
		}, "is over 1MiB uncompressed, the limit (--max-layer-size)"},
	} {
		t.Run(name, func(t *testing.T) {
			l := newRawLayout(t)
			c.make(l)
			dir := t.TempDir()
			err := wrapTo(context.Background(), c.lim, "oci:"+l.dir, "oci:"+filepath.Join(dir, "out"))
			oneLine(t, err, c.want)
			if !errors.Is(err, images.ErrLimit) {
				t.Errorf("%v: not an ErrLimit", err)
			}
			noLeftovers(t, dir)
		})
	}

	// An archive of more entries than the limit, and one entry larger than it.
	dir := t.TempDir()
	archive := filepath.Join(dir, "many.tar")
	f, _ := os.Create(archive)
	tw := tar.NewWriter(f)
	for i := range 10 {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprint("f", i), Size: 2 << 10, Mode: 0o644})
		tw.Write(make([]byte, 2<<10))
	}
	tw.Close()
	f.Close()
	for _, c := range []struct {
		lim  images.Limits
		want string
	}{
		{images.Limits{ArchiveEntries: 5}, "more than 5 entries, the limit for an OCI archive"},
		{images.Limits{LayerSize: 1 << 10}, `entry "f0" is 2048 bytes, over the limit of 1KiB (--max-layer-size)`},
	} {
		err := wrapTo(context.Background(), c.lim, "oci-archive:"+archive, "oci:"+filepath.Join(dir, "out"))
		oneLine(t, err, c.want)
		if !errors.Is(err, images.ErrLimit) {
			t.Errorf("%v: not an ErrLimit", err)
		}
	}
	noLeftovers(t, dir, "many.tar")
}

// An interrupted write (its context cancelled mid-layer) stops, leaves nothing at the
// destination and no temporary file; an existing layout is as it was.
func TestWriteInterrupted(t *testing.T) {
	l := newRawLayout(t)
	noise := make([]byte, 16<<20) // incompressible: a gzip of it takes a while
	rand.New(rand.NewSource(1)).Read(noise)
	layer := tarOf("noise", string(noise))
	l.top(l.image([][]byte{gz(layer)}, []v1.Hash{sha(layer)}))

	existing := filepath.Join(t.TempDir(), "existing")
	small := newRawLayout(t)
	small.top(small.leaf())
	if err := wrapTo(context.Background(), images.Limits{}, "oci:"+small.dir, "oci:"+existing); err != nil {
		t.Fatal(err)
	}
	existingBefore := tree(t, existing)

	for _, dst := range []string{"oci:%s/out", "oci-archive:%s/out.tar", "docker-archive:%s/out.tar", "oci:" + existing} {
		t.Run(strings.Split(dst, ":")[0], func(t *testing.T) {
			dir := t.TempDir()
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			interrupted := errors.New("interrupted")
			var once sync.Once
			var cancelled time.Time
			rw := &images.IO{Progress: func(complete, total int64) {
				if complete > 0 {
					once.Do(func() { cancelled = time.Now(); cancel(interrupted) })
				}
			}}
			defer rw.Close()
			in, err := rw.Read(ctx, images.Ref{Transport: images.OCILayout, Path: l.dir})
			if err != nil {
				t.Fatal(err)
			}
			out, err := images.Wrap(ctx, in, fakeLauncher(), nil, images.Options{})
			if err != nil {
				t.Fatal(err)
			}
			ref, _ := images.ParseRef(strings.ReplaceAll(dst, "%s", dir))
			err = rw.Write(ctx, ref, out, "app:1")
			if !errors.Is(err, interrupted) {
				t.Fatalf("an interrupted write: %v, want the context's cause", err)
			}
			if d := time.Since(cancelled); d > time.Second {
				t.Errorf("stopped %v after the interrupt", d)
			}
			noLeftovers(t, dir)
			sameTree(t, "the existing layout", tree(t, existing), existingBefore)
		})
	}

	// A read interrupted before it starts does not start.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rw := &images.IO{}
	defer rw.Close()
	if _, err := rw.Read(ctx, images.Ref{Transport: images.OCILayout, Path: l.dir}); !errors.Is(err, context.Canceled) {
		t.Errorf("a read with its context done: %v", err)
	}
}

// Errors keep their causes (%w) through every layer of wrapping.
func TestErrorsWrapCauses(t *testing.T) {
	rw := &images.IO{}
	defer rw.Close()
	for _, ref := range []images.Ref{
		{Transport: images.DockerArchive, Path: filepath.Join(t.TempDir(), "missing.tar")},
		{Transport: images.OCIArchive, Path: filepath.Join(t.TempDir(), "missing.tar")},
		{Transport: images.OCILayout, Path: filepath.Join(t.TempDir(), "missing")},
	} {
		if _, err := rw.Read(context.Background(), ref); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("reading %s: %v, not fs.ErrNotExist", ref, err)
		}
	}
	var syntax *json.SyntaxError
	l := newRawLayout(t)
	l.write("index.json", []byte("{not json"))
	if _, err := rw.Read(context.Background(), images.Ref{Transport: images.OCILayout, Path: l.dir}); !errors.As(err, &syntax) {
		t.Errorf("reading a layout of bad JSON: %v, not a *json.SyntaxError", err)
	}
	if _, err := images.ParseRef("docker-daemon:A!"); err == nil || errors.Unwrap(err) == nil {
		t.Errorf("ParseRef: %v has no cause", err)
	}
}
