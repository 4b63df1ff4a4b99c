package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The launcher exits with the app's code, 0 to 255.
func TestExitCodeEveryValue(t *testing.T) {
	launch, app := launchBin(t), testApp(t)
	for code := 0; code <= 255; code++ {
		e, _, stderr := runLaunch(t, opts{}, launch, "--", app, "exit", itoa(code))
		if e.code != code {
			t.Fatalf("app exit %d: launcher %v\nstderr:\n%s", code, e, stderr)
		}
	}
}

func TestExitCodeAsPID1(t *testing.T) {
	launch, app := launchBin(t), testApp(t)
	for code := 0; code <= 255; code++ {
		e, _, stderr := runLaunch(t, opts{pid1: true}, launch, "--", app, "exit", itoa(code))
		if e.code != code {
			t.Fatalf("app exit %d as PID 1: launcher %v\nstderr:\n%s", code, e, stderr)
		}
	}
}

// An app killed by signal N makes the launcher exit 128+N.
func TestExitCodeKilledBySignal(t *testing.T) {
	launch, app := launchBin(t), testApp(t)
	sigs := []syscall.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGABRT,
		syscall.SIGKILL, syscall.SIGUSR1, syscall.SIGSEGV, syscall.SIGTERM, syscall.Signal(40)}
	for _, pid1 := range []bool{false, true} {
		for _, sig := range sigs {
			e, _, stderr := runLaunch(t, opts{pid1: pid1}, launch, "--", app, "kill-self", itoa(int(sig)))
			if e.code != 128+int(sig) {
				t.Errorf("pid1=%v: app killed by %v: launcher %v, want exit %d\nstderr:\n%s", pid1, sig, e, 128+int(sig), stderr)
			}
		}
	}
}

func TestProgramNotFoundOrNotExecutable(t *testing.T) {
	launch := launchBin(t)
	dir := t.TempDir()
	noexec := filepath.Join(dir, "noexec")
	os.WriteFile(noexec, []byte("#!/bin/sh\nexit 0\n"), 0o644)
	badInterp := filepath.Join(dir, "badinterp")
	os.WriteFile(badInterp, []byte("#!/nonexistent/interpreter\n"), 0o755)
	noShebang := filepath.Join(dir, "noshebang")
	os.WriteFile(noShebang, []byte{0x7f, 'E', 'L', 'F', 0, 0, 0}, 0o755)
	onPathOnlyNoexec := filepath.Join(dir, "pathdir")
	os.Mkdir(onPathOnlyNoexec, 0o755)
	os.WriteFile(filepath.Join(onPathOnlyNoexec, "tool"), nil, 0o644)

	cases := []struct {
		name string
		env  []string
		argv []string
		code int
		msg  string
	}{
		{"missing path", nil, []string{"/no/such/program"}, 127, "/no/such/program: no such file"},
		{"missing on PATH", nil, []string{"no-such-program-xyz"}, 127, "not found on PATH"},
		{"not executable", nil, []string{noexec}, 126, "permission denied"},
		{"directory", nil, []string{dir}, 126, "is a directory"},
		{"bad interpreter", nil, []string{badInterp}, 126, "interpreter"},
		{"not a program", nil, []string{noShebang}, 126, "exec format error"},
		{"on PATH but not executable", []string{"PATH=" + onPathOnlyNoexec}, []string{"tool"}, 126, "permission denied"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, _, stderr := runLaunch(t, opts{env: c.env}, append([]string{launch, "--"}, c.argv...)...)
			if e.code != c.code {
				t.Errorf("launcher %v, want exit %d\nstderr:\n%s", e, c.code, stderr)
			}
			// The error is the last line; at most the fail-open warning precedes it.
			lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
			if !strings.Contains(lines[len(lines)-1], c.msg) || len(lines) > 2 || len(lines) == 2 && !strings.HasPrefix(lines[0], "launch: warning: not tracing") {
				t.Errorf("stderr should end with one line saying %q, got:\n%s", c.msg, stderr)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	launch := launchBin(t)
	for _, argv := range [][]string{
		{},
		{"--"},
		{"--keep-caps", "chown", "--", "/bin/true"},
		{"--log-level", "loud", "--", "/bin/true"},
		{"--no-such-flag", "--", "/bin/true"},
		{"--attach-timeout", "soon", "--", "/bin/true"},
		{"--max-queue", "0", "--", "/bin/true"},
		{"--max-queue", "lots", "--", "/bin/true"},
	} {
		e, _, stderr := runLaunch(t, opts{}, append([]string{launch}, argv...)...)
		if e.code != 2 || !strings.HasPrefix(stderr, "launch: ") && !strings.Contains(stderr, "Incorrect Usage") {
			t.Errorf("launch %v: %v, want exit 2 with a message\nstderr:\n%s", argv, e, stderr)
		}
	}
}

func TestVersionHelpAndEnvFlags(t *testing.T) {
	launch := launchBin(t)
	e, out, _ := runLaunch(t, opts{}, launch, "--version")
	if e.code != 0 || !strings.HasPrefix(out, "launch version ") {
		t.Errorf("--version: %v %q", e, out)
	}
	e, out, _ = runLaunch(t, opts{}, launch, "--help")
	for _, want := range []string{"launch [flags] -- PROG [ARGS...]", "$LAUNCH_ATTACH_TIMEOUT", "--keep-caps", "--user", "--signal-group", "--grace", "--require-instrumentation", "--max-queue N", "$LAUNCH_MAX_QUEUE"} {
		if e.code != 0 || !strings.Contains(out, want) {
			t.Errorf("--help lacks %q:\n%s", want, out)
		}
	}
	// Flags from LAUNCH_<FLAG>.
	_, _, stderr := runLaunch(t, opts{env: append(os.Environ(), "LAUNCH_LOG_LEVEL=debug")}, launch, "--", "/bin/true")
	if !strings.Contains(stderr, "launch: debug: ") {
		t.Errorf("LAUNCH_LOG_LEVEL=debug gave no debug lines:\n%s", stderr)
	}
	e, _, _ = runLaunch(t, opts{env: append(os.Environ(), "LAUNCH_REQUIRE_INSTRUMENTATION=true")}, launch, "--", "/bin/true")
	if e.code != 1 {
		t.Errorf("LAUNCH_REQUIRE_INSTRUMENTATION=true: %v, want exit 1 (tracing is not available in this build)", e)
	}
}
