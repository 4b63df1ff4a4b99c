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

	"github.com/otel-go-launcher/otel-go-launcher/offsets"
	"github.com/otel-go-launcher/otel-go-launcher/probes/nethttp"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// Probe is one library's instrumentation: loaded, then attached to one process.
type Probe interface {
	// Attach configures the probe for the target (its analysis report) and attaches.
	Attach(path string, pid int, goVersion string, rep *offsets.ProbeReport) error
	// Run delivers spans to emit until ctx ends, then drains what is left.
	Run(ctx context.Context, emit func(*telemetry.Span))
	// Lost counts spans the kernel dropped (ring buffer full).
	Lost() uint64
	// Programs are its BPF programs, for run counts.
	Programs() []*ebpf.Program
	// Detach stops new events; Run still delivers those already queued.
	Detach()
	Close() error
}

var registry = []struct {
	spec offsets.Spec
	load func(goVersion string, opts Options) (Probe, error)
}{
	{nethttp.ServerSpec, func(goVersion string, opts Options) (Probe, error) {
		return nethttp.LoadServer(goVersion, opts.RingBufferSize)
	}},
}

// Specs is what every probe needs from a target binary, in report order.
func Specs() []offsets.Spec {
	specs := make([]offsets.Spec, len(registry))
	for i, r := range registry {
		specs[i] = r.spec
	}
	return specs
}

// Options tune the probes.
type Options struct {
	RingBufferSize int // bytes per probe; a power of two, at least a page
}

// Session is an instrumented app: attached probes feeding a pipeline.
type Session struct {
	probes   []Probe
	names    []string
	pipeline *telemetry.Pipeline
	cancel   context.CancelFunc
	running  sync.WaitGroup
	lost     uint64 // reported so far
}

// Instrument analyses the executable at path, builds the telemetry pipeline for the
// app and attaches every probe that applies to process pid. It fails only when no
// probe could be attached; probes that could not are logged, with why.
//
// This runs inside the start gate, so the three independent parts - analysing the
// binary, loading (verifying) the BPF programs, starting the pipeline - run at once.
func Instrument(ctx context.Context, path string, pid int, opts Options) (*Session, error) {
	bin, err := offsets.Open(path) // headers and Go version only: fast
	if err != nil {
		return nil, err
	}
	defer bin.Close()

	type loaded struct {
		probe Probe
		err   error
	}
	loads := make([]chan loaded, len(registry))
	for i, r := range registry {
		loads[i] = make(chan loaded, 1)
		go func(i int, load func(string, Options) (Probe, error)) {
			p, err := load(bin.GoVersion, opts)
			loads[i] <- loaded{p, err}
		}(i, r.load)
	}
	closeLoaded := func() {
		for i := range loads {
			if l := <-loads[i]; l.probe != nil {
				l.probe.Close()
			}
		}
	}
	pipeReady := make(chan struct{})
	var pipe *telemetry.Pipeline
	var pipeErr error
	go func() {
		defer close(pipeReady)
		pipe, pipeErr = telemetry.New(ctx, telemetry.App{Path: path, PID: pid, GoVersion: bin.GoVersion})
	}()
	rep, err := offsets.Analyze(bin, Specs())
	<-pipeReady
	if err == nil {
		err = pipeErr
	}
	if err != nil {
		closeLoaded()
		if pipe != nil {
			pipe.Shutdown(ctx)
		}
		return nil, err
	}

	s := &Session{pipeline: pipe}
	var failures []string
	for i := range registry {
		l := <-loads[i]
		pr := &rep.Probes[i]
		switch {
		case !pr.Enabled:
			failures = append(failures, pr.Name+": "+pr.Reason)
		case l.err != nil:
			failures = append(failures, pr.Name+": "+l.err.Error())
		default:
			if err := l.probe.Attach(path, pid, bin.GoVersion, pr); err != nil {
				failures = append(failures, pr.Name+": "+err.Error())
			} else {
				s.probes = append(s.probes, l.probe)
				s.names = append(s.names, pr.Name)
				continue
			}
		}
		if l.probe != nil {
			l.probe.Close()
		}
	}
	if len(s.probes) == 0 {
		pipe.Shutdown(ctx)
		return nil, errors.New(strings.Join(failures, "; "))
	}
	for _, f := range failures {
		slog.Info("probe not attached: " + f)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	for _, p := range s.probes {
		s.running.Add(1)
		go func(p Probe) {
			defer s.running.Done()
			p.Run(runCtx, pipe.Emit)
		}(p)
	}
	s.running.Add(1)
	go s.reportLost(runCtx)
	slog.Debug("probes attached", "probes", strings.Join(s.names, ","), "pid", pid)
	return s, nil
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
	return s.pipeline.Shutdown(ctx)
}
