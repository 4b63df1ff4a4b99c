package launcher

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// IsGateProcess reports whether this process is the launcher's child waiting at the
// start gate. main must then call RunGate before doing anything else.
func IsGateProcess() bool {
	return len(os.Args) == 1 && os.Args[0] == gateArgv0
}

// RunGate is the gate process: it waits for the launcher to open the gate, becomes the
// app as the spec says and execs it. It returns only by exiting.
func RunGate() {
	// Capabilities, the bounding set and no_new_privs belong to a thread; execve keeps
	// those of the thread that calls it. Everything below runs on this one thread.
	runtime.LockOSThread()

	status := os.NewFile(statusFD, "status")
	unix.CloseOnExec(statusFD)
	unix.CloseOnExec(gateFD)
	fail := func(code int, format string, args ...any) {
		msg, _ := json.Marshal(gateFailure{Message: fmt.Sprintf(format, args...), ExitCode: code})
		status.Write(msg)
		os.Exit(code)
	}

	// Blocks until the launcher closes its end: that is the gate opening.
	raw, err := io.ReadAll(os.NewFile(gateFD, "gate"))
	if err != nil {
		fail(exitCannotExec, "read the start gate: %v", err)
	}
	var spec gateSpec
	if err := json.Unmarshal(raw, &spec); err != nil {
		os.Exit(exitCannotExec) // the launcher died at the gate: never run the app unsupervised
	}
	if err := becomeApp(&spec); err != nil {
		fail(exitCannotExec, "%s: %v", spec.Path, err)
	}
	err = syscall.Exec(spec.Path, spec.Argv, spec.Env)
	// The launcher found the file, so whatever fails now is "cannot execute" (126),
	// as a shell reports a bad interpreter.
	fail(exitCannotExec, "exec %s: %v%s", spec.Path, err, execHint(err))
}

// becomeApp turns the gate process into the app's process, in an order that keeps the
// privileges each step needs until that step is done.
func becomeApp(spec *gateSpec) error {
	if spec.Foreground {
		// The launcher ignores SIGTTOU, so this works from a background group too.
		// ENOTTY/ENXIO/EPERM: no usable controlling terminal; tini carries on too.
		_ = unix.IoctlSetPointerInt(0, unix.TIOCSPGRP, unix.Getpgrp())
	}
	// The bounding set first: changing it needs CAP_SETPCAP, which a switch to
	// another user takes away.
	noNewPrivs := false
	if err := dropFromBoundingSet(spec.DropCaps); err != nil {
		if !errors.Is(err, unix.EPERM) {
			return err
		}
		// No CAP_SETPCAP: the capabilities stay in the bounding set, so a root app
		// would get them back at execve, and so would any app through a setuid
		// program. no_new_privs caps the app at what this thread keeps after
		// lowerCaps - needed only where there is something to keep from it.
		noNewPrivs = holdsAny(spec.DropCaps) || appUID(spec) == 0
	}
	if c := spec.Cred; c != nil {
		// The syscall package applies these to every thread of the process.
		groups := c.Groups
		if groups == nil {
			groups = []int{}
		}
		if err := syscall.Setgroups(groups); err != nil {
			return fmt.Errorf("set supplementary groups %v for --user: %w%s", groups, err, credHint(err))
		}
		if err := syscall.Setresgid(c.GID, c.GID, c.GID); err != nil {
			return fmt.Errorf("set group id %d for --user: %w%s", c.GID, err, credHint(err))
		}
		if err := syscall.Setresuid(c.UID, c.UID, c.UID); err != nil {
			return fmt.Errorf("set user id %d for --user: %w%s", c.UID, err, credHint(err))
		}
	}
	if err := lowerCaps(spec.DropCaps); err != nil {
		return err
	}
	if noNewPrivs {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("set no_new_privs: %w", err)
		}
	}
	if err := restoreDispositions(spec.Ignored); err != nil {
		return err
	}
	// fds 0-2 go to the app; every other fd (inherited by the launcher, or the Go
	// runtime's own) closes at execve. The status pipe already does.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return closeOnExecFrom(3)
	}
	return nil
}

// holdsAny reports whether the calling thread has any of caps in its permitted set.
func holdsAny(caps []Capability) bool {
	s, err := getCaps()
	if err != nil {
		return true // assume the worst
	}
	for _, c := range caps {
		if s.permitted&(1<<uint(c)) != 0 {
			return true
		}
	}
	return false
}

func appUID(spec *gateSpec) int {
	if spec.Cred != nil {
		return spec.Cred.UID
	}
	return os.Getuid()
}

// closeOnExecFrom marks every open fd >= first close-on-exec, for kernels before 5.11.
func closeOnExecFrom(first int) error {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("list open file descriptors: %w", err)
	}
	for _, e := range entries {
		var fd int
		if _, err := fmt.Sscan(e.Name(), &fd); err == nil && fd >= first {
			unix.CloseOnExec(fd)
		}
	}
	return nil
}

func execHint(err error) string {
	switch {
	case errors.Is(err, unix.EACCES):
		return ": make it executable (chmod +x) and readable by the user it runs as"
	case errors.Is(err, unix.ENOEXEC):
		return ": not a program this kernel can run (a script needs a #! line)"
	case errors.Is(err, unix.ENOENT):
		return ": its interpreter (#! line) or dynamic loader is missing"
	}
	return ""
}

func credHint(err error) string {
	if errors.Is(err, unix.EPERM) {
		return ": the launcher must run as root (or hold CAP_SETUID and CAP_SETGID) to use --user"
	}
	return ""
}
