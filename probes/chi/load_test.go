package chi

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
	"github.com/otel-go-launcher/otel-go-launcher/offsets"
)

// Every program loads on this kernel, each well within the verifier's budget.
func TestProgramsLoad(t *testing.T) {
	spec, err := loadChi()
	if err != nil {
		t.Fatal(err)
	}
	testenv.ProgramsLoad(t, spec)
}

// A program that routes with chi but serves no HTTP itself (its router called by
// something else: a test, a serverless adapter) has no server span to name: the probe
// counts as unused there, no uprobe hit for nothing.
func TestUnusedWithoutAServer(t *testing.T) {
	testenv.RequireCommand(t, "go")
	dir := t.TempDir()
	svc := filepath.Join(testenv.RepoRoot(), "internal", "testenv", "targets", "chiservice")
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(svc, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(trackerProgram), 0o644); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", "prog", ".")
	build.Dir, build.Env = dir, append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=mod")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	b, err := offsets.Open(filepath.Join(dir, "prog"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	r, err := offsets.Analyze(b, Specs)
	if err != nil {
		t.Fatal(err)
	}
	if p := r.Probes[0]; p.Enabled || !p.Unused() || !strings.Contains(p.Reason, "with net/http.serverHandler.ServeHTTP") {
		t.Errorf("enabled %v, unused %v: %s", p.Enabled, p.Unused(), p.Reason)
	}
}
