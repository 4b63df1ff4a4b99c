// Package kit is the probe kit: what the probe of every instrumented library is made of.
//
// A library is one package under probes/ (probes/nethttp) and its C file. It declares a
// Library: its specs (what it needs from a binary, offsets.Spec), its BPF object, and how
// its probe loads for a target - the uprobes it needs (a function, the program at its
// entry, the program at each of its RET instructions) and how its events become spans.
// The kit does the rest, the same way for every library (Object):
//
//   - loads the object with only the programs the target needs - the large ones
//     verified in the background - and with the maps every probe of the app shares
//     (bpf/include/spans.h: the in-flight server spans, so that a span of one library
//     finds its parent among another's);
//   - attaches the uprobes to the app's process;
//   - sets every field offset the C code reads, by name: the field Y of the struct X of
//     package p is the global off_p_X_Y (VarName), set from the analysis report, or
//     OFFSET_NONE where the app's version has no such field; then the sampler and
//     trace context settings; then, last, the variable that turns each spec on;
//   - reads the ring buffer and hands each record to the library's decoder;
//   - says what failed as an *Error: which probe, at which stage, and why.
package kit

import (
	"context"
	"slices"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/otel-go-launcher/otel-go-launcher/offsets"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig"
)

// Library is one instrumented library.
type Library struct {
	Name  string         // "net/http"
	Specs []offsets.Spec // its probes' needs, one spec per probe ("net/http.server")
	// Scope is the instrumentation scope of its spans and request metrics, named after
	// its package (telemetry.NewScope(reflect.TypeFor[Probe]().PkgPath())), declared once
	// there; the kit gives it to every span the library's probe makes. nil for a
	// library that makes no span (a router's).
	Scope *telemetry.Scope
	// Object is the library's BPF object, parsed once (bpf2go's load function behind a
	// sync.OnceValues): the session parses it from the launcher's first step.
	Object func() (*ebpf.CollectionSpec, error)
	// Clients are the specs whose spans take their parent from the in-flight server
	// spans (spans.h), and how each looks for it; a router's spec, which files the
	// route of the server span it finds (routes.h), is one too. Server spans are
	// registered only where an enabled one looks.
	Clients map[string]Lookup
	// PrefaceWriters are the functions that open the library's HTTP/2 client
	// connections, writing their preface (alternatives across versions). The socket
	// programs decide a connection's protocol from its first bytes, and follow HTTP/2
	// only once their HTTP/2 program is verified (the largest, tens of milliseconds):
	// with propagation, the overlapped start holds these until then, and the rest of
	// the app's calls only until the probes are attached. A library with a client
	// spec but none of these in the binary keeps every call held until then.
	PrefaceWriters []string
	// Load loads the library's probe for the app t, whose reports say which of Specs
	// resolved (the session loads a library only if one did). It runs while the
	// binary's field offsets are still being read: reps have functions, not fields.
	Load func(ctx context.Context, t Target, reps Reports, env Env) (Probe, error)
	// Check does, for `launch doctor`, what instrumenting an app will need of this
	// host from the library: each finding is the result of a check.
	Check func(ctx context.Context, env Env) []Finding
}

// Lookup is how a client probe finds its parent among the in-flight server spans
// (bpf/include/spans.h; the values are its INFLIGHT_* bits).
type Lookup uint64

const (
	ByContext   Lookup = 1 << iota // the call's context, up its parents
	ByGoroutine                    // the goroutine making the call
	// Routes: it files the template a router matched for the span (routes.h), which
	// the server takes at its end; a router's spec is ByGoroutine | Routes.
	Routes
)

// SpecNames are the names of the library's probes, for messages: its specs that attach
// to functions (not those that only read a dependency's fields: database/sql.pgx).
func (l *Library) SpecNames() string {
	var names []string
	for _, s := range l.Specs {
		if len(s.Functions) > 0 {
			names = append(names, s.Name)
		}
	}
	return strings.Join(names, ", ")
}

// Used reports whether one of the library's probes that attach to functions is
// enabled in r: only then is it loaded. A spec that only reads a dependency's fields
// (database/sql.pgx) is enabled wherever the dependency is, used or not.
func (l *Library) Used(r Reports) bool {
	return slices.ContainsFunc(l.Specs, func(s offsets.Spec) bool { return len(s.Functions) > 0 && r.Enabled(s.Name) })
}

// Target is the app's process, held at the start gate, and its binary.
type Target struct {
	Path      string
	PID       int
	GoVersion string          // its Go release: "go1.26.8"
	Modules   offsets.Modules // the modules compiled in, the main one first
}

// Reports are analysis reports by probe (spec) name.
type Reports map[string]offsets.ProbeReport

// ReportsOf indexes a report's probes by name.
func ReportsOf(r *offsets.Report) Reports {
	reps := Reports{}
	for _, p := range r.Probes {
		reps[p.Name] = p
	}
	return reps
}

// Enabled reports whether the spec named is in reps and enabled.
func (r Reports) Enabled(spec string) bool { return r[spec].Enabled }

// Options are the launcher's settings every probe applies.
type Options struct {
	RingBufferSize int                 // bytes per probe: a power of two, at least a page
	Sampling       otelconfig.Sampling // OTEL_TRACES_SAMPLER[_ARG], decided in the kernel
	TraceContext   bool                // W3C trace context: join incoming, send outgoing
	// Propagate puts the client spans' trace context on the wire (probes/wire): the
	// probes load what files it; they file it only if the wire is attached
	// (Shared.Propagating).
	Propagate bool
}

// Env is what a library's probe gets from the session: the options, and the maps the
// probes of one app share.
type Env struct {
	Options
	Shared *Shared
}

// Probe is a library's instrumentation of one app. Libraries implement it by embedding
// *Object, which does everything but what is the library's own.
type Probe interface {
	// Attach attaches the probe's uprobes (and what else it needs) to the app. The
	// probe does nothing until Configure: the app waits at the start gate meanwhile.
	Attach(ctx context.Context) error
	// Configure sets the app's field offsets from reps, now complete, and turns on
	// each spec attached and enabled in reps; the others are detached. inflight says
	// how the enabled probes of the app look for parents, so that servers register
	// where they look. It fails if no spec is left on.
	Configure(reps Reports, inflight Lookup) error
	// Enabled names the specs Configure turned on.
	Enabled() []string
	// Run delivers spans to emit until ctx ends, then drains what is left.
	Run(ctx context.Context, emit func(*telemetry.Span))
	// Lost counts the spans the kernel dropped (ring buffer full).
	Lost() (uint64, error)
	// Pending is the number of bytes of events waiting in the ring buffer.
	Pending() int
	// Programs are the attached BPF programs, for run counts.
	Programs() []*ebpf.Program
	// Detach stops new events; Run still delivers those already queued.
	Detach() error
	// Release is Detach for an app that has exited, whose probes can fire no more: the
	// kernel finishes detaching in the background (bpf.Release).
	Release() error
	// EndInFlight ends the spans still in flight in the probe's maps - begun, their
	// end never seen: the app exited during them - at end (CLOCK_MONOTONIC ns),
	// marked with why, and emits them; it returns how many, by spec. After Detach, or
	// Release.
	EndInFlight(end uint64, why telemetry.EndReason, emit func(*telemetry.Span)) (map[string]int, error)
	// Close detaches and frees the programs, maps and ring buffer.
	Close() error
}

// Status is how a doctor finding turned out.
type Status string

const (
	OK    Status = "ok"    // checked, works
	Fail  Status = "FAIL"  // checked, does not work: tracing (or this part of it) cannot
	Warn  Status = "warn"  // works, with a caveat; or could not be checked
	Limit Status = "limit" // a limit of what is traced, whatever the host
)

// Finding is one line of `launch doctor`.
type Finding struct {
	Status Status
	Text   string
}
