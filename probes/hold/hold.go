// Package hold lets the start gate open before the probes are attached: a small
// program at the first instruction of every function they instrument stops the app
// (SIGSTOP, sent by the kernel) at the first of those it calls while they are still
// loading, and Release continues it once they are in place. The app's own start - the
// runtime, its package initializers, its set-up up to its first request or call -
// runs meanwhile; no call is missed, as each stops before its entry probe's address
// (see hold.bpf.c).
//
// Points come in two groups: the core, released once the probes are attached, and
// later points, released after: with propagation, the HTTP/2 clients' connection
// set-up, held until the socket programs follow HTTP/2, which is done only once the
// app reaches one (Later). Stops are process-wide: the app stopped at a later point
// stays stopped until the later points are released too.
package hold

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/otel-go-launcher/otel-go-launcher/bpf"
)

// Hold is the program attached to one app.
type Hold struct {
	pid    int
	objs   *bpf.Objects
	core   []link.Link     // at the core points: handed to the kernel once they are released
	links  []link.Link     // at the later points
	reader *ringbuf.Reader // later_reached; nil without later points
	later  chan struct{}   // closed once the app reached a later point

	mu                            sync.Mutex
	released                      int    // 0 none, 1 the core, 2 all
	continuedCore, continuedLater uint64 // stops answered with a SIGCONT
	failures                      uint64 // send_failures already said
}

// Attach loads the hold and attaches it in the executable at path, for process pid,
// at core and later points (ELF file offsets of functions' first instructions).
func Attach(path string, pid int, core, later []uint64) (*Hold, error) {
	objs, err := load()
	if err != nil {
		return nil, err
	}
	prog, err := objs.Program("hold")
	if err != nil {
		objs.Close()
		return nil, err
	}
	h := &Hold{pid: pid, objs: objs, later: make(chan struct{})}
	if len(later) > 0 {
		if h.reader, err = ringbuf.NewReader(objs.Map("later_reached")); err != nil {
			objs.Close()
			return nil, fmt.Errorf("read the hold's stops: %w", err)
		}
		go h.watch()
	}
	// A link per group (the cookie says which), so that the core's goes once it is
	// released: every hit of an offset costs a trap, single-stepped at a function's
	// first instruction.
	h.core, err = bpf.AttachUprobes(path, pid, bpf.Uprobe{Symbol: "the instrumented functions (hold)", Program: prog, Offsets: core, Cookies: make([]uint64, len(core))})
	if err == nil && len(later) > 0 {
		cookies := make([]uint64, len(later))
		for i := range cookies {
			cookies[i] = 1
		}
		h.links, err = bpf.AttachUprobes(path, pid, bpf.Uprobe{Symbol: "the HTTP/2 connection set-up (hold)", Program: prog, Offsets: later, Cookies: cookies})
	}
	if err != nil {
		h.close()
		return nil, err
	}
	return h, nil
}

// watch closes later at the first stop at a later point.
func (h *Hold) watch() {
	if _, err := h.reader.Read(); err == nil {
		close(h.later)
	}
}

// Later is closed once the app stopped at a later point: it waits for them to be
// released. It is never closed if the app reaches none.
func (h *Hold) Later() <-chan struct{} { return h.later }

// ReleaseCore lets the app go on at the core points: no call there stops from now on,
// and the app, if stopped, is continued, unless it stopped at a later point. It
// reports whether the app was continued.
func (h *Hold) ReleaseCore() (bool, error) { return h.release(1) }

// Release lets the app go on everywhere, continuing it if it stopped, and detaches the
// hold. It reports whether the app was continued. Later calls do nothing.
func (h *Hold) Release() (bool, error) { return h.release(2) }

// release sets released to groups and continues the app if it may go on. It waits
// only for the hold's runs already under way (microseconds). Once all is released, the
// kernel detaches the hold in the background (bpf.Release: detaching waits out a grace
// period, and an exit would wait for it).
func (h *Hold) release(groups int) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if groups <= h.released {
		return false, nil
	}
	h.released = groups
	if groups == 2 {
		defer h.close()
	} else {
		defer h.releaseCore()
	}
	if err := h.objs.SetVariables(map[string]uint64{"released": uint64(groups)}); err != nil {
		// The program may go on stopping the app: detach it, wait for that, and let
		// the app go.
		bpf.CloseAll(append(h.core, h.links...))
		h.core, h.links, h.released = nil, nil, 2
		continued, cerr := h.resume()
		if groups < 2 {
			h.close()
		}
		return continued, errors.Join(fmt.Errorf("release the hold: %w", err), cerr)
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
	if failed, err := h.objs.Variable("send_failures"); err == nil && failed > h.failures {
		slog.Warn(fmt.Sprintf("the start hold could not stop the app at %d of its first instrumented calls (bpf_send_signal refused): those calls may be untraced", failed-h.failures))
		h.failures = failed
	}
	return h.resume()
}

// resume continues the app if the hold stopped it since the last time, unless a stop
// was at a point still held: a stop is the whole process's.
func (h *Hold) resume() (bool, error) {
	core, err1 := h.objs.Variable("stops_core")
	later, err2 := h.objs.Variable("stops_later")
	if err := errors.Join(err1, err2); err != nil {
		// Unknown: continue it, as if it had stopped at the core points only.
		core, later = h.continuedCore+1, h.continuedLater
		if h.released < 2 {
			return false, err
		}
	}
	if later > h.continuedLater && h.released < 2 {
		return false, nil // stopped at a later point: it waits for those
	}
	if core == h.continuedCore && later == h.continuedLater {
		return false, nil
	}
	h.continuedCore, h.continuedLater = core, later
	if err := unix.Kill(h.pid, unix.SIGCONT); err != nil && err != unix.ESRCH {
		return true, fmt.Errorf("continue the app (pid %d) held at its first instrumented call: %w", h.pid, err)
	}
	return true, nil
}

// releaseCore hands the core points' link to the kernel to detach.
func (h *Hold) releaseCore() {
	bpf.Release(h.core)
	h.core = nil
}

// close stops watching and hands the hold to the kernel to detach.
func (h *Hold) close() {
	if h.reader != nil {
		h.reader.Close()
	}
	bpf.Release(append(h.core, h.links...))
	h.core, h.links = nil, nil
	h.objs.Close()
}

// Check loads the hold, as Attach does: whether this kernel lets a program stop the
// app (bpf_send_signal) - for `launch doctor`.
func Check() error {
	objs, err := load()
	if err != nil {
		return err
	}
	objs.Close()
	return nil
}

// load parses and loads the hold's BPF object.
func load() (*bpf.Objects, error) {
	spec, err := loadHold()
	if err != nil {
		return nil, fmt.Errorf("parse the hold program: %w", err)
	}
	objs, err := bpf.LoadObjects(spec, bpf.LoadOptions{})
	if err != nil {
		return nil, fmt.Errorf("load the hold program: %w", err)
	}
	return objs, nil
}
