package launcher

// The parent's side of the start gate; package gate holds the process's side and
// creates the process (as early as its init, when the command line runs an app).

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/otel-go-launcher/otel-go-launcher/launcher/gate"
)

// Subcommands are the launch commands that run no app (see gate.Subcommands).
var Subcommands = gate.Subcommands

// gatedProcess is the app's process, held at the start gate until release.
type gatedProcess struct {
	*gate.Process
}

// startGate takes the app's process, created at init or now.
func startGate() (*gatedProcess, error) {
	p, err := gate.Take()
	if err != nil {
		return nil, err
	}
	return &gatedProcess{p}, nil
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
	p.Gate.Write(payload)
	p.Gate.Close()
	defer p.Status.Close()
	msg, _ := io.ReadAll(p.Status)
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
	p.Gate.Close()
	p.Status.Close()
}

// signal sends sig to the process. With a pidfd it cannot reach another process that
// reused the PID after the app was reaped.
func (p *gatedProcess) signal(sig syscall.Signal) error {
	if p.PidFD >= 0 {
		return unix.PidfdSendSignal(p.PidFD, sig, nil, 0)
	}
	return unix.Kill(p.Pid, sig)
}
