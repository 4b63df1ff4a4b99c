package main

import (
	"debug/buildinfo"
	"os/exec"
	"strings"
	"testing"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// The exporter section's launcher builds, with the SDK's trace exporters in it, and the
// launcher itself links none: no other build or test compiles -tags sdkexporter.
func TestSDKExporterLauncher(t *testing.T) {
	t.Cleanup(testenv.Cleanup)
	path, err := buildSDKLauncher()
	if err != nil {
		t.Fatal(err)
	}
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	linked := map[string]bool{}
	for _, m := range info.Deps {
		linked[m.Path] = true
	}
	for _, m := range []string{"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc", "go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"} {
		if !linked[m] {
			t.Errorf("the -tags sdkexporter launcher does not link %s", m)
		}
	}
	cmd := exec.Command("go", "list", "-deps", "./cmd/launch")
	cmd.Dir = testenv.RepoRoot()
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "go.opentelemetry.io/otel/exporters/otlp/otlptrace") || pkg == "go.opentelemetry.io/otel/sdk/trace" {
			t.Errorf("the launcher links %s", pkg)
		}
	}
}
