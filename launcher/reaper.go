package launcher

import (
	"errors"
	"log/slog"
	"strconv"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// reaper is the process's only caller of wait4. It reaps every child: the app and every
// orphan the kernel hands to the launcher (as PID 1, or as a child subreaper).
//
// It blocks in wait4(-1) rather than reacting to SIGCHLD, so coalesced SIGCHLDs cannot
// make it miss an exit. It ends at ECHILD: with no child left there is no descendant
// left either, since a subreaper inherits every orphan below it.
type reaper struct {
	app       int
	appExit   chan unix.WaitStatus // receives the app's status once
	appExitAt atomic.Int64         // when wait4 returned it (CLOCK_MONOTONIC ns), set before appExit is
	done      chan struct{}        // closed when no child is left
}

func startReaper(app int) *reaper {
	r := &reaper{app: app, appExit: make(chan unix.WaitStatus, 1), done: make(chan struct{})}
	go r.run()
	return r
}

func (r *reaper) run() {
	defer close(r.done)
	for {
		var ws unix.WaitStatus
		// __WALL: also children whose exit signal is not SIGCHLD (clone without it).
		pid, err := unix.Wait4(-1, &ws, unix.WALL, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ECHILD):
			return
		case err != nil:
			slog.Error("wait4 failed; zombies will no longer be reaped", "err", err)
			return
		case pid == r.app:
			var now unix.Timespec
			unix.ClockGettime(unix.CLOCK_MONOTONIC, &now)
			r.appExitAt.Store(now.Nano())
			r.appExit <- ws
		default:
			slog.Debug("reaped orphan", "pid", pid, "status", describeStatus(ws))
		}
	}
}

// exitCode is the launcher's exit code for a child's wait status: the child's own exit
// code, or 128+N when signal N killed it.
func exitCode(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

func describeStatus(ws unix.WaitStatus) string {
	if ws.Signaled() {
		return "killed by " + signalName(ws.Signal())
	}
	return "exit " + strconv.Itoa(ws.ExitStatus())
}
