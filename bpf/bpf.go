// Package bpf holds the eBPF C headers every probe shares (include/) and the Go side
// common to all probes: setting a target's offsets as constants, attaching uprobes to
// the app's process, and reading a probe's ring buffer and its loss counter.
package bpf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
)

// Objects are a probe's loaded BPF objects. Its large programs are loaded (verified:
// most of the start gate's time) in the background, each on its own, while its maps and
// small programs are ready at once - so the small ones can be attached, the kernel
// sleeping through each uprobe registration, while the large ones are verified. A large
// program starts loading when Preload or Program first names it: a program the target
// does not need takes no CPU from those it does.
type Objects struct {
	coll *ebpf.Collection // maps (shared ones cloned in), variables, the programs loaded at once
	spec *ebpf.CollectionSpec
	mu   sync.Mutex
	slow map[string]*pendingProgram // nil until started
}

type pendingProgram struct {
	ready chan struct{}
	coll  *ebpf.Collection
	err   error
}

// LargeProgram is the size, in instructions, from which a program loads in the
// background: the verifier's time grows with it (the probes' entry programs, some 1,400
// instructions, take milliseconds each; their return programs, under 200, far less).
const LargeProgram = 500

// LoadOptions say how to load a probe's objects.
type LoadOptions struct {
	Programs       []string             // the programs to load (others are left out); nil: all
	RingBufferSize int                  // bytes of the ring buffer "events", if the spec has one; 0 keeps the spec's
	Shared         map[string]*ebpf.Map // maps to use instead of the spec's own, by name (those it has)
}

// Only is a copy of spec with only the programs named (nil: all) and the maps they use:
// a map no loaded program uses is not created (an LRU hash of 8,192 entries takes
// milliseconds, inside the start gate). Global-variable sections stay whole, and so
// do the ring buffer and its loss counter (common.h), which the reader opens whatever
// the programs.
func Only(spec *ebpf.CollectionSpec, programs []string) (*ebpf.CollectionSpec, error) {
	spec = spec.Copy()
	if programs == nil {
		return spec, nil
	}
	for name := range spec.Programs {
		if !slices.Contains(programs, name) {
			delete(spec.Programs, name)
		}
	}
	used := map[string]bool{"events": true, "lost_events": true}
	for _, name := range programs {
		p, ok := spec.Programs[name]
		if !ok {
			return nil, fmt.Errorf("BPF object has no program %s", name)
		}
		for _, ins := range p.Instructions {
			if ref := ins.Reference(); ref != "" && ins.IsLoadFromMap() {
				used[ref] = true
			}
		}
	}
	for name := range spec.Maps {
		if !used[name] && !strings.HasPrefix(name, ".") {
			delete(spec.Maps, name)
		}
	}
	return spec, nil
}

// LoadObjects loads spec: its maps, and its programs of under LargeProgram instructions
// at once; the larger ones load in the background when asked for, sharing the maps.
// With opts.Programs, only those and the maps they use (Only).
func LoadObjects(spec *ebpf.CollectionSpec, opts LoadOptions) (*Objects, error) {
	spec, err := Only(spec, opts.Programs)
	if err != nil {
		return nil, err
	}
	if m, ok := spec.Maps["events"]; ok && opts.RingBufferSize > 0 {
		m.MaxEntries = uint32(opts.RingBufferSize)
	}
	useUprobeMulti(spec)
	replace := map[string]*ebpf.Map{}
	for name, m := range opts.Shared {
		if _, ok := spec.Maps[name]; ok {
			replace[name] = m
		}
	}
	fast := spec.Copy()
	var slow []string
	for name, p := range spec.Programs {
		if len(p.Instructions) >= LargeProgram {
			delete(fast.Programs, name)
			slow = append(slow, name)
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(fast, ebpf.CollectionOptions{MapReplacements: replace})
	if err != nil {
		return nil, Explain(err)
	}
	o := &Objects{coll: coll, spec: spec, slow: map[string]*pendingProgram{}}
	for _, name := range slow {
		o.slow[name] = nil
	}
	return o, nil
}

// Slow lists the programs that load in the background.
func (o *Objects) Slow() []string {
	var names []string
	for name := range o.slow {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Preload starts loading the named slow programs in the background.
func (o *Objects) Preload(names ...string) {
	for _, name := range names {
		o.start(name)
	}
}

// start starts loading a slow program, once; nil if name is not one.
func (o *Objects) start(name string) *pendingProgram {
	o.mu.Lock()
	defer o.mu.Unlock()
	p, ok := o.slow[name]
	if !ok || p != nil {
		return p
	}
	one := o.spec.Copy()
	for n := range one.Programs {
		if n != name {
			delete(one.Programs, n)
		}
	}
	p = &pendingProgram{ready: make(chan struct{})}
	o.slow[name] = p
	go func() {
		defer close(p.ready)
		p.coll, p.err = ebpf.NewCollectionWithOptions(one, ebpf.CollectionOptions{MapReplacements: o.coll.Maps})
		p.err = Explain(p.err)
	}()
	return p
}

// Program returns a loaded program, loading it or waiting for it if it is one of the
// slow ones.
func (o *Objects) Program(name string) (*ebpf.Program, error) {
	if p, ok := o.coll.Programs[name]; ok {
		return p, nil
	}
	pending := o.start(name)
	if pending == nil {
		return nil, fmt.Errorf("BPF object has no program %s", name)
	}
	<-pending.ready
	if pending.err != nil {
		return nil, fmt.Errorf("load %s: %w", name, pending.err)
	}
	return pending.coll.Programs[name], nil
}

// Map returns one of the maps (nil if the spec has none of that name).
func (o *Objects) Map(name string) *ebpf.Map { return o.coll.Maps[name] }

// Variables lists the names of the programs' global variables.
func (o *Objects) Variables() []string {
	var names []string
	for name := range o.coll.Variables {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// SetVariables assigns the programs' global variables (the target's offsets): the
// programs see each value from their next run.
func (o *Objects) SetVariables(values map[string]uint64) error {
	for name, v := range values {
		vr, ok := o.coll.Variables[name]
		if !ok {
			return fmt.Errorf("BPF object has no variable %s", name)
		}
		if err := vr.Set(v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	return nil
}

// Variable reads a global variable back.
func (o *Objects) Variable(name string) (uint64, error) {
	vr, ok := o.coll.Variables[name]
	if !ok {
		return 0, fmt.Errorf("BPF object has no variable %s", name)
	}
	var v uint64
	err := vr.Get(&v)
	return v, err
}

// Close frees the programs and maps (waiting for those still loading); shared maps
// stay open, for their owner to close.
func (o *Objects) Close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, p := range o.slow {
		if p == nil {
			continue
		}
		<-p.ready
		if p.coll != nil {
			p.coll.Close()
		}
	}
	o.coll.Close()
}

// Uprobe is a program to attach at one function's entry or return sites.
type Uprobe struct {
	Symbol  string // for messages
	Program *ebpf.Program
	Offsets []uint64 // ELF file offsets
	Cookies []uint64 // bpf_get_attach_cookie at each offset; nil: none
}

// AttachUprobes attaches every uprobe at each of its offsets in the executable at path,
// firing only in process pid. The binding is to the process: a uprobe attached before
// the process execs path takes effect when the exec maps it.
//
// With uprobe_multi links (Linux 6.6+; see LoadObjects) a program is attached at all
// its offsets in one system call, and detached in one: perf-event uprobes are
// registered one by one and, worse, each waits for its own grace period when removed
// (20 of them: 1.7 s). Without, the perf-event uprobes are made concurrently.
func AttachUprobes(path string, pid int, ups ...Uprobe) ([]link.Link, error) {
	ex, err := link.OpenExecutable(path)
	if err != nil {
		return nil, fmt.Errorf("open %s for uprobes: %w", path, err)
	}
	type result struct {
		l   link.Link
		err error
	}
	var results []chan result
	attach := func(f func() (link.Link, error)) {
		c := make(chan result, 1)
		results = append(results, c)
		go func() {
			l, err := f()
			c <- result{l, err}
		}()
	}
	for _, u := range ups {
		if u.Program.Type() == ebpf.Kprobe && haveUprobeMulti() {
			attach(func() (link.Link, error) {
				l, err := ex.UprobeMulti(nil, u.Program, &link.UprobeMultiOptions{Addresses: u.Offsets, Cookies: u.Cookies, PID: uint32(pid)})
				if err != nil {
					err = fmt.Errorf("uprobe %s on %s: %w%s", u.Symbol, path, err, hint(err))
				}
				return l, err
			})
			continue
		}
		for i, off := range u.Offsets {
			var cookie uint64
			if u.Cookies != nil {
				cookie = u.Cookies[i]
			}
			attach(func() (link.Link, error) {
				l, err := ex.Uprobe(u.Symbol, u.Program, &link.UprobeOptions{Address: off, PID: pid, Cookie: cookie})
				if err != nil {
					err = fmt.Errorf("uprobe %s on %s: %w%s", u.Symbol, path, err, hint(err))
				}
				return l, err
			})
		}
	}
	var links []link.Link
	var first error
	for _, c := range results {
		r := <-c
		if r.err != nil && first == nil {
			first = r.err
		}
		if r.l != nil {
			links = append(links, r.l)
		}
	}
	if first != nil {
		CloseAll(links)
		return nil, first
	}
	return links, nil
}

// haveUprobeMulti reports whether this kernel has uprobe_multi links.
var haveUprobeMulti = sync.OnceValue(func() bool { return features.HaveBPFLinkUprobeMulti() == nil })

// useUprobeMulti loads spec's uprobe programs for uprobe_multi links, if the kernel
// has them.
func useUprobeMulti(spec *ebpf.CollectionSpec) {
	if !haveUprobeMulti() {
		return
	}
	for _, p := range spec.Programs {
		if p.Type == ebpf.Kprobe && strings.HasPrefix(p.SectionName, "uprobe") {
			p.AttachType = ebpf.AttachTraceUprobeMulti
		}
	}
}

// hint says what to do about common attach errors.
func hint(err error) string {
	switch {
	case errors.Is(err, os.ErrPermission):
		return ": add CAP_SYS_ADMIN (uprobes), CAP_BPF and CAP_PERFMON to the launcher"
	case errors.Is(err, os.ErrNotExist):
		return ": the kernel has no uprobe support (CONFIG_UPROBE_EVENTS), or tracefs is missing"
	}
	return ""
}

// CloseAll closes links, concurrently (each may wait for a grace period in the kernel),
// all of them whatever fails.
func CloseAll(links []link.Link) error {
	errs := make([]error, len(links))
	var wg sync.WaitGroup
	for i, l := range links {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Close(); err != nil {
				errs[i] = fmt.Errorf("detach: %w", err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Reader drains one probe's ring buffer.
type Reader struct {
	rd   *ringbuf.Reader
	lost *ebpf.Map

	poll, minPoll time.Duration // bounds of the wait between drains (tests make it long)
}

// NewReader reads the ring buffer map events; lost is the per-CPU counter of records
// the kernel could not queue.
func NewReader(events, lost *ebpf.Map) (*Reader, error) {
	if events == nil || lost == nil {
		return nil, errors.New("BPF object has no events ring buffer or lost_events counter (common.h)")
	}
	rd, err := ringbuf.NewReader(events)
	if err != nil {
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	return &Reader{rd: rd, lost: lost, poll: poll, minPoll: minPoll}, nil
}

// The reader drains the ring buffer on a timer. Programs do not wake it while the
// ring is less than half full (common.h): a wakeup is an interrupt in the app, and a
// thread hand-off in the launcher, per batch. The next drain is timed for when the
// buffer will be a quarter full at the rate the last drain saw, within [minPoll, poll]:
// every 20 ms for a quiet app, sooner under load (1 MiB holds 2 ms of 500,000 spans a
// second). The wait is in epoll, so past half full the kernel wakes the reader early:
// a timer that fires late (a busy machine) or a burst the rate did not foresee does not
// overflow the ring.
const (
	poll    = 20 * time.Millisecond
	minPoll = 2 * time.Millisecond
)

// Run calls fn with each record, in order, until ctx is done; then it drains what is
// left and returns. The slice is only valid during the call. A read that fails for
// another reason than a deadline is retried after a pause, and said once per minute.
func (r *Reader) Run(ctx context.Context, fn func([]byte)) {
	var rec ringbuf.Record
	var failing time.Time // when a read error was last logged
	// The end of ctx ends the wait in epoll (ReadInto returns ErrFlushed).
	defer context.AfterFunc(ctx, func() { _ = r.rd.Flush() })()
	quarter := float64(r.rd.BufferSize() / 4)
	last := time.Now()
	wait := r.poll
	for {
		draining := ctx.Err() != nil
		if draining {
			wait = 0
		}
		read, err := r.drain(&rec, fn, wait)
		switch {
		case errors.Is(err, ringbuf.ErrClosed):
			return
		case err != nil && draining:
			slog.Warn(fmt.Sprintf("reading spans from the kernel: %v: the spans still in the ring buffer are lost", err))
			return
		case err != nil:
			if time.Since(failing) > time.Minute {
				slog.Warn(fmt.Sprintf("reading spans from the kernel: %v; retrying", err))
				failing = time.Now()
			}
			// Not at once: the error may well come back.
			select {
			case <-ctx.Done():
			case <-time.After(r.poll):
			}
		case draining:
			return
		}
		now := time.Now()
		wait = r.poll
		if read > 0 {
			wait = time.Duration(quarter / float64(read) * float64(now.Sub(last)))
			wait = min(r.poll, max(r.minPoll, wait))
		}
		last = now
	}
}

// drain waits up to wait for a record (the kernel wakes it when the ring passes half
// full, else the wait ends), then reads the records waiting, without waiting for more;
// it returns their size.
func (r *Reader) drain(rec *ringbuf.Record, fn func([]byte), wait time.Duration) (int, error) {
	r.rd.SetDeadline(time.Now().Add(wait))
	read := 0
	for {
		err := r.rd.ReadInto(rec)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, ringbuf.ErrFlushed) {
				err = nil
			}
			return read, err
		}
		if read == 0 {
			r.rd.SetDeadline(time.Now()) // awake: take what is there
		}
		read += len(rec.RawSample)
		fn(rec.RawSample)
	}
}

// SetPoll bounds the wait between drains, for a test of the kernel's wakeups: call it
// before Run.
func (r *Reader) SetPoll(minPoll, poll time.Duration) { r.minPoll, r.poll = minPoll, poll }

// Pending is the number of bytes of records waiting to be read.
func (r *Reader) Pending() int { return r.rd.AvailableBytes() }

// Lost is the number of records dropped so far because the ring buffer was full.
func (r *Reader) Lost() (uint64, error) {
	var perCPU []uint64
	if err := r.lost.Lookup(uint32(0), &perCPU); err != nil {
		return 0, fmt.Errorf("read the count of spans the kernel dropped: %w", err)
	}
	var n uint64
	for _, v := range perCPU {
		n += v
	}
	return n, nil
}

// Close releases the ring buffer.
func (r *Reader) Close() error { return r.rd.Close() }

// Explain shortens a verifier rejection to its last lines (the reason); the full log is
// in the error for --log-level debug.
func Explain(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) && len(ve.Log) > 0 {
		n := len(ve.Log)
		return fmt.Errorf("verifier: %s", strings.Join(ve.Log[max(0, n-3):], " | "))
	}
	return err
}
