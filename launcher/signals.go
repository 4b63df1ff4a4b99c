package launcher

import (
	"os"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Signal numbers the launcher never relays to the app.
//   - SIGKILL, SIGSTOP: cannot be caught.
//   - SIGCHLD: reports the launcher's own children; the reaper owns it.
//   - SIGURG: the Go runtime preempts goroutines with it; a real one cannot be told apart.
//   - SIGPROF: the Go runtime consumes it for its profiler; os/signal never sees it.
//   - SIGPIPE: the kernel sends it to the launcher when one of its own writes meets a
//     closed pipe or socket (a collector going away); relaying that would kill the app.
//   - SIGTTIN, SIGTTOU: ignored by the launcher, as tini does, so that a launcher in a
//     background process group is never stopped; the app gets its inherited disposition back.
//   - 32, 33, 34: reserved by C libraries (glibc SIGCANCEL and SIGSETXID, musl
//     SIGSYNCCALL); the Go runtime does not let a program catch them.
const (
	sigFirstUsableRT = 35
	sigMax           = 64 // SIGRTMAX on Linux
)

func isRelayed(sig int) bool {
	switch syscall.Signal(sig) {
	case unix.SIGKILL, unix.SIGSTOP, unix.SIGCHLD, unix.SIGURG, unix.SIGPROF, unix.SIGPIPE, unix.SIGTTIN, unix.SIGTTOU:
		return false
	}
	return sig >= 1 && sig <= sigMax && (sig < 32 || sig >= sigFirstUsableRT)
}

// RelayedSignals lists the signals the launcher forwards to the app, in number order.
func RelayedSignals() []syscall.Signal {
	var sigs []syscall.Signal
	for s := 1; s <= sigMax; s++ {
		if isRelayed(s) {
			sigs = append(sigs, syscall.Signal(s))
		}
	}
	return sigs
}

// signalSet is a set of signal numbers 1..64, as the kernel's sigset_t.
type signalSet uint64

func (s signalSet) has(sig int) bool { return sig >= 1 && sig <= sigMax && s&(1<<(sig-1)) != 0 }
func (s *signalSet) add(sig int)     { *s |= 1 << (sig - 1) }

// kernelSigaction is the kernel's struct sigaction on amd64 and arm64
// (handler, flags, restorer, mask). Only the handler is read or written here.
type kernelSigaction struct {
	handler  uintptr
	flags    uint64
	restorer uintptr
	mask     uint64
}

const (
	sigDFL uintptr = 0
	sigIGN uintptr = 1
)

func sigaction(sig int, act, old *kernelSigaction) error {
	_, _, errno := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig),
		uintptr(unsafe.Pointer(act)), uintptr(unsafe.Pointer(old)), 8, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// inheritedIgnored returns the signals that are ignored (SIG_IGN) right now.
//
// Called first thing, it tells which signals the launcher's parent ignored: the Go
// runtime keeps an inherited SIG_IGN for SIGHUP and SIGINT and leaves the job-control
// signals alone, so those are exact. For every other signal the runtime has already
// installed its own handler before any of our code runs, so an inherited SIG_IGN cannot
// be seen and the app gets SIG_DFL, as it would from any Go parent.
func inheritedIgnored() signalSet {
	var set signalSet
	for s := 1; s <= sigMax; s++ {
		if s == int(unix.SIGKILL) || s == int(unix.SIGSTOP) {
			continue
		}
		var old kernelSigaction
		if sigaction(s, nil, &old) == nil && old.handler == sigIGN {
			set.add(s)
		}
	}
	return set
}

// restoreDispositions gives the calling process the dispositions the launcher
// inherited: SIG_IGN for the signals in ignored, SIG_DFL for the others. Handlers the
// Go runtime installed need no work: execve resets caught signals to SIG_DFL.
func restoreDispositions(ignored signalSet) error {
	for s := 1; s <= sigMax; s++ {
		if s == int(unix.SIGKILL) || s == int(unix.SIGSTOP) {
			continue
		}
		var cur kernelSigaction
		if err := sigaction(s, nil, &cur); err != nil {
			continue // numbers the kernel does not have
		}
		want := sigDFL
		if ignored.has(s) {
			want = sigIGN
		}
		if (cur.handler == sigIGN) != (want == sigIGN) {
			if err := sigaction(s, &kernelSigaction{handler: want}, nil); err != nil {
				return os.NewSyscallError("rt_sigaction", err)
			}
		}
	}
	return nil
}

// signalName is the conventional name of a signal ("SIGTERM", "SIGRTMIN+3").
func signalName(sig syscall.Signal) string {
	if n := unix.SignalName(sig); n != "" {
		return n
	}
	if sig >= 34 && sig <= sigMax {
		return "SIGRTMIN+" + strconv.Itoa(int(sig)-34)
	}
	return "signal " + strconv.Itoa(int(sig))
}
