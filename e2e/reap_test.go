package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// zombiesOf counts the zombie children of pid.
func zombiesOf(pid int) int {
	n := 0
	for _, st := range childrenOf(pid) {
		if st.state == "Z" {
			n++
		}
	}
	return n
}

// The app's orphans are reaped: as PID 1, and as a child subreaper when not.
func TestOrphansReaped(t *testing.T) {
	const orphans = 150
	for _, pid1 := range []bool{false, true} {
		t.Run(fmt.Sprintf("pid1=%v", pid1), func(t *testing.T) {
			r := start(t, opts{pid1: pid1}, launchBin(t), "--log-level", "debug", "--", testApp(t), "orphans", strconv.Itoa(orphans))
			r.expectLine("spawned")
			// Each orphan exits 100 ms after it started; all must be reaped while the
			// app still runs.
			if !eventually(10*time.Second, func() bool {
				return strings.Count(r.stderr.String(), "reaped orphan") == orphans
			}) {
				t.Fatalf("%d of %d orphans reaped\nstderr:\n%s", strings.Count(r.stderr.String(), "reaped orphan"), orphans, r.stderr)
			}
			if z := zombiesOf(r.pid); z != 0 {
				t.Errorf("%d zombies left under the launcher", z)
			}
			r.stdin.Close()
			if e := r.wait(10 * time.Second); e.code != 0 {
				t.Errorf("launcher %v", e)
			}
		})
	}
}

// SIGCHLDs coalesce (many children exit, one signal arrives); no exit may be missed.
// 1000 rounds of three orphans exiting together, in one run.
func TestCoalescedChildExits(t *testing.T) {
	script := `for i in $(seq 1000); do (/bin/true & /bin/true & /bin/true &); done`
	for _, pid1 := range []bool{false, true} {
		e, _, stderr := runLaunch(t, opts{pid1: pid1}, launchBin(t), "--log-level", "debug", "--", "/bin/sh", "-c", script)
		if e.code != 0 {
			t.Fatalf("pid1=%v: launcher %v\n%s", pid1, e, tail(stderr, 20))
		}
		// Each subshell leaves three orphans; a few may be reaped by the subshell
		// before it exits, so count at least most of them.
		if n := strings.Count(stderr, "reaped orphan"); n < 2900 || n > 3000 {
			t.Errorf("pid1=%v: %d orphans reaped, want about 3000", pid1, n)
		}
	}
}

// The app's exit coincides with its orphans' exits: the launcher must still notice
// the app's exit, 200 times.
func TestAppExitAmidOrphanExits(t *testing.T) {
	launch := launchBin(t)
	script := `(sleep 0.01 &); (sleep 0.01 &); (sleep 0.01 &); exec sleep 0.01`
	parallel(t, 200, 4, func(i int) {
		e, _, stderr := runLaunch(t, opts{}, launch, "--", "/bin/sh", "-c", script)
		if e.code != 0 {
			t.Errorf("round %d: launcher %v\n%s", i, e, stderr)
		}
	})
}

// --grace: what the app left running gets SIGTERM, then SIGKILL after the grace
// period; without it, the launcher leaves it alone.
func TestGrace(t *testing.T) {
	app := testApp(t)
	for _, c := range []struct {
		pid1  bool
		grace string
	}{{false, ""}, {false, "300ms"}, {true, "300ms"}} {
		args := []string{launchBin(t)}
		if c.grace != "" {
			args = append(args, "--grace", c.grace)
		}
		// The child ignores SIGTERM for 20 s.
		r := start(t, opts{pid1: c.pid1}, append(args, "--", app, "linger", "20000")...)
		lingerer, _ := strconv.Atoi(r.nextLine(10 * time.Second))
		begin := time.Now()
		e := r.wait(10 * time.Second)
		took := time.Since(begin)
		if e.code != 0 {
			t.Errorf("%+v: launcher %v", c, e)
		}
		switch {
		case c.grace == "":
			if !alive(lingerer) {
				t.Errorf("%+v: without --grace the app's child should be left running", c)
			}
			killPID(lingerer, syscall.SIGKILL)
		case c.pid1:
			// The namespace ends with its PID 1; the grace period still runs first.
			if took < 250*time.Millisecond {
				t.Errorf("%+v: exited after %s, before the grace period", c, took)
			}
		default:
			if took < 250*time.Millisecond || took > 5*time.Second {
				t.Errorf("%+v: exited after %s, want about the grace period", c, took)
			}
			if !eventually(2*time.Second, func() bool { return !alive(lingerer) }) {
				t.Errorf("%+v: the app's child survived the grace period", c)
				killPID(lingerer, syscall.SIGKILL)
			}
		}
	}
}

// A child that exits on SIGTERM ends the grace period at once.
func TestGraceEndsEarly(t *testing.T) {
	script := `sleep 30 & echo $!`
	begin := time.Now()
	e, out, _ := runLaunch(t, opts{}, launchBin(t), "--grace", "20s", "--", "/bin/sh", "-c", script)
	if e.code != 0 || time.Since(begin) > 10*time.Second {
		t.Errorf("launcher %v after %s, want exit 0 well before --grace 20s", e, time.Since(begin))
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(out))
	if alive(pid) {
		t.Errorf("sleep %d survived SIGTERM", pid)
		killPID(pid, syscall.SIGKILL)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
