// Package gate is the app's process while it waits at the start gate, and what the
// launcher and that process share: the spec, the file descriptors, the protocol.
//
// The launcher starts a copy of itself (argv[0] = Argv0) as the app's process. That copy
// waits on a pipe; the launcher attaches probes to its PID; releasing the gate sends the
// spec and closes the pipe; the copy takes the app's credentials, capabilities and
// signal dispositions and execs the app in place. See launcher.startGate.
//
// It also does the launcher's first steps from init when the command line runs an
// app: registering for signals and forking the gate process.
//
// The copy runs from this package's init, before the rest of the program initializes:
// Go initializes a package once its imports are, in import path order, so this one -
// standard library imports only - comes before the launcher's heavy dependencies (the
// OTel SDK, gRPC, protobuf: milliseconds of init the gate process has no use for).
// Keep it that way: no imports outside the standard library.
package gate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"syscall"
)

// Argv0 marks the launcher's own child while it waits at the gate.
const Argv0 = "otel-go-launcher:gate"

// File descriptors in the gate process.
const (
	// GateFD is the read end of a pipe: the spec, then EOF. EOF without a complete
	// spec means the launcher died before releasing: the process exits without the app.
	GateFD = 3
	// StatusFD is the write end of a close-on-exec pipe: EOF without a message means
	// the exec succeeded; otherwise a Failure.
	StatusFD = 4
)

// ExitCannotExec is the exit code when the app cannot be started.
const ExitCannotExec = 126

// Spec tells the gate process what to exec and how.
type Spec struct {
	Path       string   `json:"path"` // resolved executable
	Argv       []string `json:"argv"`
	Env        []string `json:"env"`
	User       *User    `json:"user,omitempty"`
	DropCaps   []int    `json:"drop_caps,omitempty"`  // capability numbers
	Foreground bool     `json:"foreground,omitempty"` // take the terminal's foreground
	Ignored    uint64   `json:"ignored,omitempty"`    // signals to restore as SIG_IGN (bit N-1)
}

// User is who the app runs as.
type User struct {
	UID, GID int
	Groups   []int
}

// Failure is what the gate process reports when it cannot exec the app.
type Failure struct {
	Message  string `json:"message"`
	ExitCode int    `json:"exit_code"`
}

func init() {
	switch {
	case len(os.Args) == 1 && os.Args[0] == Argv0:
		run() // never returns
	case runsApp(os.Args):
		// Catch signals from the start (one arriving during init would otherwise
		// kill the launcher) and let the gate process boot while the launcher's own
		// packages initialize.
		earlySignals = catchSignals()
		early, earlyErr = Start()
	}
}

// run waits for the gate to open, becomes the app as the spec says and execs it. It
// returns only by exiting.
func run() {
	// Capabilities, the bounding set and no_new_privs belong to a thread; execve keeps
	// those of the thread that calls it. Everything below runs on this one thread.
	runtime.LockOSThread()

	closeOnExec(StatusFD)
	closeOnExec(GateFD)
	status := os.NewFile(StatusFD, "status")
	fail := func(code int, format string, args ...any) {
		msg, _ := json.Marshal(Failure{Message: fmt.Sprintf(format, args...), ExitCode: code})
		status.Write(msg)
		os.Exit(code)
	}

	// Blocks until the launcher closes its end: that is the gate opening.
	raw, err := io.ReadAll(os.NewFile(GateFD, "gate"))
	if err != nil {
		fail(ExitCannotExec, "read the start gate: %v", err)
	}
	var spec Spec
	if err := json.Unmarshal(raw, &spec); err != nil {
		os.Exit(ExitCannotExec) // the launcher died at the gate: never run the app unsupervised
	}
	if err := becomeApp(&spec); err != nil {
		fail(ExitCannotExec, "%s: %v", spec.Path, err)
	}
	err = syscall.Exec(spec.Path, spec.Argv, spec.Env)
	// The launcher found the file, so whatever fails now is "cannot execute" (126),
	// as a shell reports a bad interpreter.
	fail(ExitCannotExec, "exec %s: %v%s", spec.Path, err, execHint(err))
}

// becomeApp turns the gate process into the app's process, in an order that keeps the
// privileges each step needs until that step is done.
func becomeApp(spec *Spec) error {
	if spec.Foreground {
		takeForeground()
	}
	// The bounding set first: changing it needs CAP_SETPCAP, which a switch to
	// another user takes away.
	noNewPrivs := false
	if err := dropFromBoundingSet(spec.DropCaps); err != nil {
		if !errors.Is(err, syscall.EPERM) {
			return err
		}
		// No CAP_SETPCAP: the capabilities stay in the bounding set, so a root app
		// would get them back at execve, and so would any app through a setuid
		// program. no_new_privs caps the app at what this thread keeps after
		// lowerCaps - needed only where there is something to keep from it.
		noNewPrivs = holdsAny(spec.DropCaps) || appUID(spec) == 0
	}
	if u := spec.User; u != nil {
		// The syscall package applies these to every thread of the process.
		groups := u.Groups
		if groups == nil {
			groups = []int{}
		}
		if err := syscall.Setgroups(groups); err != nil {
			return fmt.Errorf("set supplementary groups %v for --user: %w%s", groups, err, credHint(err))
		}
		if err := syscall.Setresgid(u.GID, u.GID, u.GID); err != nil {
			return fmt.Errorf("set group id %d for --user: %w%s", u.GID, err, credHint(err))
		}
		if err := syscall.Setresuid(u.UID, u.UID, u.UID); err != nil {
			return fmt.Errorf("set user id %d for --user: %w%s", u.UID, err, credHint(err))
		}
	}
	if err := lowerCaps(spec.DropCaps); err != nil {
		return err
	}
	if noNewPrivs {
		if err := prctl(prSetNoNewPrivs, 1, 0); err != nil {
			return fmt.Errorf("set no_new_privs: %w", err)
		}
	}
	if err := restoreDispositions(spec.Ignored); err != nil {
		return err
	}
	// fds 0-2 go to the app; every other fd (inherited by the launcher, or the Go
	// runtime's own) closes at execve. The status pipe already does.
	if _, _, errno := syscall.RawSyscall(sysCloseRange, 3, ^uintptr(0), closeRangeCloexec); errno != 0 {
		return closeOnExecFrom(3)
	}
	return nil
}

func appUID(spec *Spec) int {
	if spec.User != nil {
		return spec.User.UID
	}
	return os.Getuid()
}

func closeOnExec(fd int) { syscall.CloseOnExec(fd) }

// closeOnExecFrom marks every open fd >= first close-on-exec, for kernels before 5.11.
func closeOnExecFrom(first int) error {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("list open file descriptors: %w", err)
	}
	for _, e := range entries {
		var fd int
		if _, err := fmt.Sscan(e.Name(), &fd); err == nil && fd >= first {
			syscall.CloseOnExec(fd)
		}
	}
	return nil
}

func execHint(err error) string {
	switch {
	case errors.Is(err, syscall.EACCES):
		return ": make it executable (chmod +x) and readable by the user it runs as"
	case errors.Is(err, syscall.ENOEXEC):
		return ": not a program this kernel can run (a script needs a #! line)"
	case errors.Is(err, syscall.ENOENT):
		return ": its interpreter (#! line) or dynamic loader is missing"
	}
	return ""
}

func credHint(err error) string {
	if errors.Is(err, syscall.EPERM) {
		return ": the launcher must run as root (or hold CAP_SETUID and CAP_SETGID) to use --user"
	}
	return ""
}
