package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// report mirrors testapp's Report.
type report struct {
	Argv       []string          `json:"argv"`
	Env        []string          `json:"env"`
	Cwd        string            `json:"cwd"`
	FDs        map[string]string `json:"fds"`
	Status     map[string]string `json:"status"`
	PID        int               `json:"pid"`
	PPID       int               `json:"ppid"`
	PGID       int               `json:"pgid"`
	SID        int               `json:"sid"`
	Foreground int               `json:"foreground"`
}

func parseReport(t testing.TB, out, stderr string) report {
	t.Helper()
	var r report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("app report: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr)
	}
	return r
}

// appReport runs testapp report under the launcher and returns what the app saw.
func appReport(t testing.TB, o opts, launchArgs []string, appArgs ...string) report {
	t.Helper()
	argv := append(append([]string{launchBin(t)}, launchArgs...), append([]string{"--", testApp(t), "report"}, appArgs...)...)
	e, out, stderr := runLaunch(t, o, argv...)
	if e.code != 0 {
		t.Fatalf("launcher %v\nstderr:\n%s", e, stderr)
	}
	return parseReport(t, out, stderr)
}

func sigset(sigs ...syscall.Signal) string {
	var m uint64
	for _, s := range sigs {
		m |= 1 << (uint(s) - 1)
	}
	return strings.Repeat("0", 16-len(strconv.FormatUint(m, 16))) + strconv.FormatUint(m, 16)
}

// argv, environment, working directory and stdio reach the app untouched; no other
// file descriptor does; the app leads its own process group in the launcher's session.
func TestAppEnvironmentIsUntouched(t *testing.T) {
	dir := t.TempDir()
	env := []string{"PATH=/usr/bin:/bin", "EMPTY=", "SPACES=a b  c", "UNICODE=grüße", "LAUNCH_LOG_LEVEL=warn", "Z_LAST=1"}
	leaked, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	defer leaked.Close()
	pr, pw, _ := os.Pipe()
	defer pr.Close()
	defer pw.Close()

	var out testenv.SyncBuffer
	// Four inherited fds (3-6): the gate process reuses 3 and 4 for its pipes.
	r := start(t, opts{env: env, dir: dir, extra: []*os.File{leaked, pw, leaked, pw}, stdin: strings.NewReader(""), stdout: &out},
		launchBin(t), "--", testApp(t), "report", "a b", "", "--", "-x", "--user")
	e := r.wait(30 * time.Second)
	if e.code != 0 {
		t.Fatalf("launcher %v\nstderr:\n%s", e, r.stderr)
	}
	rep := parseReport(t, out.String(), r.stderr.String())

	if want := []string{testApp(t), "report", "a b", "", "--", "-x", "--user"}; !reflect.DeepEqual(rep.Argv, want) {
		t.Errorf("argv %q, want %q", rep.Argv, want)
	}
	if !reflect.DeepEqual(rep.Env, env) {
		t.Errorf("env %q, want %q", rep.Env, env)
	}
	if rep.Cwd != dir {
		t.Errorf("cwd %q, want %q", rep.Cwd, dir)
	}
	// The app's Go runtime opens files of its own (cgroup limits, its listing of
	// /proc/self/fd); what must not be there is what the launcher inherited.
	var st syscall.Stat_t
	syscall.Fstat(int(pw.Fd()), &st)
	pipe := "pipe:[" + strconv.FormatUint(st.Ino, 10) + "]"
	for fd, target := range rep.FDs {
		if n, _ := strconv.Atoi(fd); n > 2 && (target == "/dev/null" || target == pipe) {
			t.Errorf("fd %s (%s) leaked into the app", fd, target)
		}
	}
	if rep.PPID != r.pid || rep.PGID != rep.PID {
		t.Errorf("app pid %d ppid %d pgid %d; want parent %d (the launcher) and its own process group", rep.PID, rep.PPID, rep.PGID, r.pid)
	}
	if sid, _ := unix.Getsid(0); rep.SID != sid {
		t.Errorf("app session %d, want the launcher's %d", rep.SID, sid)
	}
}

// The signal mask and the ignored signals the launcher inherited are the app's; the
// launcher's own (it ignores SIGTTIN, SIGTTOU, SIGPIPE) are not. The reference is the
// same app started without the launcher.
func TestAppSignalStateIsInherited(t *testing.T) {
	direct := func(wrap []string) report {
		argv := append(append([]string{}, wrap...), testApp(t), "report")
		out, err := exec.Command(argv[0], argv[1:]...).Output()
		if err != nil {
			t.Fatalf("%v: %v", argv, err)
		}
		return parseReport(t, string(out), "")
	}
	check := func(name string, got, want report, lost ...syscall.Signal) {
		t.Helper()
		if got.Status["SigBlk"] != want.Status["SigBlk"] {
			t.Errorf("%s: app SigBlk %s, without the launcher %s", name, got.Status["SigBlk"], want.Status["SigBlk"])
		}
		wantIgn, _ := strconv.ParseUint(want.Status["SigIgn"], 16, 64)
		for _, s := range lost {
			wantIgn &^= 1 << (uint(s) - 1)
		}
		if gotIgn, _ := strconv.ParseUint(got.Status["SigIgn"], 16, 64); gotIgn != wantIgn {
			t.Errorf("%s: app SigIgn %016x, want %016x", name, gotIgn, wantIgn)
		}
	}
	check("as started", appReport(t, opts{}, nil), direct(nil))

	// As a shell starts background jobs and nohup starts programs. The Go runtime
	// keeps an inherited SIG_IGN only for SIGHUP, SIGINT and the job-control
	// signals; SIGQUIT's is lost before the launcher's first instruction (documented).
	blocked := []syscall.Signal{syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH}
	ignored := []syscall.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGTSTP, syscall.SIGTTOU, syscall.SIGQUIT}
	wrap := []string{testApp(t), "exec-with", sigList(blocked), sigList(ignored)}
	withWrap := direct(wrap)
	if withWrap.Status["SigBlk"] == direct(nil).Status["SigBlk"] {
		t.Fatalf("the wrapper changed nothing: %v", withWrap.Status)
	}
	check("blocked and ignored by the parent", appReport(t, opts{wrap: wrap}, nil), withWrap, syscall.SIGQUIT)
}

func sigList(sigs []syscall.Signal) string {
	var s []string
	for _, sig := range sigs {
		s = append(s, strconv.Itoa(int(sig)))
	}
	return strings.Join(s, ",")
}

// stdin, stdout and stderr are the app's own: data in, data out, errors apart.
func TestStdio(t *testing.T) {
	for _, pid1 := range []bool{false, true} {
		input := strings.Repeat("line of input\n", 10000) // larger than a pipe buffer
		script := `cat; echo to-stderr >&2`
		e, out, stderr := runLaunch(t, opts{pid1: pid1, stdin: strings.NewReader(input)}, launchBin(t), "--", "/bin/sh", "-c", script)
		if e.code != 0 || out != input {
			t.Errorf("pid1=%v: %v, stdout %d bytes, want the %d bytes of stdin", pid1, e, len(out), len(input))
		}
		if !strings.HasSuffix(stderr, "to-stderr\n") {
			t.Errorf("pid1=%v: stderr %q", pid1, stderr)
		}
	}
}
