package images_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/otel-go-launcher/otel-go-launcher/images"
	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// testImage is a three-layer image with a user, an entrypoint, a cmd and the settings
// a wrap must leave alone.
func testImage(t *testing.T, mt types.MediaType, arch, user string) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, mt)
	if mt == types.DockerManifestSchema2 {
		img = mutate.ConfigMediaType(img, types.DockerConfigJSON)
	}
	for i := 0; i < 3; i++ {
		l, err := random.Layer(512, types.DockerLayer)
		if err != nil {
			t.Fatal(err)
		}
		img, err = mutate.Append(img, mutate.Addendum{Layer: l, History: v1.History{CreatedBy: "layer " + string(rune('a'+i))}})
		if err != nil {
			t.Fatal(err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Config = v1.Config{
		Entrypoint:   []string{"/app", "--serve"},
		Cmd:          []string{"--port", "8080"},
		User:         user,
		Env:          []string{"PATH=/usr/bin", "MODE=prod"},
		WorkingDir:   "/srv",
		ExposedPorts: map[string]struct{}{"8080/tcp": {}},
		Labels:       map[string]string{"team": "payments"},
		Healthcheck:  &v1.HealthConfig{Test: []string{"CMD", "/app", "health"}},
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func launcherLayer(t *testing.T, tag string) v1.Layer {
	t.Helper()
	l, err := images.LauncherLayer(testenv.FakeELF(testenv.ELFMachineAMD64, tag))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func rawConfig(t *testing.T, img v1.Image) map[string]any {
	t.Helper()
	raw, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func digest(t *testing.T, d interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func layerDigests(t *testing.T, img v1.Image) []v1.Hash {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var ds []v1.Hash
	for _, l := range m.Layers {
		ds = append(ds, l.Digest)
	}
	return ds
}

// layerFiles lists a layer's tar entries: name, mode, owner, and content for files.
func layerFiles(t *testing.T, l v1.Layer) map[string]string {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = strings.Join([]string{string(rune(h.Typeflag)), itoa(h.Mode), itoa(int64(h.Uid)), itoa(int64(h.Gid)), itoa(h.ModTime.Unix()), string(b)}, "|")
	}
}

func itoa(i int64) string { b, _ := json.Marshal(i); return string(b) }

func TestWrapImage(t *testing.T) {
	for _, mt := range []types.MediaType{types.DockerManifestSchema2, types.OCIManifestSchema1} {
		t.Run(string(mt), func(t *testing.T) {
			src := testImage(t, mt, "amd64", "1000:1000")
			launcher := launcherLayer(t, "v1")
			wrapped, err := images.WrapImage(src, launcher, images.Options{Version: "v1", BaseName: "registry.example/app:1", Env: []string{"OTEL_SERVICE_NAME=payments", "MODE=canary"}})
			if err != nil {
				t.Fatal(err)
			}

			// The image's layers, byte for byte, then the launcher's.
			before, after := layerDigests(t, src), layerDigests(t, wrapped)
			if len(after) != len(before)+1 || !reflect.DeepEqual(after[:len(before)], before) {
				t.Fatalf("layers: %v, want %v and the launcher's", after, before)
			}
			if got, want := after[len(after)-1], digest(t, launcher); got != want {
				t.Errorf("last layer %s, want the launcher's %s", got, want)
			}
			m, err := wrapped.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			if m.MediaType != mt {
				t.Errorf("manifest media type %s, want %s", m.MediaType, mt)
			}
			wantLayerType := types.OCILayer
			if mt == types.DockerManifestSchema2 {
				wantLayerType = types.DockerLayer
			}
			if got := m.Layers[len(m.Layers)-1].MediaType; got != wantLayerType {
				t.Errorf("launcher layer media type %s, want %s", got, wantLayerType)
			}
			if m.Annotations[images.AnnotationBaseName] != "registry.example/app:1" || m.Annotations[images.AnnotationBaseDigest] != digest(t, src).String() {
				t.Errorf("annotations %v, want base name and digest %s", m.Annotations, digest(t, src))
			}
			files := layerFiles(t, launcher)
			if len(files) != 2 || files[".otel-go-launcher/"] != "5|493|0|0|0|" || !strings.HasPrefix(files[".otel-go-launcher/launch"], "0|493|0|0|0|\x7fELF") {
				t.Errorf("launcher layer: %q", files)
			}

			// The config: the launcher in front of the entrypoint, as root, the app as
			// the image's user; Cmd and everything else as it was.
			cf, err := wrapped.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if want := []string{images.LauncherPath, "--user", "1000:1000", "--", "/app", "--serve"}; !reflect.DeepEqual(cf.Config.Entrypoint, want) {
				t.Errorf("Entrypoint %q, want %q", cf.Config.Entrypoint, want)
			}
			if cf.Config.User != "0:0" {
				t.Errorf("User %q, want 0:0", cf.Config.User)
			}
			if want := []string{"PATH=/usr/bin", "MODE=canary", "OTEL_SERVICE_NAME=payments"}; !reflect.DeepEqual(cf.Config.Env, want) {
				t.Errorf("Env %q, want %q", cf.Config.Env, want)
			}
			got, want := rawConfig(t, wrapped), rawConfig(t, src)
			gotRun, wantRun := got["config"].(map[string]any), want["config"].(map[string]any)
			for _, k := range []string{"Entrypoint", "User", "Env"} {
				delete(gotRun, k)
				delete(wantRun, k)
			}
			if !reflect.DeepEqual(gotRun, wantRun) {
				t.Errorf("config settings %v, want %v", gotRun, wantRun)
			}
			for _, k := range []string{"created", "architecture", "os"} {
				if !reflect.DeepEqual(got[k], want[k]) {
					t.Errorf("%s: %v, want %v", k, got[k], want[k])
				}
			}
			if n := len(cf.History); n != 4 || cf.History[3].CreatedBy != "otel-go-launcher wrap" || cf.History[2].CreatedBy != "layer c" {
				t.Errorf("history %+v", cf.History)
			}
			if len(cf.RootFS.DiffIDs) != 4 {
				t.Errorf("diff IDs %v", cf.RootFS.DiffIDs)
			}
			if err := validate(wrapped); err != nil {
				t.Error(err)
			}
		})
	}
}

// validate reads every blob of img back against its digest.
func validate(img v1.Image) error {
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		if _, err := l.DiffID(); err != nil {
			return err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	if len(cf.RootFS.DiffIDs) != len(m.Layers) {
		return errors.New("diff IDs and layers differ in number")
	}
	for i, l := range layers {
		d, _ := l.DiffID()
		if d != cf.RootFS.DiffIDs[i] {
			return errors.New("diff ID mismatch")
		}
	}
	raw, _ := img.RawConfigFile()
	h, _, _ := v1.SHA256(bytes.NewReader(raw))
	if h != m.Config.Digest {
		return errors.New("config digest mismatch")
	}
	return nil
}

// Root images keep their user and get no --user; the same input wraps to the same
// digest; wrapping a wrapped image replaces its launcher: the result is what wrapping
// the original with the new launcher gives, and unwrapping gives the original config.
func TestWrapReproducibleAndUpgrade(t *testing.T) {
	src := testImage(t, types.OCIManifestSchema1, "amd64", "")
	o := images.Options{Version: "v1", BaseName: "app"}
	a, err := images.WrapImage(src, launcherLayer(t, "v1"), o)
	if err != nil {
		t.Fatal(err)
	}
	b, err := images.WrapImage(src, launcherLayer(t, "v1"), o)
	if err != nil {
		t.Fatal(err)
	}
	if digest(t, a) != digest(t, b) {
		t.Errorf("two wraps of one image: %s and %s", digest(t, a), digest(t, b))
	}
	cf, _ := a.ConfigFile()
	if want := []string{images.LauncherPath, "--", "/app", "--serve"}; !reflect.DeepEqual(cf.Config.Entrypoint, want) || cf.Config.User != "" {
		t.Errorf("Entrypoint %q User %q, want %q and none", cf.Config.Entrypoint, cf.Config.User, want)
	}

	o2 := images.Options{Version: "v2", BaseName: "app"}
	upgraded, err := images.WrapImage(a, launcherLayer(t, "v2"), o2)
	if err != nil {
		t.Fatal(err)
	}
	direct, err := images.WrapImage(src, launcherLayer(t, "v2"), o2)
	if err != nil {
		t.Fatal(err)
	}
	if digest(t, upgraded) != digest(t, direct) {
		t.Errorf("upgrade %s, direct wrap with the new launcher %s", digest(t, upgraded), digest(t, direct))
	}
	if n := len(layerDigests(t, upgraded)); n != 4 {
		t.Errorf("upgraded image has %d layers, want 4", n)
	}
	if ok, v, err := images.Wrapped(upgraded); !ok || v != "v2" || err != nil {
		t.Errorf("Wrapped: %v %q %v", ok, v, err)
	}

	// Unwrap gives back the original config and layers.
	user := testImage(t, types.DockerManifestSchema2, "amd64", "app")
	w, err := images.WrapImage(user, launcherLayer(t, "v1"), images.Options{Env: []string{"X=1"}})
	if err != nil {
		t.Fatal(err)
	}
	back, err := images.Unwrap(w)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rawConfig(t, back), rawConfig(t, user)) {
		t.Errorf("unwrapped config\n%v\nwant\n%v", rawConfig(t, back), rawConfig(t, user))
	}
	if !reflect.DeepEqual(layerDigests(t, back), layerDigests(t, user)) {
		t.Error("unwrapped layers differ")
	}
	if ok, _, _ := images.Wrapped(back); ok {
		t.Error("unwrapped image still wrapped")
	}
}

func TestWrapRefusesWindows(t *testing.T) {
	img := testImage(t, types.OCIManifestSchema1, "amd64", "")
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS = "windows"
	img, _ = mutate.ConfigFile(img, cf)
	_, err := images.Wrap(context.Background(), images.Artifact{Image: img}, &images.BinaryLauncher{Binary: testenv.FakeELF(testenv.ELFMachineAMD64, ""), Source: "test"}, nil, images.Options{})
	if err == nil || !strings.Contains(err.Error(), "windows") {
		t.Errorf("Wrap of a Windows image: %v", err)
	}
}
