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
	Caps       CapSets  `json:"caps"`                 // the app's capability sets, exactly
	Seccomp    *Filter  `json:"seccomp,omitempty"`    // a seccomp filter to add to those inherited
	Foreground bool     `json:"foreground,omitempty"` // take the terminal's foreground
	Ignored    uint64   `json:"ignored,omitempty"`    // signals to restore as SIG_IGN (bit N-1)
}

// CapSets are a thread's five capability sets, bit N for capability N.
type CapSets struct {
	Bounding, Effective, Permitted, Inheritable, Ambient uint64
}

// Instruction is one classic BPF instruction (struct sock_filter).
type Instruction struct {
	Code uint16 `json:"code"`
	Jt   uint8  `json:"jt"`
	Jf   uint8  `json:"jf"`
	K    uint32 `json:"k"`
}

// Filter is a seccomp program to install with seccomp(SECCOMP_SET_MODE_FILTER, Flags).
type Filter struct {
	Flags   uint32        `json:"flags,omitempty"`
	Program []Instruction `json:"program"`
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
	want := spec.Caps
	noNewPrivs := false
	// The seccomp filter first: installing one takes CAP_SYS_ADMIN (or no_new_privs),
	// which the steps below take away. Every call those steps make passes it: it
	// decides only the launcher's own calls.
	if f := spec.Seccomp; f != nil {
		err := installFilter(f)
		if errors.Is(err, syscall.EACCES) {
			// No CAP_SYS_ADMIN: the kernel takes a filter only with no_new_privs.
			if err = prctl(prSetNoNewPrivs, 1, 0); err == nil {
				err = installFilter(f)
			}
		}
		if err != nil {
			return fmt.Errorf("install the app's seccomp filter: %w", err)
		}
	}
	// The bounding set next: changing it needs CAP_SETPCAP, which a switch to another
	// user takes away.
	if err := limitBoundingSet(want.Bounding); err != nil {
		if !errors.Is(err, syscall.EPERM) {
			return err
		}
		// No CAP_SETPCAP: the bounding set stays as it is, so a root app would get
		// what it holds back at execve, and so would any app through a setuid or
		// file-capability program. no_new_privs caps the app at the sets below -
		// needed only where the bounding set holds more than the app is to have.
		cur, err := currentCaps()
		if err != nil {
			return err
		}
		noNewPrivs = cur.Bounding&^want.Bounding != 0 && (cur.Permitted&^want.Permitted != 0 || appUID(spec) == 0)
	}
	if u := spec.User; u != nil {
		// Keep the permitted set through the switch from root, as runc does: the app
		// gets exactly the sets it is given below, ambient ones included. The kernel
		// resets this at execve.
		if err := prctl(prSetKeepCaps, 1, 0); err != nil {
			return fmt.Errorf("keep capabilities through --user: %w", err)
		}
		// The syscall package applies these to every thread of the process.
		groups := u.Groups
		if groups == nil {
			groups = []int{}
		}
		if err := syscall.Setgroups(groups); err != nil {
			return fmt.Errorf("set %d supplementary groups for --user: %w%s", len(groups), err, credHint(err))
		}
		if err := syscall.Setresgid(u.GID, u.GID, u.GID); err != nil {
			return fmt.Errorf("set group id %d for --user: %w%s", u.GID, err, credHint(err))
		}
		if err := syscall.Setresuid(u.UID, u.UID, u.UID); err != nil {
			return fmt.Errorf("set user id %d for --user: %w%s", u.UID, err, credHint(err))
		}
	}
	if err := setCapSets(want); err != nil {
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
