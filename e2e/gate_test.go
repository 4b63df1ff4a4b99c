package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The app's process exists, with its final PID, parent, process group and session,
// before the app runs; the app then runs in that same process.
func TestGateHoldsTheAppsProcess(t *testing.T) {
	env := append(os.Environ(), "GATE_TEST=inspect")
	r := start(t, opts{env: env, stdin: strings.NewReader("")}, gateLauncher(t), testApp(t), "report")
	var out strings.Builder
	for l := range r.lines {
		out.WriteString(l)
	}
	if e := r.wait(30 * time.Second); e.code != 0 {
		t.Fatalf("launcher %v\nstderr:\n%s", e, r.stderr)
	}
	m := regexp.MustCompile(`held pid=(\d+) exe_is_launcher=(\w+) ppid=(\d+) pgid=(\d+) sid=(\d+) my_pid=(\d+) my_sid=(\d+)`).FindStringSubmatch(r.stderr.String())
	if m == nil {
		t.Fatalf("no gate report:\n%s", r.stderr)
	}
	n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
	held, ppid, pgid, sid, launcherPID, launcherSID := n(1), n(3), n(4), n(5), n(6), n(7)
	if m[2] != "true" {
		t.Errorf("while held, the app's process already ran something else than the launcher's gate")
	}
	if ppid != launcherPID || pgid != held || sid != launcherSID {
		t.Errorf("held process: ppid %d pgid %d sid %d; want ppid %d (launcher), pgid %d (own), sid %d (launcher's)", ppid, pgid, sid, launcherPID, held, launcherSID)
	}
	rep := parseReport(t, out.String(), r.stderr.String())
	if rep.PID != held || rep.PPID != launcherPID || rep.PGID != held || rep.SID != launcherSID {
		t.Errorf("the app runs as pid %d ppid %d pgid %d sid %d, want the held process %d", rep.PID, rep.PPID, rep.PGID, rep.SID, held)
	}
	// The session is flushed once the app has exited.
	if !strings.Contains(r.stderr.String(), "gatelauncher: flushed") {
		t.Errorf("session not flushed at exit:\n%s", r.stderr)
	}
}

// Attaching that outlasts --attach-timeout does not hold the app any longer.
func TestGateOpensAfterAttachTimeout(t *testing.T) {
	env := append(os.Environ(), "GATE_TEST=slow", "GATE_ATTACH_TIMEOUT=300ms")
	begin := time.Now()
	e, _, stderr := runLaunch(t, opts{env: env}, gateLauncher(t), "/bin/true")
	took := time.Since(begin)
	if e.code != 0 || took < 300*time.Millisecond || took > 5*time.Second {
		t.Errorf("launcher %v after %s; want exit 0 after about 300ms\n%s", e, took, stderr)
	}
	if !strings.Contains(stderr, "attach-timeout") {
		t.Errorf("no word of the timeout:\n%s", stderr)
	}
}

// A session that attaches after --attach-timeout is flushed when the app exits, also
// when it attaches just as the app exits (the launcher must not have flushed already).
func TestLateSessionIsFlushed(t *testing.T) {
	for _, c := range []struct{ script, app string }{
		{"late", "1"},            // attached while the app runs
		{"late-at-exit", "0.05"}, // attached only as the app exits
	} {
		env := append(os.Environ(), "GATE_TEST="+c.script, "GATE_ATTACH_TIMEOUT=20ms")
		e, _, stderr := runLaunch(t, opts{env: env}, gateLauncher(t), "/bin/sleep", c.app)
		if e.code != 0 || strings.Count(stderr, "gatelauncher: flushed") != 1 {
			t.Errorf("%s: launcher %v; want exit 0 and the late session flushed once:\n%s", c.script, e, stderr)
		}
	}
}

// Failing instrumentation: one warning and the app runs; required, the app never runs.
func TestGateFailOpenAndRequired(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	env := append(os.Environ(), "GATE_TEST=fail")
	e, _, stderr := runLaunch(t, opts{env: env}, gateLauncher(t), testApp(t), "touch", marker)
	if _, err := os.Stat(marker); e.code != 0 || err != nil {
		t.Errorf("fail-open: launcher %v, app ran: %v\n%s", e, err == nil, stderr)
	}
	if !strings.Contains(stderr, "scripted failure") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("fail-open: want one line naming the failure:\n%s", stderr)
	}
	os.Remove(marker)
	e, _, stderr = runLaunch(t, opts{env: append(env, "GATE_REQUIRE=1")}, gateLauncher(t), testApp(t), "touch", marker)
	if _, err := os.Stat(marker); e.code != 1 || err == nil {
		t.Errorf("required: launcher %v, app ran: %v\n%s", e, err == nil, stderr)
	}
}

// A signal that reaches the launcher while the app is held is delivered once it runs.
func TestGateQueuesSignals(t *testing.T) {
	env := append(os.Environ(), "GATE_TEST=signal-self")
	e, _, stderr := runLaunch(t, opts{env: env}, gateLauncher(t), "/bin/sleep", "30")
	if e.code != 143 {
		t.Errorf("SIGTERM during the gate: launcher %v, want 143 (the app got it)\n%s", e, stderr)
	}
}

// The program turns unexecutable while held: the exec fails after the gate, 126.
func TestGateExecFailsAfterRelease(t *testing.T) {
	dir := t.TempDir()
	app := filepath.Join(dir, "app")
	b, err := os.ReadFile(testApp(t))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(app, b, 0o755)
	env := append(os.Environ(), "GATE_TEST=chmod")
	e, _, stderr := runLaunch(t, opts{env: env}, gateLauncher(t), app, "exit", "0")
	if e.code != 126 || !strings.Contains(stderr, "permission denied") {
		t.Errorf("launcher %v, want 126 with the reason\n%s", e, stderr)
	}
}

// Flushing at exit is bounded by --flush-timeout.
func TestFlushTimeout(t *testing.T) {
	env := append(os.Environ(), "GATE_TEST=block-flush", "GATE_FLUSH_TIMEOUT=300ms")
	begin := time.Now()
	e, _, stderr := runLaunch(t, opts{env: env}, gateLauncher(t), "/bin/true")
	if took := time.Since(begin); e.code != 0 || took < 300*time.Millisecond || took > 5*time.Second {
		t.Errorf("launcher %v after %s, want exit 0 after about 300ms\n%s", e, took, stderr)
	}
	if !strings.Contains(stderr, "shutdown gave up") {
		t.Errorf("the session was not asked to shut down:\n%s", stderr)
	}
}

// The gate process execs the app from package launcher/gate's init, before the
// launcher's heavy dependencies initialize (they would cost it milliseconds).
func TestGateProcessSkipsTheLaunchersDependencies(t *testing.T) {
	cmd := exec.Command(launchBin(t))
	cmd.Args[0] = "otel-go-launcher:gate" // no fd 3: it exits at once, having initialized what it needs
	cmd.Env = []string{"GODEBUG=inittrace=1"}
	out, _ := cmd.CombinedOutput()
	inits := strings.Count(string(out), "\ninit ")
	heavy := []string{"init google.golang.org/grpc @", "init google.golang.org/protobuf/internal/encoding/json @", "init go.opentelemetry.io/otel/sdk/trace @"}
	for _, h := range heavy {
		if strings.Contains(string(out), h) {
			t.Errorf("the gate process ran %q", h)
		}
	}
	if inits == 0 || inits > 120 {
		t.Errorf("the gate process initialized %d packages:\n%s", inits, out)
	}
	if cmd.ProcessState.ExitCode() != 126 {
		t.Errorf("gate process without a gate pipe: exit %d, want 126", cmd.ProcessState.ExitCode())
	}
}
