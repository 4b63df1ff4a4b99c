package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/otel-go-launcher/otel-go-launcher/images"
	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// --dry-run's report: each change to the config, and the layer.
func TestDescribe(t *testing.T) {
	l, err := random.Layer(64, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: l})
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config = v1.Config{Entrypoint: []string{"/app"}, User: "app", Env: []string{"A=1"}}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	in := images.Artifact{Image: img}
	out, err := images.Wrap(context.Background(), in, &images.BinaryLauncher{Binary: testenv.FakeELF(testenv.ELFMachineAMD64, ""), Source: "test"}, nil, images.Options{Env: []string{"OTEL_SERVICE_NAME=x"}})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := describe(&b, in, out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"linux/amd64:",
		`Entrypoint: ["/app"] -> ["/.otel-go-launcher/launch","--user","app","--","/app"]`,
		`User: "app" -> "0:0" (the launcher starts the app as "app")`,
		"Env: + OTEL_SERVICE_NAME=x",
		"layer: + sha256:",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("no %q in:\n%s", want, b.String())
		}
	}
}

// Progress: nothing in the first second; then plain lines every five seconds where
// stderr is not a terminal.
func TestProgressLines(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := newProgress(f, "launch wrap: oci:x")
	p.update(10e6, 100e6)
	p.start = p.start.Add(-2 * time.Second)
	p.update(20e6, 100e6)
	p.update(30e6, 100e6) // within five seconds of the last line
	p.done()
	got, _ := os.ReadFile(f.Name())
	if want := "launch wrap: oci:x: 20.0 MB of 100.0 MB written\n"; string(got) != want {
		t.Errorf("progress wrote %q, want %q", got, want)
	}
}

// testLayout writes a one-image OCI layout and returns its directory.
func testLayout(t *testing.T) string {
	t.Helper()
	l, err := random.Layer(64, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{Layer: l})
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config = v1.Config{Entrypoint: []string{"/app"}, Env: []string{"PATH=/bin"}}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "src")
	rw := &images.IO{}
	defer rw.Close()
	if err := rw.Write(context.Background(), images.Ref{Transport: images.OCILayout, Path: dir}, images.Artifact{Image: img}, ""); err != nil {
		t.Fatal(err)
	}
	return dir
}

// --env takes each value whole: OTEL_RESOURCE_ATTRIBUTES=a=b,c=d was split at the
// comma into two variables (urfave/cli's StringSliceFlag splits at commas).
func TestWrapEnvTakenWhole(t *testing.T) {
	src, dst := testLayout(t), filepath.Join(t.TempDir(), "dst")
	if code := run([]string{"launch", "wrap", "--env", "OTEL_RESOURCE_ATTRIBUTES=a=b,c=d", "--env", "OTEL_SERVICE_NAME=x,y", "oci:" + src, "oci:" + dst}); code != 0 {
		t.Fatalf("launch wrap exited %d", code)
	}
	rw := &images.IO{}
	defer rw.Close()
	out, err := rw.Read(context.Background(), images.Ref{Transport: images.OCILayout, Path: dst})
	if err != nil {
		t.Fatal(err)
	}
	cf, err := out.Image.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"PATH=/bin", "OTEL_RESOURCE_ATTRIBUTES=a=b,c=d", "OTEL_SERVICE_NAME=x,y"}; !slices.Equal(cf.Config.Env, want) {
		t.Errorf("Env %q, want %q", cf.Config.Env, want)
	}
}

// Usage errors exit 2 and write nothing.
func TestWrapUsageErrors(t *testing.T) {
	src := testLayout(t)
	dir := t.TempDir()
	for _, args := range [][]string{
		{"--max-layer-size", "lots"},
		{"--max-layer-size", "0"},
		{"--env", "NOVALUE"},
		{"--env", "=x"},
		// A setting the launcher would not trace with, refused at build time.
		{"--env", "OTEL_EXPORTER_OTLP_ENDPOINT=ftp://collector:4317"},
	} {
		argv := append(append([]string{"launch", "wrap"}, args...), "oci:"+src, "oci:"+filepath.Join(dir, "out"))
		if code := run(argv); code != 2 {
			t.Errorf("launch wrap %q exited %d, want 2", args, code)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("written after a usage error: %v", entries)
	}
}

// --max-layer-size reaches the limits: a layer over it is refused (exit 1).
func TestWrapMaxLayerSize(t *testing.T) {
	src, dir := testLayout(t), t.TempDir()
	if code := run([]string{"launch", "wrap", "--max-layer-size", "16", "oci:" + src, "oci:" + filepath.Join(dir, "out")}); code != 1 {
		t.Errorf("a layer over --max-layer-size: exit %d, want 1", code)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("written despite the limit: %v", entries)
	}
	if n, err := images.ParseSize("64GiB"); err != nil || n != 64<<30 || images.FormatSize(n) != "64GiB" {
		t.Errorf("ParseSize(64GiB) = %d, %v", n, err)
	}
}

// OTEL_* settings of --env are read as the launcher will read them: those it replaces
// by a default are said at build time.
func TestWrapChecksOTelSettings(t *testing.T) {
	var w strings.Builder
	if err := checkOTelEnv(&w, []string{"OTEL_BSP_SCHEDULE_DELAY=soon", "PATH=/bin", "OTEL_TRACES_EXPORTER=zipkin"}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"launch wrap: warning: --env: OTEL_BSP_SCHEDULE_DELAY=soon: want milliseconds: using 5000\n", "OTEL_TRACES_EXPORTER=zipkin: zipkin not an exporter"} {
		if !strings.Contains(w.String(), want) {
			t.Errorf("no %q in %q", want, w.String())
		}
	}
	// A file the settings name is in the image, not on the machine that wraps it.
	if err := checkOTelEnv(&w, []string{"OTEL_EXPORTER_OTLP_CERTIFICATE=/etc/collector-ca.pem"}); err != nil {
		t.Errorf("a certificate in the image: %v", err)
	}
}
