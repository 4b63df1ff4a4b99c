package kit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/otel-go-launcher/otel-go-launcher/bpf"
	"github.com/otel-go-launcher/otel-go-launcher/offsets"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// Uprobe declares a function a spec attaches to: a uprobe at its entry, one at each of
// its RET instructions (Go code gets no uretprobes: goroutine stacks move), or both; or
// one at each of its calls to the functions its offsets.FuncSpec.Calls names.
type Uprobe struct {
	Spec   string // the spec it serves: "net/http.server"
	Symbol string // the function: one of the symbols of one of the spec's functions
	Entry  string // the program at its entry; "" for none
	Return string // the program at each of its RETs; "" for none
	Call   string // the program at each of its calls to FuncSpec.Calls; "" for none
}

// ObjectSpec is what a library's probe loads for one app.
type ObjectSpec struct {
	Library *Library
	// Uprobes the app needs; those of specs the reports did not resolve are left out.
	Uprobes []Uprobe
	// Programs are other programs to load, which the library attaches itself.
	Programs []string
	// Enable names, for each spec, the variable that turns it on (1) once its offsets
	// are set. The programs must do nothing while it is 0.
	Enable map[string]string
	// Writers hand the trace context of a client spec's calls to the wire.
	Writers *Writers
	// Decode fills span from a ring buffer record (the C struct, 8-byte aligned, valid
	// only during the call), or returns false to skip it. nil for an object that
	// outputs no events (a router's, which hands its route to the server's span): it
	// has no ring buffer to read.
	Decode func(raw []byte, span *telemetry.Span) bool
	// InFlight are the object's maps of spans in flight, which EndInFlight ends when
	// the launcher detaches: every map where a span waits between the probe that
	// begins it and the one that ends it.
	InFlight []InFlight
}

// Writers are the uprobes that hand a client spec's trace context to the wire
// (bpf/include/outgoing.h, probes/wire), in the goroutine about to write a request.
// They are loaded only with propagation on (Options.Propagate and TraceContext),
// attached where the app has their functions, and the object's "propagate" variable is
// set only once the wire is attached (Shared.Propagating) and Spec is enabled; else
// they are detached. Writers that cannot attach are said once: spans are still made.
type Writers struct {
	Spec     string   // the client spec they serve
	Uprobes  []Uprobe // those whose function the app lacks are left out
	Together bool     // all or none: one without the others would be a hit for nothing
	Calls    string   // what goes without context if they fail, for messages: "outgoing requests"
}

// Object is a library's BPF object loaded for one app, and what it attaches: a Probe.
// Libraries embed it, and add or override what is their own.
type Object struct {
	spec    ObjectSpec
	target  Target
	env     Env
	reps    Reports
	uprobes []Uprobe
	objs    *bpf.Objects
	vars    map[string]bool // the object's global variables
	types   *offsets.TypeNames

	mu      sync.Mutex
	links   map[string][]attachment // by spec
	reader  *bpf.Reader
	enabled []string
	writers []Uprobe // attached

	traceStates traceStates // of the client spans on their way
}

var _ Probe = (*Object)(nil)

// attachment is one program's uprobes.
type attachment struct {
	program string
	links   []link.Link
}

// LoadObject loads the library's BPF object for the app t: the programs its resolved
// specs need (those of Uprobes) and Programs, with the maps the app's probes share.
// The large programs go on loading in the background; Attach waits for each.
func LoadObject(ctx context.Context, t Target, reps Reports, env Env, spec ObjectSpec) (*Object, error) {
	lib := spec.Library
	fail := func(err error) (*Object, error) { return nil, errorf(lib.SpecNames(), StageLoad, err) }
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	coll, err := lib.Object()
	if err != nil {
		return fail(fmt.Errorf("parse the BPF object: %w", err))
	}
	if err := CheckFields(lib.Specs, coll); err != nil {
		return fail(fmt.Errorf("BPF object and specs disagree (a bug): %w", err))
	}
	o := &Object{spec: spec, target: t, env: env, reps: reps, links: map[string][]attachment{}, vars: map[string]bool{},
		types: offsets.NewTypeNames(t.Path)}
	var programs []string
	add := func(name string) {
		if name != "" && !slices.Contains(programs, name) {
			programs = append(programs, name)
		}
	}
	for _, u := range spec.Uprobes {
		if reps.Enabled(u.Spec) {
			o.uprobes = append(o.uprobes, u)
			add(u.Entry)
			add(u.Return)
			add(u.Call)
		}
	}
	for _, name := range spec.Programs {
		add(name)
	}
	if o.propagates() {
		for _, u := range spec.Writers.Uprobes {
			add(u.Entry)
			add(u.Return)
		}
	}
	// Only the maps those programs use are made, shared ones too: a server-only app
	// makes no outgoing-context maps.
	if coll, err = bpf.Only(coll, programs); err != nil {
		return fail(err)
	}
	var shared map[string]*ebpf.Map
	if env.Shared != nil {
		if shared, err = env.Shared.mapsFor(coll); err != nil {
			return fail(err)
		}
	}
	o.objs, err = bpf.LoadObjects(coll, bpf.LoadOptions{Programs: programs, RingBufferSize: env.RingBufferSize, Shared: shared})
	if err != nil {
		return fail(fmt.Errorf("load the BPF programs: %w", err))
	}
	o.objs.Preload(o.objs.Slow()...)
	for _, name := range o.objs.Variables() {
		o.vars[name] = true
	}
	return o, nil
}

// Target is the app the object was loaded for.
func (o *Object) Target() Target { return o.target }

// Env is what the session gave the object.
func (o *Object) Env() Env { return o.env }

// propagates reports whether the object's writers are to be loaded.
func (o *Object) propagates() bool {
	return o.spec.Writers != nil && o.env.Propagate && o.env.TraceContext && o.reps.Enabled(o.spec.Writers.Spec)
}

// Attach attaches the declared uprobes, all at once: a small program's while the large
// ones are still being verified, and the writers alongside. On failure nothing stays
// attached; writers that fail are said once and left out.
func (o *Object) Attach(ctx context.Context) error {
	writers := make(chan error, 1)
	if o.propagates() {
		go func() { writers <- o.attachWriters(ctx) }()
	} else {
		writers <- nil
	}
	err := o.AttachUprobes(ctx, o.uprobes...)
	if werr := <-writers; werr != nil && ctx.Err() == nil {
		slog.Warn(fmt.Sprintf("%s will not carry traceparent: %v (client spans are still made)", o.spec.Writers.Calls, werr))
		go o.detachWriters() // detaching waits out a grace period: not in the gate
	} else if werr != nil {
		err = errors.Join(err, werr)
	}
	if err != nil {
		o.Detach()
		return err
	}
	return nil
}

// attachWriters attaches the writers whose functions the app has.
func (o *Object) attachWriters(ctx context.Context) error {
	var ups []Uprobe
	for _, u := range o.spec.Writers.Uprobes {
		if _, err := o.function(u); err == nil {
			ups = append(ups, u)
		} else if o.spec.Writers.Together {
			return fmt.Errorf("%s not in the binary", u.Symbol)
		}
	}
	err := o.AttachUprobes(ctx, ups...)
	o.mu.Lock()
	o.writers = ups
	o.mu.Unlock()
	return err
}

// detachWriters detaches the writers' programs.
func (o *Object) detachWriters() error {
	o.mu.Lock()
	ups := o.writers
	o.writers = nil
	o.mu.Unlock()
	var errs []error
	for _, u := range ups {
		for _, prog := range []string{u.Entry, u.Return, u.Call} {
			if prog != "" {
				errs = append(errs, o.DetachProgram(prog))
			}
		}
	}
	return errors.Join(errs...)
}

// AttachUprobes attaches uprobes (for the library's own, optional ones: Attach does the
// declared ones), concurrently. Those that attached stay attached, whatever failed.
func (o *Object) AttachUprobes(ctx context.Context, ups ...Uprobe) error {
	type group struct {
		spec, program string
		up            bpf.Uprobe
	}
	var groups []group
	var errs []error
	for _, u := range ups {
		fn, err := o.function(u)
		if errors.Is(err, errAbsent) {
			continue // an optional function the program does not use: nothing to trace there
		}
		if err != nil {
			errs = append(errs, errorf(u.Spec, StageAttach, err))
			continue
		}
		if u.Entry != "" {
			if fn.EntryProbe == nil {
				errs = append(errs, errorf(u.Spec, StageAttach, fmt.Errorf("%s: declared for its RETs only, not its entry", fn.Symbol)))
				continue
			}
			groups = append(groups, group{u.Spec, u.Entry, bpf.Uprobe{Symbol: fn.Symbol, Offsets: []uint64{*fn.EntryProbe}}})
		}
		if u.Return != "" {
			if len(fn.Returns) == 0 {
				errs = append(errs, errorf(u.Spec, StageAttach, fmt.Errorf("%s: no RET instruction found", fn.Symbol)))
				continue
			}
			groups = append(groups, group{u.Spec, u.Return, bpf.Uprobe{Symbol: fn.Symbol + " (returns)", Offsets: fn.Returns}})
		}
		if u.Call != "" {
			if len(fn.Calls) == 0 {
				errs = append(errs, errorf(u.Spec, StageAttach, fmt.Errorf("%s: no call site found", fn.Symbol)))
				continue
			}
			groups = append(groups, group{u.Spec, u.Call, bpf.Uprobe{Symbol: fn.Symbol + " (calls)", Offsets: fn.Calls}})
		}
	}
	type result struct {
		group
		links []link.Link
		err   error
	}
	results := make(chan result, len(groups))
	for _, g := range groups {
		go func(g group) {
			prog, err := o.objs.Program(g.program) // waits for a large one to load
			if err != nil {
				results <- result{g, nil, errorf(g.spec, StageLoad, err)}
				return
			}
			g.up.Program = prog
			links, err := bpf.AttachUprobes(o.target.Path, o.target.PID, g.up)
			results <- result{g, links, errorf(g.spec, StageAttach, err)}
		}(g)
	}
	for range groups {
		r := <-results
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		o.mu.Lock()
		o.links[r.spec] = append(o.links[r.spec], attachment{r.program, r.links})
		o.mu.Unlock()
	}
	if err := ctx.Err(); err != nil && len(errs) == 0 {
		errs = append(errs, errorf(o.spec.Library.SpecNames(), StageAttach, err))
	}
	return errors.Join(errs...)
}

// errAbsent: an optional function is not in the binary.
var errAbsent = errors.New("not in the binary (optional)")

// function finds the uprobe's function in its spec's report.
func (o *Object) function(u Uprobe) (offsets.Uprobe, error) {
	rep, ok := o.reps[u.Spec]
	if !ok {
		return offsets.Uprobe{}, fmt.Errorf("no report for spec %s", u.Spec)
	}
	for _, s := range o.spec.Library.Specs {
		if s.Name != u.Spec {
			continue
		}
		for _, f := range s.Functions {
			if !slices.Contains(f.Symbols, u.Symbol) {
				continue
			}
			for _, sym := range f.Symbols {
				if fn, ok := rep.Uprobe(sym); ok {
					return fn, nil
				}
			}
			if f.Optional {
				return offsets.Uprobe{}, fmt.Errorf("%s: %w", strings.Join(f.Symbols, " or "), errAbsent)
			}
			return offsets.Uprobe{}, fmt.Errorf("%s not resolved", strings.Join(f.Symbols, " or "))
		}
	}
	return offsets.Uprobe{}, fmt.Errorf("%s is not a function of spec %s (a bug)", u.Symbol, u.Spec)
}

// Program returns one of the loaded programs, waiting for a large one to load.
func (o *Object) Program(name string) (*ebpf.Program, error) { return o.objs.Program(name) }

// Map returns one of the object's maps.
func (o *Object) Map(name string) *ebpf.Map { return o.objs.Map(name) }

// OffsetVariables names the object's field offset variables.
func (o *Object) OffsetVariables() []string {
	var names []string
	for _, name := range o.objs.Variables() {
		if strings.HasPrefix(name, offsetPrefix) {
			names = append(names, name)
		}
	}
	return names
}

// Variable reads one of the object's global variables.
func (o *Object) Variable(name string) (uint64, error) { return o.objs.Variable(name) }

// DetachProgram removes the uprobes of one program.
func (o *Object) DetachProgram(program string) error {
	o.mu.Lock()
	var links []link.Link
	for spec, as := range o.links {
		o.links[spec] = slices.DeleteFunc(as, func(a attachment) bool {
			if a.program == program {
				links = append(links, a.links...)
				return true
			}
			return false
		})
	}
	o.mu.Unlock()
	return bpf.CloseAll(links)
}

// Enabling names the specs Configure would turn on with reps: those attached and
// enabled in them.
func (o *Object) Enabling(reps Reports) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var names []string
	for _, s := range o.spec.Library.Specs {
		if reps.Enabled(s.Name) && len(o.links[s.Name]) > 0 {
			names = append(names, s.Name)
		}
	}
	return names
}

// Configure sets the app's field offsets from reps, the options (sampler, trace
// context) and inflight (spans.h), opens the ring buffer, and then, last, turns on the
// specs Enabling names. Attached specs that are not turned on are detached.
func (o *Object) Configure(reps Reports, inflight Lookup) error {
	return o.ConfigureWith(reps, inflight, nil)
}

// ConfigureWith is Configure that also sets the library's own variables, vars, before
// the specs are turned on.
func (o *Object) ConfigureWith(reps Reports, inflight Lookup, vars map[string]uint64) error {
	lib := o.spec.Library
	fail := func(err error) error { return errorf(lib.SpecNames(), StageConfigure, err) }
	enabled := o.Enabling(reps)
	var off []attachment
	o.mu.Lock()
	for spec, as := range o.links {
		if !slices.Contains(enabled, spec) {
			off = append(off, as...)
			delete(o.links, spec)
		}
	}
	o.mu.Unlock()
	if len(off) > 0 {
		go closeAttachments(off, bpf.CloseAll) // waits out a grace period: not in the gate
	}
	if len(enabled) == 0 {
		return fail(errors.New("no probe left to enable"))
	}

	coll, err := lib.Object()
	if err != nil {
		return fail(err)
	}
	values := offsetValues(lib.Specs, reps, coll)
	common := map[string]uint64{
		"sampler_root":         uint64(o.env.Sampling.Root),
		"sampler_parent_based": boolValue(o.env.Sampling.ParentBased),
		"sampler_ratio_bound":  o.env.Sampling.RatioBound(),
		"trace_context":        boolValue(o.env.TraceContext),
		"inflight_wanted":      uint64(inflight),
		"context_wrappers":     boolValue(o.env.Shared != nil && o.env.Shared.ContextWrappers()),
	}
	for name, v := range common {
		if o.vars[name] {
			values[name] = v
		}
	}
	if o.spec.Writers != nil {
		o.mu.Lock()
		propagate := len(o.writers) > 0 && slices.Contains(enabled, o.spec.Writers.Spec) && o.env.Shared != nil && o.env.Shared.Propagating()
		o.mu.Unlock()
		if !propagate {
			go o.detachWriters() // waits out a grace period: not in the gate
		}
		values["propagate"] = boolValue(propagate)
	}
	for name, v := range vars {
		values[name] = v
	}
	if err := o.objs.SetVariables(values); err != nil {
		return fail(err)
	}
	var reader *bpf.Reader
	if o.spec.Decode != nil {
		if reader, err = bpf.NewReader(o.objs.Map("events"), o.objs.Map("lost_events")); err != nil {
			return fail(err)
		}
	}
	enables := map[string]uint64{}
	for _, spec := range enabled {
		name, ok := o.spec.Enable[spec]
		if !ok {
			if reader != nil {
				reader.Close()
			}
			return fail(fmt.Errorf("no variable enables %s (a bug)", spec))
		}
		enables[name] = 1
	}
	o.mu.Lock()
	o.reader, o.enabled = reader, enabled
	o.mu.Unlock()
	// Last: the programs act from here on.
	if err := o.objs.SetVariables(enables); err != nil {
		return fail(err)
	}
	return nil
}

func boolValue(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// Enabled names the specs Configure turned on.
func (o *Object) Enabled() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.enabled)
}

// Run decodes events into spans for emit until ctx ends, then drains what is left.
func (o *Object) Run(ctx context.Context, emit func(*telemetry.Span)) {
	o.mu.Lock()
	reader := o.reader
	o.mu.Unlock()
	if reader == nil {
		return
	}
	var span telemetry.Span
	reader.Run(ctx, func(raw []byte) {
		if RecordKind(raw) == RecordTraceState {
			o.traceStates.file(raw)
			return
		}
		if o.spec.Decode(raw, &span) {
			o.finish(&span)
			emit(&span)
		}
	})
}

// finish gives a span the library made what the kit knows of it: its library's scope
// (unless the decoder gave it one: the OpenTelemetry API's spans have their tracer's),
// its tracestate.
func (o *Object) finish(span *telemetry.Span) {
	if span.Scope == nil {
		span.Scope = o.spec.Library.Scope
	}
	o.traceStates.give(span)
}

// Lost is the number of spans the kernel dropped because the ring buffer was full.
func (o *Object) Lost() (uint64, error) {
	o.mu.Lock()
	reader := o.reader
	o.mu.Unlock()
	if reader == nil {
		return 0, nil
	}
	n, err := reader.Lost()
	if err != nil {
		return 0, errorf(o.spec.Library.SpecNames(), StageRun, err)
	}
	return n, nil
}

// Pending is the number of bytes of events waiting in the ring buffer.
func (o *Object) Pending() int {
	o.mu.Lock()
	reader := o.reader
	o.mu.Unlock()
	if reader == nil {
		return 0
	}
	return reader.Pending()
}

// Programs lists the attached programs, for counting their runs.
func (o *Object) Programs() []*ebpf.Program {
	o.mu.Lock()
	var names []string
	for _, as := range o.links {
		for _, a := range as {
			if !slices.Contains(names, a.program) {
				names = append(names, a.program)
			}
		}
	}
	o.mu.Unlock()
	slices.Sort(names)
	var progs []*ebpf.Program
	for _, name := range names {
		if p, err := o.objs.Program(name); err == nil {
			progs = append(progs, p)
		}
	}
	return progs
}

// Detach removes every uprobe; events already queued can still be read.
func (o *Object) Detach() error { return closeAttachments(o.takeAttachments(), bpf.CloseAll) }

// Release removes every uprobe of an app that has exited, the kernel finishing in the
// background; events already queued can still be read.
func (o *Object) Release() error {
	return closeAttachments(o.takeAttachments(), bpf.Release)
}

// takeAttachments takes every attachment out of the object, for detaching.
func (o *Object) takeAttachments() []attachment {
	o.mu.Lock()
	defer o.mu.Unlock()
	var all []attachment
	for _, as := range o.links {
		all = append(all, as...)
	}
	o.links = map[string][]attachment{}
	return all
}

// Close detaches and frees the programs, maps and ring buffer.
func (o *Object) Close() error {
	err := o.Detach()
	o.mu.Lock()
	reader := o.reader
	o.reader = nil
	o.mu.Unlock()
	if reader != nil {
		if cerr := reader.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close the ring buffer: %w", cerr))
		}
	}
	o.objs.Close()
	err = errors.Join(err, o.types.Close())
	return errorf(o.spec.Library.SpecNames(), StageDetach, err)
}

// TypeName names the app's type whose runtime descriptor is at addr, as %T would
// ("*net.OpError"): what a probe reads as an interface's dynamic type (an error's, a
// connection's). "" for 0 or an address that is none of its types. The binary is
// read on the first call. A nil Object (a span conversion tested alone) names none.
func (o *Object) TypeName(addr uint64) string {
	if o == nil || addr == 0 {
		return ""
	}
	return o.types.Name(o.target.PID, addr)
}

// closeAttachments detaches with closeLinks (bpf.CloseAll, bpf.Release).
func closeAttachments(as []attachment, closeLinks func([]link.Link) error) error {
	var links []link.Link
	for _, a := range as {
		links = append(links, a.links...)
	}
	return closeLinks(links)
}

// PointerTypes are the addresses, in the app, of the type descriptors of *T for the
// structs T named ("github.com/lib/pq.conn"): what a program compares an interface's
// type word with, to know what it holds. A struct whose pointer type the binary lacks
// is left out. The binary is read again (in Load, beside the analysis of its fields).
// The addresses are link addresses, for InApp.
func (o *Object) PointerTypes(structs ...string) (map[string]uint64, error) {
	b, err := offsets.Open(o.target.Path)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	return b.PointerTypeAddrs(structs)
}

// InApp relocates link addresses of the app's binary to where the app has them. For a
// position-independent app that is known only once it runs (the app's exec at the
// gate's release): until then, an error.
func (o *Object) InApp(links map[string]uint64) (map[string]uint64, error) {
	return o.types.Addresses(o.target.PID, links)
}

// SetVariables sets global variables of the loaded programs, at any time.
func (o *Object) SetVariables(vars map[string]uint64) error { return o.objs.SetVariables(vars) }
