// Package testenv holds what the project's tests share: prerequisites that fail under
// CI instead of skipping, and programs built once per test process.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// InCI reports whether tests run in CI, where a missing prerequisite is a failure.
func InCI() bool { return os.Getenv("CI") == "true" }

// Require stops the test when a prerequisite is missing: a failure under CI=true,
// a skip elsewhere.
func Require(t testing.TB, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("prerequisite missing (CI=true, so this fails): %s", msg)
	}
	t.Skipf("prerequisite missing: %s", msg)
}

// RequireRoot requires uid 0.
func RequireRoot(t testing.TB) {
	t.Helper()
	Require(t, os.Geteuid() == 0, "needs root (run make test as root)")
}

// RequireCommand requires a program on PATH and returns its path.
func RequireCommand(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	Require(t, err == nil, "needs %s on PATH", name)
	return p
}

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

var (
	buildMu  sync.Mutex
	built    = map[string]string{}
	buildDir string
)

// Build compiles a main package of this module (e.g. "./cmd/launch") once per test
// process and returns the binary's path. env adds to the build environment.
func Build(t testing.TB, pkg string, env ...string) string {
	t.Helper()
	p, err := BuildProgram(pkg, env...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// BuildProgram is Build for code that is not a test (benchmarks).
func BuildProgram(pkg string, env ...string) (string, error) {
	key := pkg + "|" + strings.Join(env, " ")
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[key]; ok {
		return p, nil
	}
	if buildDir == "" {
		d, err := os.MkdirTemp("", "otel-go-launcher-test-")
		if err != nil {
			return "", err
		}
		os.Chmod(d, 0o755) // tests run these programs as other users too
		buildDir = d
	}
	out := filepath.Join(buildDir, fmt.Sprintf("%s-%d", filepath.Base(pkg), len(built)))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = RepoRoot()
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	built[key] = out
	return out, nil
}

// Launcher returns the launch binary under test: $LAUNCH_BIN (the Makefile passes the
// one it built) or a fresh static build.
func Launcher(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("LAUNCH_BIN"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	return Build(t, "./cmd/launch", "CGO_ENABLED=0")
}

// Cleanup removes what Build produced; call it from TestMain.
func Cleanup() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}
