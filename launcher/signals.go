package launcher

import (
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/otel-go-launcher/otel-go-launcher/launcher/gate"
)

const sigMax = 64 // SIGRTMAX on Linux

// RelayedSignals lists the signals the launcher forwards to the app, in number order
// (gate.Relayed says which and why).
func RelayedSignals() []syscall.Signal {
	var sigs []syscall.Signal
	for s := 1; s <= sigMax; s++ {
		if gate.Relayed(s) {
			sigs = append(sigs, syscall.Signal(s))
		}
	}
	return sigs
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
