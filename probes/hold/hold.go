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
// continued. It reports whether the app was stopped. A stop the kernel was sending as
// Release ran is answered once the hold is detached, in the background (detaching
// waits until no hold program runs: a grace period). Later calls do nothing.
func (h *Hold) Release() (held bool, err error) {
	h.mu.Lock()
	if h.released {
		h.mu.Unlock()
		return false, nil
	}
	h.released = true
	h.mu.Unlock()
	if err := h.objs.SetVariables(map[string]uint64{"released": 1}); err != nil {
		// The program may go on stopping the app: detach it before answering.
		err = fmt.Errorf("release the hold: %w", err)
		bpf.CloseAll(h.links)
		held, cerr := h.resume()
		h.objs.Close()
		return held, errors.Join(err, cerr)
	}
	held, err = h.resume()
	go func() {
		bpf.CloseAll(h.links)
		h.resume()
		h.objs.Close()
	}()
	return held, err
}

// resume continues the app if the hold stopped it since the last call.
func (h *Hold) resume() (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
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
