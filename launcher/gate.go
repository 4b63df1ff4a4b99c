package launcher

// The start gate.
//
// The app's process is created before the app runs: the launcher starts a copy of
// itself (argv[0] = gateArgv0) as its child, with the app's working directory, stdio and
// process group. That copy waits on a pipe. Meanwhile the launcher knows the PID and
// attaches probes to it; uprobes are bound to the process, not to the image it runs,
// so they take effect when the process execs the app. Releasing the gate sends the spec
// (what to exec, with which environment and credentials) and closes the pipe: the copy
// takes the app's credentials, capabilities and signal dispositions and execs the app
// in place, so the PID, parent, session and process group are the app's own.
//
// The gate process is forked first thing, so that its Go runtime starts while the
// launcher registers its signal handlers. It runs with a minimal environment of its own
// (GOMAXPROCS=1: a single-threaded job); the app's environment travels in the spec.
//
// File descriptors in the gate process:
//
//	3  gate: read end of a pipe; the spec, then EOF. EOF without a complete spec means
//	   the launcher died before releasing: the gate process exits without the app.
//	4  status: write end of a close-on-exec pipe; EOF without a message means the
//	   exec succeeded, otherwise it carries the reason the app could not start

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// gateArgv0 marks the launcher's own child while it waits at the gate.
const gateArgv0 = "otel-go-launcher:gate"

const (
	gateFD   = 3
	statusFD = 4
)

// gateSpec tells the gate process what to exec and how.
type gateSpec struct {
	Path       string       `json:"path"` // resolved executable
	Argv       []string     `json:"argv"`
	Env        []string     `json:"env"`
	Cred       *Credential  `json:"cred,omitempty"`
	DropCaps   []Capability `json:"drop_caps,omitempty"`
	Foreground bool         `json:"foreground,omitempty"` // take the terminal's foreground
	Ignored    signalSet    `json:"ignored,omitempty"`    // dispositions to restore as SIG_IGN
}

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
	pid, err := syscall.ForkExec("/proc/self/exe", []string{gateArgv0}, attr)
	if err != nil {
		gateW.Close()
		statusR.Close()
		return nil, fmt.Errorf("start the app's process: %w", err)
	}
	return &gatedProcess{pid: pid, pidfd: pidfd, gate: gateW, status: statusR}, nil
}

// release opens the gate and waits for the outcome of the app's exec: nil once the app
// runs, or why it could not start (its process then exits with exitCode).
func (p *gatedProcess) release(spec gateSpec) (exitCode int, err error) {
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
	var f gateFailure
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

// gateFailure is what the gate process reports when it cannot exec the app.
type gateFailure struct {
	Message  string `json:"message"`
	ExitCode int    `json:"exit_code"`
}
