package launcher

// The parent's side of the start gate (package gate is the child's). The gate process
// is forked first thing, so that its Go runtime starts while the launcher registers its
// signal handlers. It runs with a minimal environment of its own (GOMAXPROCS=1: a
// single-threaded job); the app's environment travels in the spec.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/otel-go-launcher/otel-go-launcher/launcher/gate"
)

// gatedProcess is the app's process, held at the start gate until release.
type gatedProcess struct {
	pid    int
	pidfd  int      // -1 where the kernel has no pidfds
	gate   *os.File // the spec goes in, then closing it opens the gate
	status *os.File // reports the outcome of the exec
}

// startGate creates the app's process, held at the gate. Its stdio are the launcher's
// fds 0-2, passed on unchanged.
func startGate() (*gatedProcess, error) {
	gateR, gateW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer gateR.Close()
	statusR, statusW, err := os.Pipe()
	if err != nil {
		gateW.Close()
		return nil, err
	}
	defer statusW.Close()

	pidfd := -1
	attr := &syscall.ProcAttr{
		Env:   []string{"GOMAXPROCS=1"},
		Files: []uintptr{0, 1, 2, gateR.Fd(), statusW.Fd()},
		Sys: &syscall.SysProcAttr{
			Setpgid: true, // like tini: the app leads its own process group
			PidFD:   &pidfd,
		},
	}
	pid, err := syscall.ForkExec("/proc/self/exe", []string{gate.Argv0}, attr)
	if err != nil {
		gateW.Close()
		statusR.Close()
		return nil, fmt.Errorf("start the app's process: %w", err)
	}
	return &gatedProcess{pid: pid, pidfd: pidfd, gate: gateW, status: statusR}, nil
}

// release opens the gate and waits for the outcome of the app's exec: nil once the app
// runs, or why it could not start (its process then exits with exitCode).
func (p *gatedProcess) release(spec gate.Spec) (exitCode int, err error) {
	payload, err := json.Marshal(spec)
	if err != nil {
		p.abort()
		return exitCannotExec, err
	}
	// The gate process reads while we write, so a spec larger than the pipe
	// buffer (a huge argv or environment) cannot block. EPIPE means it died at
	// the gate; the reaper reports how.
	p.gate.Write(payload)
	p.gate.Close()
	defer p.status.Close()
	msg, _ := io.ReadAll(p.status)
	if len(msg) == 0 {
		return 0, nil
	}
	var f gate.Failure
	if json.Unmarshal(msg, &f) != nil {
		return exitCannotExec, fmt.Errorf("the app's process reported %q", msg)
	}
	return f.ExitCode, errors.New(f.Message)
}

// abort ends a process that never left the gate (its reaping is the reaper's job).
func (p *gatedProcess) abort() {
	p.signal(unix.SIGKILL)
	p.gate.Close()
	p.status.Close()
}

// signal sends sig to the process. With a pidfd it cannot reach another process that
// reused the PID after the app was reaped.
func (p *gatedProcess) signal(sig syscall.Signal) error {
	if p.pidfd >= 0 {
		return unix.PidfdSendSignal(p.pidfd, sig, nil, 0)
	}
	return unix.Kill(p.pid, sig)
}
