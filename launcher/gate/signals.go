package gate

import (
	"os"
	"os/signal"
	"syscall"
)

// Relayed reports whether the launcher relays signal sig to the app. Not relayed:
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
func Relayed(sig int) bool {
	switch syscall.Signal(sig) {
	case syscall.SIGKILL, syscall.SIGSTOP, syscall.SIGCHLD, syscall.SIGURG, syscall.SIGPROF, syscall.SIGPIPE, syscall.SIGTTIN, syscall.SIGTTOU:
		return false
	}
	return sig >= 1 && sig <= sigMax && (sig < 32 || sig >= 35)
}

// Signals is the launcher's intake of signals meant for the app.
type Signals struct {
	C          chan os.Signal
	Ignored    uint64 // inherited as ignored (bit N-1): not relayed, restored in the app
	registered chan struct{}
}

// catchSignals reads the inherited dispositions, then registers for every relayed
// signal not inherited as ignored (it would not reach the app without a launcher
// either), in the background: each registration is a round trip to the Go runtime's
// signal thread, about 1 ms in all. The ones that stop programs go first.
func catchSignals() *Signals {
	s := &Signals{C: make(chan os.Signal, 128), Ignored: IgnoredSignals(), registered: make(chan struct{})}
	wanted := func(sig syscall.Signal) bool { return Relayed(int(sig)) && s.Ignored&(1<<(sig-1)) == 0 }
	go func() {
		defer close(s.registered)
		first := []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}
		for _, sig := range first {
			if wanted(sig) {
				signal.Notify(s.C, sig)
			}
		}
		var rest []os.Signal
	next:
		for sig := syscall.Signal(1); sig <= sigMax; sig++ {
			for _, f := range first {
				if f == sig {
					continue next
				}
			}
			if wanted(sig) {
				rest = append(rest, sig)
			}
		}
		signal.Notify(s.C, rest...)
	}()
	return s
}

// Wait returns once every signal is registered.
func (s *Signals) Wait() { <-s.registered }

var earlySignals *Signals

// TakeSignals returns the intake registered at init, or registers one now.
func TakeSignals() *Signals {
	if s := earlySignals; s != nil {
		earlySignals = nil
		return s
	}
	return catchSignals()
}
