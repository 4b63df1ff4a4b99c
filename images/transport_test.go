package images_test

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	stdio "io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/otel-go-launcher/otel-go-launcher/images"
	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

func TestParseRef(t *testing.T) {
	for in, want := range map[string]images.Ref{
		"docker://localhost:5000/app:1":      {Transport: images.Registry, Name: "localhost:5000/app:1"},
		"localhost:5000/app:1":               {Transport: images.Registry, Name: "localhost:5000/app:1"},
		"app":                                {Transport: images.Registry, Name: "app"},
		"app:1.2":                            {Transport: images.Registry, Name: "app:1.2"},
		"ghcr.io/org/app@sha256:" + zeros64:  {Transport: images.Registry, Name: "ghcr.io/org/app@sha256:" + zeros64},
		"docker-archive:/tmp/a.tar":          {Transport: images.DockerArchive, Path: "/tmp/a.tar"},
		"docker-archive:/tmp/a.tar:app:1":    {Transport: images.DockerArchive, Path: "/tmp/a.tar", Name: "app:1"},
		"oci:/tmp/layout":                    {Transport: images.OCILayout, Path: "/tmp/layout"},
		"oci:/tmp/layout:v1":                 {Transport: images.OCILayout, Path: "/tmp/layout", Name: "v1"},
		"oci-archive:a.tar:v1":               {Transport: images.OCIArchive, Path: "a.tar", Name: "v1"},
		"docker-daemon:app:1":                {Transport: images.DockerDaemon, Name: "app:1"},
		"containerd:docker.io/library/app:1": {Transport: images.Containerd, Name: "docker.io/library/app:1"},
	} {
		got, err := images.ParseRef(in)
		if err != nil || got != want {
			t.Errorf("ParseRef(%q) = %+v, %v; want %+v", in, got, err, want)
		}
		if err == nil && !strings.Contains(got.String(), got.Name) {
			t.Errorf("%+v.String() = %q", got, got.String())
		}
	}
	for in, want := range map[string]string{
		"":                 "empty",
		"dir:/tmp/x":       "transport dir: is not supported",
		"foo:/tmp/x":       "unknown transport foo:",
		"docker:app":       "docker://",
		"oci:":             "no path",
		"/tmp/app.tar":     "docker-archive:/tmp/app.tar",
		"docker-daemon:A!": "docker-daemon:A!",
	} {
		if _, err := images.ParseRef(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseRef(%q): %v, want an error with %q", in, err, want)
		}
	}
}

const zeros64 = "0000000000000000000000000000000000000000000000000000000000000000"

// registryServer is go-containerregistry's in-memory registry, counting blob uploads.
func registryServer(t *testing.T) (host string, uploads *atomic.Int64) {
	t.Helper()
	uploads = new(atomic.Int64)
	reg := registry.New(registry.Logger(nopLogger()))
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs/uploads/") && r.URL.Query().Get("mount") == "" {
			uploads.Add(1)
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://"), uploads
}

func push(t *testing.T, ref string, img v1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
}

// Registry to registry: the wrapped image's other layers are the source's, mounted or
// found, never uploaded again: one upload for the launcher layer, one for the config.
func TestWrapRegistryToRegistry(t *testing.T) {
	host, uploads := registryServer(t)
	src := testImage(t, types.DockerManifestSchema2, "amd64", "65534")
	push(t, host+"/team/app:1", src)

	ctx := context.Background()
	var io images.IO
	defer io.Close()
	srcRef, _ := images.ParseRef(host + "/team/app:1")
	in, err := io.Read(ctx, srcRef)
	if err != nil {
		t.Fatal(err)
	}
	out, err := images.Wrap(ctx, in, &images.BinaryLauncher{Binary: testenv.FakeELF(testenv.ELFMachineAMD64, "launch"), Source: "test"}, nil, images.Options{BaseName: srcRef.Name})
	if err != nil {
		t.Fatal(err)
	}
	uploads.Store(0)
	dstRef, _ := images.ParseRef("docker://" + host + "/team/app-traced:1")
	if err := io.Write(ctx, dstRef, out, ""); err != nil {
		t.Fatal(err)
	}
	if n := uploads.Load(); n != 2 {
		t.Errorf("%d blob uploads, want 2 (the launcher layer and the config)", n)
	}
	back, err := io.Read(ctx, dstRef)
	if err != nil {
		t.Fatal(err)
	}
	if digest(t, back.Image) != digest(t, out.Image) {
		t.Errorf("registry has %s, wrote %s", digest(t, back.Image), digest(t, out.Image))
	}
	if err := validate(back.Image); err != nil {
		t.Error(err)
	}
	cf, _ := back.Image.ConfigFile()
	if cf.Config.Entrypoint[2] != "65534" {
		t.Errorf("Entrypoint %q", cf.Config.Entrypoint)
	}

	// A missing image and a missing repository are one-line errors.
	missing, _ := images.ParseRef(host + "/team/app:nope")
	if _, err := io.Read(ctx, missing); err == nil || !strings.Contains(err.Error(), "app:nope") || strings.Contains(err.Error(), "\n") {
		t.Errorf("reading a missing tag: %v", err)
	}
}

// A multi-platform index: every image is wrapped with the launcher of its
// architecture, taken from a multi-platform launcher image; the result is an index.
func TestWrapIndex(t *testing.T) {
	host, _ := registryServer(t)
	baseImage := func(machine uint16, arch string) v1.Image {
		img := testImage(t, types.OCIManifestSchema1, arch, "")
		layer := fileLayer(t, images.BaseImageLauncherPath, testenv.FakeELF(machine, "launcher-"+arch))
		img, err := mutate.Append(img, mutate.Addendum{Layer: layer})
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	launcherIndex := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: baseImage(testenv.ELFMachineAMD64, "amd64"), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: baseImage(testenv.ELFMachineARM64, "arm64"), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	app := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: testImage(t, types.OCIManifestSchema1, "amd64", ""), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: testImage(t, types.OCIManifestSchema1, "arm64", ""), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
		mutate.IndexAddendum{Add: testImage(t, types.OCIManifestSchema1, "amd64", ""), Descriptor: v1.Descriptor{
			Platform:    &v1.Platform{OS: "unknown", Architecture: "unknown"},
			Annotations: map[string]string{"vnd.docker.reference.type": "attestation-manifest"},
		}},
	)
	r, _ := name.ParseReference(host + "/app:multi")
	if err := remote.WriteIndex(r, app); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	var io images.IO
	defer io.Close()
	in, err := io.Read(ctx, images.Ref{Transport: images.Registry, Name: host + "/app:multi"})
	if err != nil || in.Index == nil {
		t.Fatalf("read: %v (index %v)", err, in.Index != nil)
	}
	launchers := images.Chain{&images.ImageLauncher{Index: launcherIndex, Source: "base"}, &images.BinaryLauncher{Binary: testenv.FakeELF(testenv.ELFMachineAMD64, "self"), Source: "self"}}
	out, err := images.Wrap(ctx, in, launchers, nil, images.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dst := images.Ref{Transport: images.Registry, Name: host + "/app:multi-traced"}
	if err := io.Write(ctx, dst, out, ""); err != nil {
		t.Fatal(err)
	}
	back, err := io.Read(ctx, dst)
	if err != nil || back.Index == nil {
		t.Fatalf("read back: %v", err)
	}
	im, err := back.Index.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 2 {
		t.Fatalf("%d manifests, want 2 (the attestation left out)", len(im.Manifests))
	}
	for _, d := range im.Manifests {
		img, err := back.Index.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		layers, _ := img.Layers()
		files := layerFiles(t, layers[len(layers)-1])
		content := files[".otel-go-launcher/launch"]
		bin := []byte(content[strings.LastIndex(content[:strings.Index(content, "\x7fELF")], "|")+1:])
		f, err := elf.NewFile(bytes.NewReader(bin))
		if err != nil {
			t.Fatalf("%s: launcher: %v", d.Platform, err)
		}
		want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[d.Platform.Architecture]
		if f.Machine != want || !bytes.HasSuffix(bin, []byte("launcher-"+d.Platform.Architecture)) {
			t.Errorf("%s: launcher for %v (%q)", d.Platform, f.Machine, bin[64:])
		}
	}

	// A platform no source supplies is named; --platform leaves it out.
	s390 := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: testImage(t, types.OCIManifestSchema1, "s390x", ""), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "s390x"}}},
		mutate.IndexAddendum{Add: testImage(t, types.OCIManifestSchema1, "amd64", ""), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}})
	_, err = images.Wrap(context.Background(), images.Artifact{Index: s390}, launchers, nil, images.Options{})
	if err == nil || !strings.Contains(err.Error(), "no launcher for linux/s390x") {
		t.Errorf("wrapping an s390x image: %v", err)
	}
	only, err := images.Wrap(context.Background(), images.Artifact{Index: s390}, launchers, []v1.Platform{{OS: "linux", Architecture: "amd64"}}, images.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if im, _ := only.Index.IndexManifest(); len(im.Manifests) != 1 {
		t.Errorf("--platform linux/amd64 kept %d images", len(im.Manifests))
	}
}

// Archives and layouts: docker-archive and oci-archive in and out, read back the same;
// a failed write leaves nothing at the destination.
func TestWrapArchives(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	var io images.IO
	defer io.Close()
	src := testImage(t, types.DockerManifestSchema2, "amd64", "1000")
	srcTar := filepath.Join(dir, "src.tar")
	if err := io.Write(ctx, images.Ref{Transport: images.DockerArchive, Path: srcTar, Name: "app:1"}, images.Artifact{Image: src}, ""); err != nil {
		t.Fatal(err)
	}
	launcher := &images.BinaryLauncher{Binary: testenv.FakeELF(testenv.ELFMachineAMD64, "l"), Source: "test"}
	for _, dst := range []images.Ref{
		{Transport: images.DockerArchive, Path: filepath.Join(dir, "out.tar")},
		{Transport: images.OCILayout, Path: filepath.Join(dir, "layout"), Name: "v1"},
		{Transport: images.OCIArchive, Path: filepath.Join(dir, "oci.tar"), Name: "v1"},
	} {
		t.Run(string(dst.Transport), func(t *testing.T) {
			in, err := io.Read(ctx, images.Ref{Transport: images.DockerArchive, Path: srcTar})
			if err != nil {
				t.Fatal(err)
			}
			out, err := images.Wrap(ctx, in, launcher, nil, images.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := io.Write(ctx, dst, out, "app:1"); err != nil {
				t.Fatal(err)
			}
			back, err := io.Read(ctx, dst)
			if err != nil {
				t.Fatal(err)
			}
			// A docker archive keeps no manifest (its reader makes one, without the
			// annotations): the same config and layers there; the same manifest in a layout.
			if dst.Transport == images.DockerArchive {
				if !reflect.DeepEqual(layerDigests(t, back.Image), layerDigests(t, out.Image)) || digestOf(t, back.Image.ConfigName) != digestOf(t, out.Image.ConfigName) {
					t.Errorf("read back other layers or config")
				}
			} else if digest(t, back.Image) != digest(t, out.Image) {
				t.Errorf("read back %s, wrote %s", digest(t, back.Image), digest(t, out.Image))
			}
			if err := validate(back.Image); err != nil {
				t.Error(err)
			}
		})
	}

	// Bad input: one line, non-zero, nothing written.
	corrupt := filepath.Join(dir, "corrupt.tar")
	os.WriteFile(corrupt, []byte("not a tarball"), 0o644)
	for _, ref := range []string{"docker-archive:" + corrupt, "docker-archive:" + filepath.Join(dir, "missing.tar"), "oci:" + filepath.Join(dir, "nolayout")} {
		r, err := images.ParseRef(ref)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Read(ctx, r); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("reading %s: %v", ref, err)
		}
	}
	out := filepath.Join(dir, "index.tar")
	arm := testImage(t, types.DockerManifestSchema2, "arm64", "")
	idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: src, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
	if err := io.Write(ctx, images.Ref{Transport: images.DockerArchive, Path: out}, images.Artifact{Index: idx}, "app:1"); err == nil || !strings.Contains(err.Error(), "linux/amd64, linux/arm64") {
		t.Errorf("a two-platform index written as a docker archive: %v", err)
	}
	// An index of one image (--platform chose it) is written as that image.
	one := filepath.Join(dir, "one.tar")
	if err := io.Write(ctx, images.Ref{Transport: images.DockerArchive, Path: one}, images.Artifact{Index: mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: src})}, "app:1"); err != nil {
		t.Error(err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), "index") || strings.Contains(e.Name(), ".tmp") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

func nopLogger() *log.Logger { return log.New(stdio.Discard, "", 0) }

// fileLayer is a layer holding one executable file.
func fileLayer(t *testing.T, path string, content []byte) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(path, "/"), Mode: 0o755, Size: int64(len(content))})
	tw.Write(content)
	tw.Close()
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (stdio.ReadCloser, error) { return stdio.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func digestOf(t *testing.T, f func() (v1.Hash, error)) v1.Hash {
	t.Helper()
	h, err := f()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// saveArchive writes a docker archive as docker save and podman save do: uncompressed
// layer files, each holding one file.
func saveArchive(t *testing.T, path string, contents ...string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	var diffIDs, files []string
	for i, c := range contents {
		var layer bytes.Buffer
		lw := tar.NewWriter(&layer)
		lw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("file%d", i), Mode: 0o644, Size: int64(len(c))})
		lw.Write([]byte(c))
		lw.Close()
		h, _, _ := v1.SHA256(bytes.NewReader(layer.Bytes()))
		diffIDs = append(diffIDs, h.String())
		files = append(files, h.Hex+"/layer.tar")
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: h.Hex + "/layer.tar", Mode: 0o644, Size: int64(layer.Len())})
		tw.Write(layer.Bytes())
	}
	config, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux", "config": map[string]any{"Entrypoint": []string{"/app"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}})
	ch, _, _ := v1.SHA256(bytes.NewReader(config))
	manifest, _ := json.Marshal([]map[string]any{{"Config": ch.Hex + ".json", "RepoTags": []string{"localhost/app:1"}, "Layers": files}})
	for name, data := range map[string][]byte{ch.Hex + ".json": config, "manifest.json": manifest} {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data))})
		tw.Write(data)
	}
	tw.Close()
}

// An archive of uncompressed layers wraps to one whose layers are the same files, copied
// (not recompressed), named by the archive's own tag; a layer that does not match its
// diff ID fails the write and leaves nothing.
func TestWrapSavedArchive(t *testing.T) {
	dir := t.TempDir()
	src, out := filepath.Join(dir, "saved.tar"), filepath.Join(dir, "out.tar")
	saveArchive(t, src, "first layer", "second layer")
	ctx := context.Background()
	var io images.IO
	defer io.Close()
	in, err := io.Read(ctx, images.Ref{Transport: images.DockerArchive, Path: src})
	if err != nil {
		t.Fatal(err)
	}
	if in.Name != "localhost/app:1" {
		t.Errorf("name %q, want the archive's tag", in.Name)
	}
	wrapped, err := images.Wrap(ctx, in, &images.BinaryLauncher{Binary: testenv.FakeELF(testenv.ELFMachineAMD64, "l"), Source: "test"}, nil, images.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := io.Write(ctx, images.Ref{Transport: images.DockerArchive, Path: out}, wrapped, in.Name); err != nil {
		t.Fatal(err)
	}
	cf, _ := wrapped.Image.ConfigFile()
	for i, id := range cf.RootFS.DiffIDs[:2] {
		b := testenv.TarFile(t, out, id.Hex+".tar")
		if h, _, _ := v1.SHA256(bytes.NewReader(b)); h != id {
			t.Errorf("layer %d: %s, want the saved file %s", i, h, id)
		}
	}
	var m []struct{ RepoTags, Layers []string }
	json.Unmarshal(testenv.TarFile(t, out, "manifest.json"), &m)
	if len(m) != 1 || len(m[0].Layers) != 3 || !strings.HasSuffix(m[0].Layers[2], ".tar.gz") || m[0].RepoTags[0] != "localhost/app:1" {
		t.Errorf("manifest.json: %+v", m)
	}
	back, err := io.Read(ctx, images.Ref{Transport: images.DockerArchive, Path: out})
	if err != nil {
		t.Fatal(err)
	}
	if err := validate(back.Image); err != nil {
		t.Error(err)
	}

	// One byte changed in a layer: the copy is refused.
	data, _ := os.ReadFile(src)
	data[bytes.Index(data, []byte("second layer"))] = 'S'
	os.WriteFile(src, data, 0o644)
	os.Remove(out)
	in, err = io.Read(ctx, images.Ref{Transport: images.DockerArchive, Path: src})
	if err != nil {
		t.Fatal(err)
	}
	wrapped, _ = images.Wrap(ctx, in, &images.BinaryLauncher{Binary: testenv.FakeELF(testenv.ELFMachineAMD64, "l"), Source: "test"}, nil, images.Options{})
	if err := io.Write(ctx, images.Ref{Transport: images.DockerArchive, Path: out}, wrapped, in.Name); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("a corrupt layer: %v", err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("written despite the corrupt layer")
	}
}

// Progress reaches the total for a layout, whose writer reports nothing itself.
func TestWriteProgress(t *testing.T) {
	var complete, total int64
	rw := &images.IO{Progress: func(c, tot int64) { complete, total = c, tot }}
	defer rw.Close()
	img := testImage(t, types.OCIManifestSchema1, "amd64", "")
	if err := rw.Write(context.Background(), images.Ref{Transport: images.OCILayout, Path: filepath.Join(t.TempDir(), "layout")}, images.Artifact{Image: img}, ""); err != nil {
		t.Fatal(err)
	}
	if total == 0 || complete != total {
		t.Errorf("progress %d of %d", complete, total)
	}
}

// A registry that wants credentials: refused without them, in one line that says how to
// log in; taken from $REGISTRY_AUTH_FILE (podman login's file) with them.
func TestRegistryAuth(t *testing.T) {
	reg := registry.New(registry.Logger(nopLogger()))
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "ci" || p != "secret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer s.Close()
	host := strings.TrimPrefix(s.URL, "http://")
	t.Setenv("HOME", t.TempDir()) // no ~/.docker/config.json
	t.Setenv("DOCKER_CONFIG", "")
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("REGISTRY_AUTH_FILE", filepath.Join(t.TempDir(), "missing.json"))
	ctx := context.Background()
	ref := images.Ref{Transport: images.Registry, Name: host + "/app:1"}
	img := testImage(t, types.OCIManifestSchema1, "amd64", "")

	var rw images.IO
	err := rw.Write(ctx, ref, images.Artifact{Image: img}, "")
	if err == nil || !strings.Contains(err.Error(), "podman login") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("push without credentials: %v", err)
	}

	auth := filepath.Join(t.TempDir(), "auth.json")
	os.WriteFile(auth, []byte(`{"auths":{"`+host+`":{"auth":"Y2k6c2VjcmV0"}}}`), 0o600) // ci:secret
	t.Setenv("REGISTRY_AUTH_FILE", auth)
	if err := rw.Write(ctx, ref, images.Artifact{Image: img}, ""); err != nil {
		t.Fatalf("push with $REGISTRY_AUTH_FILE: %v", err)
	}
	if _, err := rw.Read(ctx, ref); err != nil {
		t.Fatalf("pull with $REGISTRY_AUTH_FILE: %v", err)
	}
}
