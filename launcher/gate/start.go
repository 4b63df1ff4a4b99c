package gate

import (
	"fmt"
	"os"
	"sync"
	"syscall"
)

// Process is the app's process held at the gate, as the launcher sees it.
type Process struct {
	Pid    int
	PidFD  int      // -1 where the kernel has no pidfds
	Gate   *os.File // the spec goes in, then closing it opens the gate
	Status *os.File // reports the outcome of the exec
}

// Start forks the gate process. Its stdio are the caller's fds 0-2, passed on
// unchanged; its environment is minimal (GOMAXPROCS=1: a single-threaded job), the
// app's own travelling in the spec.
func Start() (*Process, error) {
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
	pid, err := syscall.ForkExec("/proc/self/exe", []string{Argv0}, attr)
	if err != nil {
		gateW.Close()
		statusR.Close()
		return nil, fmt.Errorf("start the app's process: %w", err)
	}
	return &Process{Pid: pid, PidFD: pidfd, Gate: gateW, Status: statusR}, nil
}

// The gate process forked from init, for a command line that will run an app: its Go
// runtime then starts while the launcher's own packages initialize.
var (
	early     *Process
	earlyErr  error
	earlyOnce sync.Once
)

// Take returns the gate process forked at init, if any, once; else it forks one now.
func Take() (*Process, error) {
	var p *Process
	var err error
	earlyOnce.Do(func() { p, err = early, earlyErr })
	if p != nil || err != nil {
		return p, err
	}
	return Start()
}

// Subcommands are the launch commands that run no app (and their aliases): the CLI
// (cmd/launch) defines them, and a test there holds it to this list, which this
// package's init goes by before the CLI exists.
var Subcommands = []string{"inspect", "doctor", "wrap"}

// runsApp reports whether a launch command line certainly runs an app: it has "--" (and
// no subcommand before it), or its first argument is a program rather than a flag or
// subcommand. When unsure, the gate process is forked later, after flag parsing.
func runsApp(args []string) bool {
	if len(args) < 2 {
		return false
	}
	for _, a := range args[1:] {
		if a == "--" {
			return true
		}
		for _, sub := range Subcommands {
			if a == sub {
				return false
			}
		}
	}
	first := args[1]
	return first != "" && first[0] != '-'
}
