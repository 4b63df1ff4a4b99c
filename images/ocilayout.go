package images

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"

	"github.com/otel-go-launcher/otel-go-launcher/images/internal/rawconfig"
)

// OCI image layouts (oci:DIR) and their archives (oci-archive:PATH) are read and
// written here rather than by go-containerregistry's layout package, which opens
// every path by name (following symlinks, a planted blobs/ included), reads blobs
// without checking them against their digests or bounding their size, and would
// need an archive extracted to disk first.

// refNameAnnotation names an image in an OCI layout's index.json.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// layoutVersionFile is the oci-layout file's content.
const layoutVersionFile = `{"imageLayoutVersion":"1.0.0"}`

// blobPath is where a layout holds the blob h; digests are checked here because they
// come from the input and become paths.
func blobPath(h v1.Hash) (string, error) {
	if h.Algorithm != "sha256" || len(h.Hex) != 64 || strings.Trim(h.Hex, "0123456789abcdef") != "" {
		return "", fmt.Errorf("digest %q: not a sha256 digest", h.String())
	}
	return "blobs/sha256/" + h.Hex, nil
}

// layoutFiles are the files of a layout: a directory's or an archive's.
type layoutFiles interface {
	// open opens a file by its path in the layout ("index.json", "blobs/sha256/…")
	// and says its size.
	open(name string) (io.ReadCloser, int64, error)
	describe(name string) string
}

// dirFiles reads a layout directory, following no symlink inside it.
type dirFiles struct {
	ctx context.Context
	d   *dirHandle
}

func (f dirFiles) open(name string) (io.ReadCloser, int64, error) {
	parts := strings.Split(name, "/")
	d := f.d
	for _, p := range parts[:len(parts)-1] {
		sub, _, err := d.subdir(p, false)
		if err != nil {
			return nil, 0, err
		}
		if d != f.d {
			d.Close()
		}
		d = sub
	}
	file, err := d.open(parts[len(parts)-1])
	if d != f.d {
		d.Close()
	}
	if err != nil {
		return nil, 0, err
	}
	st, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, 0, err
	}
	return withContext(f.ctx, file), st.Size(), nil
}

func (f dirFiles) describe(name string) string { return f.d.join(name) }

// layoutReader reads the manifests and configs of a layout, each bounded and checked
// against its digest, and opens its layers.
type layoutReader struct {
	files layoutFiles
	lim   Limits
}

// small reads a file of at most limit bytes whole.
func (r *layoutReader) small(name string, limit int64, what string) ([]byte, error) {
	rc, size, err := r.files.open(name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if size > limit {
		return nil, overLimit("%s (%s) is %d bytes, over the limit of %s; %s", r.files.describe(name), what, size, FormatSize(limit), malformedHint)
	}
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", r.files.describe(name), err)
	}
	if int64(len(b)) > limit {
		return nil, overLimit("%s (%s) is over the limit of %s; %s", r.files.describe(name), what, FormatSize(limit), malformedHint)
	}
	return b, nil
}

// blob reads the blob d describes, checked against its digest and size.
func (r *layoutReader) blob(d v1.Descriptor, limit int64, what string) ([]byte, error) {
	name, err := blobPath(d.Digest)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if d.Size > limit {
		return nil, overLimit("%s %s is %d bytes, over the limit of %s; %s", what, d.Digest, d.Size, FormatSize(limit), malformedHint)
	}
	b, err := r.small(name, limit, what)
	if err != nil {
		return nil, err
	}
	if h := sha256.Sum256(b); hex.EncodeToString(h[:]) != d.Digest.Hex || int64(len(b)) != d.Size {
		return nil, fmt.Errorf("%s: its %d bytes do not have the digest and size its descriptor gives (%s, %d): the layout is corrupt or tampered with", r.files.describe(name), len(b), d.Digest, d.Size)
	}
	return b, nil
}

// readLayout opens the manifest of a layout named tag, or its only one; where names
// the layout in errors (oci:DIR).
func readLayout(files layoutFiles, tag, where string, lim Limits) (Artifact, error) {
	r := &layoutReader{files: files, lim: lim}
	raw, err := r.small("index.json", lim.ManifestSize, "the layout's index")
	if err != nil {
		return Artifact{}, fmt.Errorf("not an OCI layout: %w", err)
	}
	im, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return Artifact{}, fmt.Errorf("%s: %w", files.describe("index.json"), err)
	}
	if len(im.Manifests) > lim.IndexEntries {
		return Artifact{}, overLimit("%s lists %d manifests, over the limit of %d; %s", files.describe("index.json"), len(im.Manifests), lim.IndexEntries, malformedHint)
	}
	var names []string
	var found []v1.Descriptor
	for _, d := range im.Manifests {
		n := d.Annotations[refNameAnnotation]
		names = append(names, fmt.Sprintf("%q", n))
		if tag == "" || n == tag {
			found = append(found, d)
		}
	}
	switch {
	case len(found) == 0 && tag != "":
		return Artifact{}, fmt.Errorf("no image named %q in the layout (it has %s)", tag, strings.Join(names, ", "))
	case len(found) == 0:
		return Artifact{}, fmt.Errorf("the layout holds no image")
	case len(found) > 1:
		return Artifact{}, fmt.Errorf("the layout holds %d images (%s): name one, %s:NAME", len(found), strings.Join(names, ", "), where)
	}
	d := found[0]
	switch {
	case d.MediaType.IsIndex():
		idx, err := r.index(d)
		return Artifact{Index: idx}, err
	case d.MediaType.IsImage():
		img, err := r.image(d)
		return Artifact{Image: img}, err
	}
	return Artifact{}, fmt.Errorf("%s: the layout's entry %s has media type %q, neither an image nor an index", where, d.Digest, d.MediaType)
}

func (r *layoutReader) index(d v1.Descriptor) (v1.ImageIndex, error) {
	raw, err := r.blob(d, r.lim.ManifestSize, "index")
	if err != nil {
		return nil, err
	}
	im, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("index %s: %w", d.Digest, err)
	}
	mt := d.MediaType
	if im.MediaType != "" {
		mt = im.MediaType
	}
	return &layoutIndex{r: r, raw: raw, im: im, mt: mt, digest: d.Digest}, nil
}

func (r *layoutReader) image(d v1.Descriptor) (v1.Image, error) {
	raw, err := r.blob(d, r.lim.ManifestSize, "manifest")
	if err != nil {
		return nil, err
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	mt := d.MediaType
	if m.MediaType != "" {
		mt = m.MediaType
	}
	img, err := partial.CompressedToImage(&layoutImage{r: r, raw: raw, m: m, mt: mt})
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	return img, nil
}

// layoutIndex is an index of a layout.
type layoutIndex struct {
	r      *layoutReader
	raw    []byte
	im     *v1.IndexManifest
	mt     types.MediaType
	digest v1.Hash
}

func (x *layoutIndex) MediaType() (types.MediaType, error)       { return x.mt, nil }
func (x *layoutIndex) RawManifest() ([]byte, error)              { return x.raw, nil }
func (x *layoutIndex) IndexManifest() (*v1.IndexManifest, error) { return x.im.DeepCopy(), nil }
func (x *layoutIndex) Size() (int64, error)                      { return int64(len(x.raw)), nil }
func (x *layoutIndex) Digest() (v1.Hash, error)                  { return x.digest, nil }

func (x *layoutIndex) child(h v1.Hash) (v1.Descriptor, error) {
	for _, d := range x.im.Manifests {
		if d.Digest == h {
			return d, nil
		}
	}
	return v1.Descriptor{}, fmt.Errorf("index %s lists no %s", x.digest, h)
}

func (x *layoutIndex) Image(h v1.Hash) (v1.Image, error) {
	d, err := x.child(h)
	if err != nil {
		return nil, err
	}
	return x.r.image(d)
}

func (x *layoutIndex) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	d, err := x.child(h)
	if err != nil {
		return nil, err
	}
	return x.r.index(d)
}

// layoutImage is an image of a layout, as go-containerregistry's partial package
// completes it: its layers are read from the layout when written.
type layoutImage struct {
	r   *layoutReader
	raw []byte
	m   *v1.Manifest
	mt  types.MediaType

	once   sync.Once
	config []byte
	err    error
}

func (i *layoutImage) MediaType() (types.MediaType, error) { return i.mt, nil }
func (i *layoutImage) RawManifest() ([]byte, error)        { return i.raw, nil }

func (i *layoutImage) RawConfigFile() ([]byte, error) {
	i.once.Do(func() { i.config, i.err = i.r.blob(i.m.Config, i.r.lim.ConfigSize, "image config") })
	return i.config, i.err
}

func (i *layoutImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, d := range i.m.Layers {
		if d.Digest == h {
			return &layoutLayer{r: i.r, desc: d}, nil
		}
	}
	return nil, fmt.Errorf("the manifest has no layer %s", h)
}

type layoutLayer struct {
	r    *layoutReader
	desc v1.Descriptor
}

func (l *layoutLayer) Digest() (v1.Hash, error)            { return l.desc.Digest, nil }
func (l *layoutLayer) Size() (int64, error)                { return l.desc.Size, nil }
func (l *layoutLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }

func (l *layoutLayer) Compressed() (io.ReadCloser, error) {
	name, err := blobPath(l.desc.Digest)
	if err != nil {
		return nil, fmt.Errorf("a layer: %w", err)
	}
	rc, size, err := l.r.files.open(name)
	if err != nil {
		return nil, err
	}
	if size != l.desc.Size {
		rc.Close()
		return nil, fmt.Errorf("%s is %d bytes, its manifest gives %d: the layout is corrupt", l.r.files.describe(name), size, l.desc.Size)
	}
	return rc, nil
}

// layoutSink is where a layout is written: a directory, or an archive's tar stream.
type layoutSink interface {
	// has says whether the layout holds the blob h already, whole.
	has(h v1.Hash, size int64) (bool, error)
	// put writes the blob h from r, which must give size bytes of digest h.
	put(h v1.Hash, size int64, r io.Reader) error
	// putFile writes a file of the layout's own: oci-layout, index.json.
	putFile(name string, data []byte) error
}

// layoutWriter writes images and indexes into a sink, each blob once.
type layoutWriter struct {
	ctx  context.Context
	sink layoutSink
	done map[v1.Hash]bool
}

// writeLayout writes a into the sink, named tag, and the layout's index.json: the
// entries of existing (the layout's index.json before, or nil) but those of the same
// name, and a's.
func writeLayout(ctx context.Context, sink layoutSink, a Artifact, tag string, existing []byte) error {
	w := &layoutWriter{ctx: ctx, sink: sink, done: map[v1.Hash]bool{}}
	if err := sink.putFile("oci-layout", []byte(layoutVersionFile)); err != nil {
		return err
	}
	var d v1.Descriptor
	var err error
	if a.Index != nil {
		d, err = w.index(a.Index)
	} else {
		d, err = w.image(a.Image)
	}
	if err != nil {
		return err
	}
	if tag != "" {
		d.Annotations = map[string]string{refNameAnnotation: tag}
	}
	index, err := layoutIndexJSON(existing, d, tag)
	if err != nil {
		return err
	}
	return sink.putFile("index.json", index)
}

// layoutIndexJSON is a layout's index.json with d in place of the entries named tag.
func layoutIndexJSON(existing []byte, d v1.Descriptor, tag string) ([]byte, error) {
	obj := map[string]json.RawMessage{
		"schemaVersion": rawconfig.Must(2),
		"mediaType":     rawconfig.Must(types.OCIImageIndex),
	}
	if existing != nil {
		var err error
		if obj, err = rawconfig.Object(existing, "layout's index.json"); err != nil {
			return nil, err
		}
	}
	var entries []json.RawMessage
	if err := rawconfig.Optional(obj, "manifests", &entries); err != nil {
		return nil, fmt.Errorf("the layout's index.json: %w", err)
	}
	kept := []json.RawMessage{}
	for _, e := range entries {
		var desc v1.Descriptor
		if err := json.Unmarshal(e, &desc); err != nil {
			return nil, fmt.Errorf("the layout's index.json: an entry: %w", err)
		}
		if desc.Annotations[refNameAnnotation] != tag {
			kept = append(kept, e)
		}
	}
	obj["manifests"] = rawconfig.Must(append(kept, rawconfig.Must(d)))
	return json.Marshal(obj)
}

func (w *layoutWriter) blob(h v1.Hash, size int64, open func() (io.ReadCloser, error)) error {
	if w.done[h] {
		return nil
	}
	if w.ctx.Err() != nil {
		return context.Cause(w.ctx)
	}
	if ok, err := w.sink.has(h, size); ok || err != nil {
		w.done[h] = ok
		return err
	}
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := w.sink.put(h, size, ctxReader{w.ctx, rc}); err != nil {
		return err
	}
	w.done[h] = true
	return nil
}

func bytesOpener(b []byte) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

func (w *layoutWriter) image(img v1.Image) (v1.Descriptor, error) {
	layers, err := img.Layers()
	if err != nil {
		return v1.Descriptor{}, err
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return v1.Descriptor{}, err
		}
		size, err := l.Size()
		if err != nil {
			return v1.Descriptor{}, err
		}
		if err := w.blob(d, size, l.Compressed); err != nil {
			return v1.Descriptor{}, err
		}
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return v1.Descriptor{}, err
	}
	ch, _, _ := v1.SHA256(bytes.NewReader(config))
	if err := w.blob(ch, int64(len(config)), bytesOpener(config)); err != nil {
		return v1.Descriptor{}, err
	}
	return w.manifest(img)
}

// manifest writes the manifest of img or idx, after what it refers to.
func (w *layoutWriter) manifest(m interface {
	RawManifest() ([]byte, error)
	MediaType() (types.MediaType, error)
}) (v1.Descriptor, error) {
	raw, err := m.RawManifest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	mt, err := m.MediaType()
	if err != nil {
		return v1.Descriptor{}, err
	}
	h, size, _ := v1.SHA256(bytes.NewReader(raw))
	if err := w.blob(h, size, bytesOpener(raw)); err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mt, Size: size, Digest: h}, nil
}

func (w *layoutWriter) index(idx v1.ImageIndex) (v1.Descriptor, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	for _, d := range im.Manifests {
		if w.done[d.Digest] {
			continue // an index may name a child twice: written once
		}
		switch {
		case d.MediaType.IsIndex():
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return v1.Descriptor{}, err
			}
			if _, err := w.index(child); err != nil {
				return v1.Descriptor{}, err
			}
		case d.MediaType.IsImage():
			img, err := idx.Image(d.Digest)
			if err != nil {
				return v1.Descriptor{}, err
			}
			if _, err := w.image(img); err != nil {
				return v1.Descriptor{}, err
			}
		default:
			return v1.Descriptor{}, fmt.Errorf("index entry %s: media type %s is neither an image nor an index", d.Digest, d.MediaType)
		}
	}
	return w.manifest(idx)
}

// dirSink writes a layout into a directory: every blob to a new file of a random name
// in blobs/sha256, renamed to its digest once whole and checked; oci-layout and
// index.json the same way, index.json last. Nothing is opened through a symlink.
type dirSink struct {
	root  *dirHandle
	blobs *dirHandle // blobs/sha256, opened when first needed
	made  []string   // what this write made, taken away again if it fails
	dirs  []string
}

func (s *dirSink) blobDir() (*dirHandle, error) {
	if s.blobs != nil {
		return s.blobs, nil
	}
	blobs, made, err := s.root.subdir("blobs", true)
	if err != nil {
		return nil, err
	}
	if made {
		s.dirs = append(s.dirs, "blobs")
	}
	defer blobs.Close()
	sha, made, err := blobs.subdir("sha256", true)
	if err != nil {
		return nil, err
	}
	if made {
		s.dirs = append([]string{"blobs/sha256"}, s.dirs...)
	}
	s.blobs = sha
	return sha, nil
}

func (s *dirSink) has(h v1.Hash, size int64) (bool, error) {
	name, err := blobPath(h)
	if err != nil {
		return false, err
	}
	dir, err := s.blobDir()
	if err != nil {
		return false, err
	}
	st, ok, err := dir.lstat(h.Hex)
	switch {
	case err != nil || !ok:
		return false, err
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return false, symlinkRefused(s.root.join(name))
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return false, fmt.Errorf("%s is not a regular file: remove it", s.root.join(name))
	case st.Size != size:
		return false, nil
	}
	// The same name and size: the same blob, unless someone changed it; read it to
	// know (a layer is read at disk speed, far faster than it is written).
	f, err := dir.open(h.Hex)
	if err != nil {
		return false, err
	}
	defer f.Close()
	d := sha256.New()
	if _, err := io.Copy(d, f); err != nil {
		return false, fmt.Errorf("reading %s: %w", s.root.join(name), err)
	}
	return hex.EncodeToString(d.Sum(nil)) == h.Hex, nil
}

func (s *dirSink) put(h v1.Hash, size int64, r io.Reader) error {
	name, err := blobPath(h)
	if err != nil {
		return err
	}
	dir, err := s.blobDir()
	if err != nil {
		return err
	}
	f, tmp, err := dir.createTemp(h.Hex)
	if err != nil {
		return err
	}
	defer func() {
		if tmp != "" {
			dir.remove(tmp)
		}
	}()
	d := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, d), io.LimitReader(r, size+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if got := hex.EncodeToString(d.Sum(nil)); n != size || got != h.Hex {
		return fmt.Errorf("blob %s: %d bytes of digest sha256:%s were read for it, want %d: the source changed or is corrupt", h, n, got, size)
	}
	if err := dir.rename(tmp, h.Hex); err != nil {
		return err
	}
	tmp = ""
	s.made = append(s.made, name)
	return nil
}

func (s *dirSink) putFile(name string, data []byte) error {
	st, ok, err := s.root.lstat(name)
	switch {
	case err != nil:
		return err
	case ok && st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return symlinkRefused(s.root.join(name))
	case ok && st.Mode&unix.S_IFMT != unix.S_IFREG:
		return fmt.Errorf("%s is not a regular file: remove it", s.root.join(name))
	}
	f, tmp, err := s.root.createTemp(name)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.root.rename(tmp, name)
	}
	if err != nil {
		s.root.remove(tmp)
		return err
	}
	if !ok {
		s.made = append(s.made, name)
	}
	return nil
}

// undo takes away what this write made in an existing layout.
func (s *dirSink) undo() {
	for _, name := range s.made {
		if blob, ok := strings.CutPrefix(name, "blobs/sha256/"); ok && s.blobs != nil {
			s.blobs.remove(blob)
		} else {
			s.root.remove(name)
		}
	}
	for _, dir := range s.dirs {
		unix.Unlinkat(s.root.fd(), dir, unix.AT_REMOVEDIR)
	}
}

func (s *dirSink) close() {
	if s.blobs != nil {
		s.blobs.Close()
	}
}

// readExistingIndex reads an existing layout's index.json, refusing a symlink.
func readExistingIndex(root *dirHandle, lim Limits) ([]byte, error) {
	r := &layoutReader{files: dirFiles{ctx: context.Background(), d: root}, lim: lim}
	return r.small("index.json", lim.ManifestSize, "the layout's index")
}

// tarSink writes a layout as a tar stream (an OCI archive): directories, then each
// blob, index.json last. Times are zero: the same layout makes the same archive.
type tarSink struct {
	tw   *tar.Writer
	dirs map[string]bool
}

var epoch = time.Unix(0, 0).UTC()

func (s *tarSink) has(v1.Hash, int64) (bool, error) { return false, nil }

func (s *tarSink) dir(name string) error {
	if s.dirs[name] {
		return nil
	}
	if s.dirs == nil {
		s.dirs = map[string]bool{}
	}
	s.dirs[name] = true
	return s.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX})
}

func (s *tarSink) put(h v1.Hash, size int64, r io.Reader) error {
	name, err := blobPath(h)
	if err != nil {
		return err
	}
	if err := s.dir("blobs"); err != nil {
		return err
	}
	if err := s.dir("blobs/sha256"); err != nil {
		return err
	}
	if err := s.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
		return err
	}
	d := sha256.New()
	n, err := io.Copy(io.MultiWriter(s.tw, d), io.LimitReader(r, size+1))
	if errors.Is(err, tar.ErrWriteTooLong) {
		n, err = size+1, nil
	}
	if err != nil {
		return err
	}
	if got := hex.EncodeToString(d.Sum(nil)); n != size || got != h.Hex {
		return fmt.Errorf("blob %s: %d bytes of digest sha256:%s were read for it, want %d: the source changed or is corrupt", h, n, got, size)
	}
	return nil
}

func (s *tarSink) putFile(name string, data []byte) error {
	if err := s.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(data)), Mode: 0o644, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
		return err
	}
	_, err := s.tw.Write(data)
	return err
}
