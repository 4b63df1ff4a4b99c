// Package probes instruments one app: it analyses the binary, starts the telemetry
// pipeline, attaches every probe that applies, and turns their events into spans.
// Adding a library is one package below this one and one entry in registry.
package probes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"

	"github.com/otel-go-launcher/otel-go-launcher/bpf"
	"github.com/otel-go-launcher/otel-go-launcher/offsets"
	"github.com/otel-go-launcher/otel-go-launcher/probes/nethttp"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// Probe is one library's instrumentation, covering one or more specs (a server and a
// client side, say): loaded, attached to one process, then configured with the
// process's field offsets. Reports come in the order of the probe's specs.
type Probe interface {
	// Attach attaches the uprobes of each spec whose functions its report resolved.
	// The probe stays inert until Configure: the app is held at the start gate
	// meanwhile.
	Attach(path string, pid int, reps []offsets.ProbeReport) error
	// Configure sets the target's field offsets and enables the specs whose reports
	// are enabled. It fails if it enables none.
	Configure(goVersion string, reps []offsets.ProbeReport) error
	// Run delivers spans to emit until ctx ends, then drains what is left.
	Run(ctx context.Context, emit func(*telemetry.Span))
	// Lost counts spans the kernel dropped (ring buffer full).
	Lost() uint64
	// Programs are its attached BPF programs, for run counts.
	Programs() []*ebpf.Program
	// Detach stops new events; Run still delivers those already queued.
	Detach()
	Close() error
}

// registry lists the instrumented libraries: their specs, in report order, and how
// to load their probe.
var registry = []struct {
	specs   []offsets.Spec
	load    func(goVersion string, resolved []offsets.ProbeReport, opts Options) (Probe, error)
	prepare func()               // start work that needs no target
	check   func() bpf.HostCheck // for launch doctor
}{
	{nethttp.Specs, func(goVersion string, resolved []offsets.ProbeReport, opts Options) (Probe, error) {
		return nethttp.Load(goVersion, resolved, nethttp.Config{
			RingBufferSize: opts.RingBufferSize,
			Sampling:       opts.Sampling,
			TraceContext:   opts.TraceContext,
			Propagate:      opts.Propagate,
		})
	}, nethttp.Prepare, nethttp.Check},
}

// Prepare starts, in the background, what loading the probes involves that needs no
// target (parsing their BPF objects): the launcher calls it first thing, so that the
// work overlaps its own start and the app's time at the start gate shrinks.
func Prepare() {
	go offsets.EmbeddedDatabase() // parsed before analysis needs it
	for _, r := range registry {
		r.prepare()
	}
}

// Specs is what every probe needs from a target binary, in report order.
func Specs() []offsets.Spec {
	var specs []offsets.Spec
	for _, r := range registry {
		specs = append(specs, r.specs...)
	}
	return specs
}

// Options tune the probes.
type Options struct {
	RingBufferSize int                // bytes per probe; a power of two, at least a page
	Sampling       telemetry.Sampling // OTEL_TRACES_SAMPLER[_ARG], decided in the kernel
	TraceContext   bool               // OTEL_PROPAGATORS has tracecontext
	Propagate      bool               // insert traceparent into outgoing requests (--propagate)
}

// OptionsFromEnv reads the OpenTelemetry settings the probes apply themselves.
func OptionsFromEnv() Options {
	return Options{Sampling: telemetry.SamplingFromEnv(), TraceContext: telemetry.TraceContextFromEnv(), Propagate: true}
}

// Session is an instrumented app: attached probes feeding a pipeline.
type Session struct {
	probes   []Probe
	names    []string
	app      telemetry.App
	sampling telemetry.Sampling
	started  chan struct{} // closed once the pipeline exists (or failed)
	pipe     *telemetry.Pipeline
	cancel   context.CancelFunc
	running  sync.WaitGroup
	lost     uint64 // reported so far
}

// Instrument analyses the executable at path and attaches every probe that applies to
// process pid. It fails only when no probe could be attached; probes that could not
// are logged, with why. The telemetry pipeline is built after it returns: spans only
// come once the app runs, and they wait in the kernel until then.
//
// This runs inside the start gate, so the work overlaps: functions are resolved first
// (under a millisecond), then the programs those probes need are loaded (verified) and
// attached - the kernel sleeps through each uprobe registration - while DWARF is read.
func Instrument(ctx context.Context, path string, pid int, opts Options) (*Session, error) {
	if err := telemetry.CheckEnv(); err != nil {
		return nil, err
	}
	bin, err := offsets.Open(path) // headers and Go version only: fast
	if err != nil {
		return nil, err
	}
	defer bin.Close()

	specs := Specs()
	rep, err := offsets.AnalyzeFunctions(bin, specs) // < 1 ms: symbols or pclntab
	if err != nil {
		return nil, err
	}
	// Where to attach, before AddFields changes rep; and which specs cannot be.
	uprobes := make([]offsets.ProbeReport, len(specs))
	var unresolved []string
	for i, p := range rep.Probes {
		uprobes[i] = offsets.ProbeReport{Name: p.Name, Enabled: p.Enabled, Uprobes: p.Uprobes}
		if !p.Enabled {
			unresolved = append(unresolved, p.Name+": "+p.Reason)
		}
	}
	if len(unresolved) == len(specs) { // nothing to trace: do not hold the app for DWARF
		return nil, errors.New(strings.Join(unresolved, "; "))
	}

	// Each probe's reports are a window of rep.Probes. A probe with a spec to attach
	// loads what those specs need, while DWARF is read.
	type window struct{ lo, hi int }
	windows := make([]window, len(registry))
	for i, lo := 0, 0; i < len(registry); i++ {
		windows[i] = window{lo, lo + len(registry[i].specs)}
		lo = windows[i].hi
	}
	anyResolved := func(w window) bool {
		for _, u := range uprobes[w.lo:w.hi] {
			if u.Enabled {
				return true
			}
		}
		return false
	}
	type loaded struct {
		probe Probe
		err   error
	}
	loads := make([]chan loaded, len(registry))
	for i, r := range registry {
		loads[i] = make(chan loaded, 1)
		if !anyResolved(windows[i]) {
			loads[i] <- loaded{}
			continue
		}
		go func(i int, load func(string, []offsets.ProbeReport, Options) (Probe, error)) {
			p, err := load(bin.GoVersion, uprobes[windows[i].lo:windows[i].hi], opts)
			loads[i] <- loaded{p, err}
		}(i, r.load)
	}
	fields := make(chan error, 1)
	go func() { fields <- rep.AddFields(bin, specs) }()

	attached := make([]Probe, len(registry))
	failures := unresolved
	for i, w := range windows {
		l := <-loads[i]
		switch {
		case l.probe == nil && l.err == nil: // nothing to attach
		case l.err != nil:
			failures = append(failures, specNames(specs[w.lo:w.hi])+": "+l.err.Error())
		default:
			if err := l.probe.Attach(path, pid, uprobes[w.lo:w.hi]); err != nil {
				failures = append(failures, specNames(specs[w.lo:w.hi])+": "+err.Error())
			} else {
				attached[i] = l.probe
				continue
			}
		}
		if l.probe != nil {
			go l.probe.Close() // detaching waits out a kernel grace period: not in the gate
		}
	}
	fieldErr := <-fields

	s := &Session{app: telemetry.App{Path: path, PID: pid, GoVersion: bin.GoVersion}, sampling: opts.Sampling, started: make(chan struct{})}
	for i, p := range attached {
		if p == nil {
			continue
		}
		w := windows[i]
		reps := rep.Probes[w.lo:w.hi]
		for j := range reps {
			if uprobes[w.lo+j].Enabled && !reps[j].Enabled { // missing fields
				failures = append(failures, reps[j].Name+": "+reps[j].Reason)
			}
		}
		err := fieldErr
		if err == nil {
			err = p.Configure(bin.GoVersion, reps)
		}
		if err != nil {
			failures = append(failures, specNames(specs[w.lo:w.hi])+": "+err.Error())
			go p.Close() // detaching waits out a kernel grace period: not in the gate
			continue
		}
		s.probes = append(s.probes, p)
		for _, r := range reps {
			if r.Enabled {
				s.names = append(s.names, r.Name)
			}
		}
	}
	if len(s.probes) == 0 {
		return nil, errors.New(strings.Join(failures, "; "))
	}
	for _, f := range failures {
		slog.Info("probe not attached: " + f)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.start(runCtx)
	slog.Debug("probes attached", "probes", strings.Join(s.names, ","), "pid", pid, "offsets", offsetSources(rep))
	return s, nil
}

// offsetSources says where the enabled probes' offsets came from: "db:33" for a
// stripped binary of a known release.
func offsetSources(rep *offsets.Report) string {
	var enabled []offsets.ProbeReport
	for _, p := range rep.Probes {
		if p.Enabled {
			enabled = append(enabled, p)
		}
	}
	var parts []string
	for _, c := range offsets.FieldSources(enabled...) {
		parts = append(parts, fmt.Sprintf("%s:%d", c.Source, c.Fields))
	}
	return strings.Join(parts, ",")
}

func specNames(specs []offsets.Spec) string {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	return strings.Join(names, ", ")
}

// start builds the pipeline and starts delivering spans. Without a pipeline, the
// probes are detached: tracing is off, said once.
func (s *Session) start(ctx context.Context) {
	defer close(s.started)
	pipe, err := telemetry.New(ctx, s.app, s.sampling)
	if err != nil {
		slog.Warn(fmt.Sprintf("not tracing %s: %v", s.app.Path, err))
		for _, p := range s.probes {
			p.Detach()
		}
		return
	}
	s.pipe = pipe
	for _, p := range s.probes {
		s.running.Add(1)
		go func(p Probe) {
			defer s.running.Done()
			p.Run(ctx, pipe.Emit)
		}(p)
	}
	s.running.Add(1)
	go s.reportLost(ctx)
}

// lossInterval is how often lost spans are counted and, if any, reported.
const lossInterval = 10 * time.Second

func (s *Session) reportLost(ctx context.Context) {
	defer s.running.Done()
	t := time.NewTicker(lossInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.logLost("in the last " + lossInterval.String())
		}
	}
}

func (s *Session) logLost(when string) {
	var total uint64
	for _, p := range s.probes {
		total += p.Lost()
	}
	if total > s.lost {
		slog.Warn(fmt.Sprintf("%d spans dropped %s: the exporter could not keep up (collector slow or down); spans are never held without bound",
			total-s.lost, when), "total_dropped", total)
		s.lost = total
	}
}

// Programs lists every attached BPF program (for run counts).
func (s *Session) Programs() []*ebpf.Program {
	var progs []*ebpf.Program
	for _, p := range s.probes {
		progs = append(progs, p.Programs()...)
	}
	return progs
}

// Shutdown detaches the probes, delivers the spans they still hold and flushes the
// pipeline, within ctx.
func (s *Session) Shutdown(ctx context.Context) error {
	for _, p := range s.probes {
		p.Detach()
	}
	<-s.started
	s.cancel()
	drained := make(chan struct{})
	go func() { s.running.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-ctx.Done():
	}
	s.logLost("in all")
	for _, p := range s.probes {
		p.Close()
	}
	if s.pipe == nil {
		return nil
	}
	return s.pipe.Shutdown(ctx)
}

// HostCheck is what checking one probe on this host found.
type HostCheck struct {
	Probes []string // the specs it serves
	bpf.HostCheck
}

// CheckHost loads every probe's programs, and attaches what can be attached without an
// app, then detaches: for `launch doctor`.
func CheckHost() []HostCheck {
	var checks []HostCheck
	for _, r := range registry {
		var names []string
		for _, s := range r.specs {
			names = append(names, s.Name)
		}
		checks = append(checks, HostCheck{Probes: names, HostCheck: r.check()})
	}
	return checks
}
