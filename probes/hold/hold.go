// Package hold lets the start gate open before the probes are attached: a small
// program at the first instruction of every function they instrument stops the app
// (SIGSTOP, sent by the kernel) at the first of those it calls while they are still
// loading, and Release continues it once they are in place. The app's own start - the
// runtime, its package initializers, its set-up up to its first request or call -
// runs meanwhile; no call is missed, as each stops before its entry probe's address
// (see hold.bpf.c).
package hold

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/otel-go-launcher/otel-go-launcher/bpf"
)

// Hold is the program attached to one app.
type Hold struct {
	pid   int
	objs  *bpf.Objects
	links []link.Link

	mu        sync.Mutex
	continued uint64 // stops answered with a SIGCONT
	released  bool
}

// Attach loads the hold and attaches it at offsets (ELF file offsets of functions'
// first instructions) in the executable at path, for process pid.
func Attach(path string, pid int, offsets []uint64) (*Hold, error) {
	spec, err := loadHold()
	if err != nil {
		return nil, fmt.Errorf("parse the hold program: %w", err)
	}
	objs, err := bpf.LoadObjects(spec, bpf.LoadOptions{})
	if err != nil {
		return nil, fmt.Errorf("load the hold program: %w", err)
	}
	prog, err := objs.Program("hold")
	if err != nil {
		objs.Close()
		return nil, err
	}
	links, err := bpf.AttachUprobes(path, pid, bpf.Uprobe{Symbol: "the instrumented functions (hold)", Program: prog, Offsets: offsets})
	if err != nil {
		objs.Close()
		return nil, err
	}
	return &Hold{pid: pid, objs: objs, links: links}, nil
}

// Release lets the app go on: no call stops from now on, and an app stopped is
// continued. It reports whether the app was stopped. It waits only for the hold's runs
// already under way (microseconds); the kernel detaches the hold in the background
// (bpf.Release: detaching waits out a grace period, and an exit would wait for it).
// Later calls do nothing.
func (h *Hold) Release() (held bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.released {
		return false, nil
	}
	h.released = true
	defer func() {
		bpf.Release(h.links)
		h.objs.Close()
	}()
	if err := h.objs.SetVariables(map[string]uint64{"released": 1}); err != nil {
		// The program may go on stopping the app: detach it, and wait for that.
		bpf.CloseAll(h.links)
		h.links = nil
		held, cerr := h.resume()
		return held, errors.Join(fmt.Errorf("release the hold: %w", err), cerr)
	}
	// A full barrier between the store above and the loads below (a locked
	// instruction on amd64, acquire and release on arm64): the other half of the
	// program's ordering.
	var fence atomic.Uint64
	fence.Add(1)
	entered, err := h.objs.Variable("entered")
	if err != nil {
		return false, err
	}
	for begin := time.Now(); ; time.Sleep(20 * time.Microsecond) {
		left, err := h.objs.Variable("left")
		if err != nil {
			return false, err
		}
		if left >= entered {
			break
		}
		if time.Since(begin) > time.Second { // a run cannot take this long
			return false, fmt.Errorf("release the hold: %d of its runs did not end", entered-left)
		}
	}
	return h.resume()
}

// resume continues the app if the hold stopped it since the last call.
func (h *Hold) resume() (bool, error) {
	stops, err := h.objs.Variable("stops")
	if err != nil {
		// Unknown: continuing an app that is not stopped does nothing.
		stops = h.continued + 1
	}
	if stops == h.continued {
		return false, nil
	}
	h.continued = stops
	if kerr := unix.Kill(h.pid, unix.SIGCONT); kerr != nil && kerr != unix.ESRCH {
		return true, fmt.Errorf("continue the app (pid %d) held at its first instrumented call: %w", h.pid, kerr)
	}
	return true, err
}

// Check loads the hold, as Attach does: whether this kernel lets a program stop the
// app (bpf_send_signal) - for `launch doctor`.
func Check() error {
	spec, err := loadHold()
	if err != nil {
		return fmt.Errorf("parse the hold program: %w", err)
	}
	objs, err := bpf.LoadObjects(spec, bpf.LoadOptions{})
	if err != nil {
		return fmt.Errorf("load the hold program: %w", err)
	}
	objs.Close()
	return nil
}
