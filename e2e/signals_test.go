package e2e

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/otel-go-launcher/otel-go-launcher/launcher"
)

// Every relayed signal sent to the launcher reaches the app exactly once; the ones the
// launcher keeps to itself (SIGURG, SIGPIPE, SIGTTIN, SIGTTOU, SIGCHLD) never do.
func TestSignalsRelayedExactlyOnce(t *testing.T) {
	for _, pid1 := range []bool{false, true} {
		t.Run(fmt.Sprintf("pid1=%v", pid1), func(t *testing.T) {
			// No async preemption: the app's runtime then sends itself no SIGURG,
			// so any SIGURG it sees came from outside.
			env := append(os.Environ(), "GODEBUG=asyncpreemptoff=1")
			r := start(t, opts{pid1: pid1, env: env}, launchBin(t), "--log-level", "debug", "--", testApp(t), "signals")
			r.expectLine("ready")
			relayed := launcher.RelayedSignals()
			if len(relayed) < 50 {
				t.Fatalf("only %d relayed signals: %v", len(relayed), relayed)
			}
			for _, sig := range relayed {
				r.signal(sig)
				r.expectLine(strconv.Itoa(int(sig)))
			}
			kept := []syscall.Signal{syscall.SIGURG, syscall.SIGPIPE, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGCHLD}
			for _, sig := range kept {
				r.signal(sig)
			}
			// A last relayed signal flushes out anything the kept ones caused.
			r.signal(syscall.SIGUSR1)
			r.expectLine(strconv.Itoa(int(syscall.SIGUSR1)))
			time.Sleep(200 * time.Millisecond)
			r.stdin.Close()
			if e := r.wait(10 * time.Second); e.code != 0 {
				t.Fatalf("launcher %v\nstderr:\n%s", e, r.stderr)
			}
			var extra []string
			for l := range r.lines {
				extra = append(extra, l)
			}
			if len(extra) > 0 {
				t.Errorf("the app received signals it should not have: %v", extra)
			}
		})
	}
}

// As PID 1, an app with no handlers of its own still stops on SIGTERM and SIGINT:
// the launcher catches them (the kernel would drop them for a PID 1 without handlers)
// and the app, PID 2 in the namespace, has the default action.
func TestPID1AppWithoutHandlersStops(t *testing.T) {
	sleep := "/bin/sleep"
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		r := start(t, opts{pid1: true, stdin: strings.NewReader("")}, launchBin(t), "--log-level", "debug", "--", sleep, "1000")
		waitAppRunning(t, r, sleep)
		r.signal(sig)
		if e := r.wait(10 * time.Second); e.code != 128+int(sig) {
			t.Errorf("%v to PID 1: %v, want exit %d\nstderr:\n%s", sig, e, 128+int(sig), r.stderr)
		}
	}
}

// waitAppRunning waits until the launcher's child runs exe (past the gate).
func waitAppRunning(t testing.TB, r *run, exe string) int {
	t.Helper()
	exe, _ = filepath.EvalSymlinks(exe)
	var app int
	if !eventually(10*time.Second, func() bool {
		for c := range childrenOf(r.pid) {
			if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", c)); target == exe {
				app = c
				return true
			}
		}
		return false
	}) {
		t.Fatalf("the app %s never ran\nstderr:\n%s", exe, r.stderr)
	}
	return app
}

// SIGTERM right after start, 500 times, is never lost. Before the launcher has its
// handlers, the kernel applies the default action to it (it dies of SIGTERM); after,
// it relays (the app dies of it, the launcher exits 143). Either way it ends.
func TestTermRightAfterStartIsNeverLost(t *testing.T) {
	launch := launchBin(t)
	const rounds = 500
	var mu sync.Mutex
	outcomes := map[string]int{}
	parallel(t, rounds, 4, func(i int) {
		r := start(t, opts{stdin: strings.NewReader("")}, launch, "--", "/bin/sleep", "30")
		time.Sleep(time.Duration(rand.Int63n(int64(5 * time.Millisecond))))
		r.signal(syscall.SIGTERM)
		e := r.wait(10 * time.Second)
		if e.code != 143 && e.signal != syscall.SIGTERM {
			t.Errorf("round %d: %v, want exit 143 or death by SIGTERM\nstderr:\n%s", i, e, r.stderr)
		}
		mu.Lock()
		outcomes[e.String()]++
		mu.Unlock()
	})
	t.Logf("outcomes of %d rounds: %v", rounds, outcomes)
}

// As PID 1 a signal that arrives before the process has a handler is discarded by the
// kernel (true of any init); from the launcher's first log line on, SIGTERM at any
// moment - before the app's process exists, at the gate, during exec - ends the app.
func TestTermRightAfterStartAsPID1(t *testing.T) {
	launch := launchBin(t)
	parallel(t, 500, 4, func(i int) {
		r := start(t, opts{pid1: true, stdin: strings.NewReader("")}, launch, "--log-level", "debug", "--", "/bin/sleep", "30")
		if !eventually(10*time.Second, func() bool { return strings.Contains(r.stderr.String(), "relaying signals") }) {
			t.Errorf("round %d: no debug line\nstderr:\n%s", i, r.stderr)
			return
		}
		time.Sleep(time.Duration(rand.Int63n(int64(5 * time.Millisecond))))
		r.signal(syscall.SIGTERM)
		if e := r.wait(10 * time.Second); e.code != 143 {
			t.Errorf("round %d: %v, want exit 143\nstderr:\n%s", i, e, r.stderr)
		}
	})
}

// --signal-group relays to the app's whole process group.
func TestSignalGroup(t *testing.T) {
	script := `sleep 1000 & echo $!; wait`
	for _, group := range []bool{false, true} {
		args := []string{launchBin(t)}
		if group {
			args = append(args, "--signal-group")
		}
		r := start(t, opts{}, append(args, "--", "/bin/sh", "-c", script)...)
		sleeper, _ := strconv.Atoi(r.nextLine(10 * time.Second))
		r.signal(syscall.SIGTERM)
		r.wait(10 * time.Second)
		gone := eventually(2*time.Second, func() bool { return !alive(sleeper) })
		if gone != group {
			t.Errorf("--signal-group=%v: the app's child gone after SIGTERM: %v", group, gone)
		}
		killPID(sleeper, syscall.SIGKILL)
	}
}

// parallel runs f(0..n-1), width at a time, and stops early once the test failed.
func parallel(t *testing.T, n, width int, f func(i int)) {
	next := make(chan int, n)
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	for w := 0; w < width; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if t.Failed() {
					return
				}
				f(i)
			}
		}()
	}
	wg.Wait()
}
