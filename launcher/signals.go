package launcher

import (
	"strconv"
	"syscall"

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
