// Package e2e runs the real launch binary on real processes: as a plain child, as PID 1
// of a fresh PID namespace (unshare -pf --mount-proc), under a pty, as another user.
package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

func TestMain(m *testing.M) {
	// A run under nohup ignores SIGHUP, and every launcher started here would pass that
	// on to its app, as the launcher keeps an inherited ignore (README, Signals): the
	// signal tests expect a container's start, with nothing ignored. A handler here
	// makes the launchers' exec reset it to the default.
	for _, sig := range []os.Signal{syscall.SIGHUP, syscall.SIGINT} {
		if signal.Ignored(sig) {
			signal.Notify(make(chan os.Signal, 1), sig)
		}
	}
	// The launchers run here as in a container: in a cgroup of their own.
	restore, err := testenv.OwnCgroup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
	}
	code := m.Run()
	restore()
	testenv.Cleanup()
	os.Exit(code)
}

func launchBin(t testing.TB) string { return testenv.Launcher(t) }
func testApp(t testing.TB) string   { return testenv.Build(t, "./e2e/testdata/testapp") }
func gateLauncher(t testing.TB) string {
	return testenv.Build(t, "./e2e/testdata/gatelauncher", "CGO_ENABLED=0")
}

// run is one launcher process under test.
type run struct {
	t      testing.TB
	cmd    *exec.Cmd
	pid    int // the launcher's PID (in our namespace), also as PID 1 of its own
	stdin  io.WriteCloser
	lines  chan string // stdout, line by line
	stderr *testenv.SyncBuffer
	done   chan struct{}
	err    error
}

type opts struct {
	pid1   bool     // run the launcher as PID 1 of a new PID namespace
	env    []string // the whole environment (nil: ours)
	dir    string
	stdin  io.Reader // instead of a pipe
	wrap   []string  // command line put in front (setpriv ..., unshare -m ...)
	extra  []*os.File
	stdout io.Writer // instead of lines
}

// start runs argv (normally launch's own command line) as the tests' launcher.
func start(t testing.TB, o opts, argv ...string) *run {
	t.Helper()
	full := append(append([]string{}, o.wrap...), argv...)
	if o.pid1 {
		testenv.RequireRoot(t)
		testenv.RequireCommand(t, "unshare")
		full = append([]string{"unshare", "-pf", "--mount-proc"}, full...)
	}
	r := &run{t: t, cmd: exec.Command(full[0], full[1:]...), lines: make(chan string, 4096),
		stderr: &testenv.SyncBuffer{}, done: make(chan struct{})}
	r.cmd.Env, r.cmd.Dir, r.cmd.ExtraFiles = o.env, o.dir, o.extra
	r.cmd.Stderr = r.stderr
	r.cmd.WaitDelay = time.Second // an orphan holding our pipes must not hang Wait
	if o.stdin != nil {
		r.cmd.Stdin = o.stdin
	} else {
		w, err := r.cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		r.stdin = w
	}
	var out io.ReadCloser
	if o.stdout != nil {
		r.cmd.Stdout = o.stdout
	} else {
		var err error
		if out, err = r.cmd.StdoutPipe(); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", full, err)
	}
	if out != nil {
		go func() {
			sc := bufio.NewScanner(out)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				r.lines <- sc.Text()
			}
			close(r.lines)
		}()
	}
	go func() {
		r.err = r.cmd.Wait()
		close(r.done)
	}()
	r.pid = r.cmd.Process.Pid
	if len(o.wrap) > 0 || o.pid1 {
		r.pid = r.findLauncher(argv[0])
	}
	t.Cleanup(func() {
		for _, pid := range descendantsOf(r.cmd.Process.Pid) {
			killPID(pid, syscall.SIGKILL)
		}
		r.cmd.Process.Kill()
		<-r.done
	})
	return r
}

// findLauncher finds the process running exe among the descendants of the started
// command (unshare and setpriv fork or exec before the launcher runs), or -1 if the
// command ended first.
func (r *run) findLauncher(exe string) int {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, pid := range append([]int{r.cmd.Process.Pid}, descendantsOf(r.cmd.Process.Pid)...) {
			if target, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && target == exe {
				return pid
			}
		}
		select {
		case <-r.done:
			return -1 // ended already: nothing left to signal
		case <-time.After(200 * time.Microsecond):
		}
	}
	r.t.Fatalf("launcher %s not found below pid %d", exe, r.cmd.Process.Pid)
	return 0
}

// signal sends sig to the launcher.
func (r *run) signal(sig syscall.Signal) {
	r.t.Helper()
	if r.pid <= 1 {
		r.t.Fatalf("no launcher process to send %v to (it ended early)\nstderr:\n%s", sig, r.stderr)
	}
	if err := syscall.Kill(r.pid, sig); err != nil {
		r.t.Fatalf("kill %d %v: %v", r.pid, sig, err)
	}
}

// killPID signals a process by PID, refusing the PIDs that mean "many processes".
func killPID(pid int, sig syscall.Signal) {
	if pid > 1 {
		syscall.Kill(pid, sig)
	}
}

// expectLine waits for the next stdout line and checks it.
func (r *run) expectLine(want string) {
	r.t.Helper()
	if got := r.nextLineFor(want, 10*time.Second); got != want {
		r.t.Fatalf("stdout line %q, want %q\nstderr:\n%s", got, want, r.stderr)
	}
}

func (r *run) nextLine(timeout time.Duration) string {
	r.t.Helper()
	return r.nextLineFor("", timeout)
}

// nextLineFor is nextLine saying, if none comes, which line was awaited.
func (r *run) nextLineFor(want string, timeout time.Duration) string {
	r.t.Helper()
	select {
	case l, ok := <-r.lines:
		if !ok {
			r.t.Fatalf("stdout closed, launcher: %v\nstderr:\n%s", r.wait(5*time.Second), r.stderr)
		}
		return l
	case <-time.After(timeout):
		r.t.Fatalf("no stdout line within %s (awaiting %q)\nstderr:\n%s", timeout, want, r.stderr)
	}
	return ""
}

// exit is how the launcher (or its wrapper) ended.
type exit struct {
	code   int            // exit status, -1 if killed
	signal syscall.Signal // the killing signal, 0 if it exited
}

func (e exit) String() string {
	if e.signal != 0 {
		return "killed by " + e.signal.String()
	}
	return "exit " + strconv.Itoa(e.code)
}

// wait waits for the launcher to end; exceeding timeout fails the test (a hang).
func (r *run) wait(timeout time.Duration) exit {
	r.t.Helper()
	select {
	case <-r.done:
	case <-time.After(timeout):
		r.t.Fatalf("%v still running after %s\nstderr:\n%s", r.cmd.Args, timeout, r.stderr)
	}
	var ee *exec.ExitError
	if r.err == nil {
		return exit{}
	}
	if !errors.As(r.err, &ee) {
		r.t.Fatalf("wait: %v", r.err)
	}
	ws := ee.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return exit{code: -1, signal: ws.Signal()}
	}
	return exit{code: ws.ExitStatus()}
}

// runLaunch runs a launcher to completion and returns its exit, stdout and stderr.
func runLaunch(t testing.TB, o opts, argv ...string) (exit, string, string) {
	t.Helper()
	var out testenv.SyncBuffer
	o.stdout = &out
	if o.stdin == nil {
		o.stdin = strings.NewReader("")
	}
	r := start(t, o, argv...)
	e := r.wait(60 * time.Second)
	return e, out.String(), r.stderr.String()
}

// procStat is what /proc/PID/stat says of a process.
type procStat struct {
	state      string
	ppid, pgid int
}

func statOf(pid int) (procStat, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, false
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	ppid, _ := strconv.Atoi(f[1])
	pgid, _ := strconv.Atoi(f[2])
	return procStat{state: f[0], ppid: ppid, pgid: pgid}, true
}

// childrenOf lists the processes whose parent is pid, with their state.
func childrenOf(pid int) map[int]procStat {
	out := map[int]procStat{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := statOf(p); ok && st.ppid == pid {
			out[p] = st
		}
	}
	return out
}

func descendantsOf(pid int) []int {
	var out []int
	for c := range childrenOf(pid) {
		out = append(out, c)
		out = append(out, descendantsOf(c)...)
	}
	return out
}

func itoa(n int) string { return strconv.Itoa(n) }

func alive(pid int) bool {
	st, ok := statOf(pid)
	return ok && st.state != "Z"
}

// eventually polls cond until it holds or timeout passes.
func eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// getOK GETs path of the app at addr, which r runs, and fails the test unless it
// answers 200.
func getOK(t *testing.T, r *run, addr, path string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v\n%s", path, err, r.stderr)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s %s", path, resp.Status, body)
	}
}

// checkChildren checks the client spans found under route's server span, summarized
// as T: as many as want, and each of want among them.
func checkChildren[T comparable](t *testing.T, route string, got, want []T) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d client spans %v, want %v", route, len(got), got, want)
		return
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("%s: no span %+v among %+v", route, w, got)
		}
	}
}

// exactSpans waits up to timeout for n spans, then half a second for any more, and
// fails the test unless exactly n came; what comes with logs (launchers' stderr) is
// shown if too few came.
func exactSpans(t *testing.T, recv *testenv.Receiver, n int, timeout time.Duration, logs ...fmt.Stringer) []testenv.Span {
	t.Helper()
	if spans, ok := recv.WaitFor(timeout, func(s []testenv.Span) bool { return len(s) >= n }); !ok {
		t.Fatalf("%d spans, want %d: %s\n%s", len(spans), n, spanList(spans), logs)
	}
	time.Sleep(500 * time.Millisecond) // and no more
	spans := recv.Spans()
	if len(spans) != n {
		t.Fatalf("%d spans, want %d: %s", len(spans), n, spanList(spans))
	}
	return spans
}
