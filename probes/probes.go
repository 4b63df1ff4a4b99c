// Package probes instruments one app: it analyses the binary, loads and attaches the
// probe of every instrumented library that applies - each a package below this one,
// built on the probe kit (probes/kit) - and turns their events into spans through the
// telemetry pipeline. Adding a library is one package and one line in Libraries.
package probes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/otel-go-launcher/otel-go-launcher/bpf"
	"github.com/otel-go-launcher/otel-go-launcher/offsets"
	"github.com/otel-go-launcher/otel-go-launcher/probes/chi"
	"github.com/otel-go-launcher/otel-go-launcher/probes/databasesql"
	"github.com/otel-go-launcher/otel-go-launcher/probes/echo"
	"github.com/otel-go-launcher/otel-go-launcher/probes/gin"
	"github.com/otel-go-launcher/otel-go-launcher/probes/goredis"
	"github.com/otel-go-launcher/otel-go-launcher/probes/gorillamux"
	"github.com/otel-go-launcher/otel-go-launcher/probes/grpc"
	"github.com/otel-go-launcher/otel-go-launcher/probes/hold"
	"github.com/otel-go-launcher/otel-go-launcher/probes/kafkago"
	"github.com/otel-go-launcher/otel-go-launcher/probes/kit"
	"github.com/otel-go-launcher/otel-go-launcher/probes/nethttp"
	"github.com/otel-go-launcher/otel-go-launcher/probes/otelapi"
	"github.com/otel-go-launcher/otel-go-launcher/probes/pgx"
	"github.com/otel-go-launcher/otel-go-launcher/probes/sarama"
	"github.com/otel-go-launcher/otel-go-launcher/probes/wire"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig"
)

// Options configure the probes.
type Options struct {
	RingBufferSize int               // bytes per probe; a power of two, at least a page
	Telemetry      otelconfig.Config // the pipeline, and the sampler and propagators the kernel applies
	// Propagate puts a traceparent naming the client span into the app's outgoing
	// plain HTTP/1 requests and HTTP/2 streams, from the kernel (--propagate).
	Propagate bool
	// Libraries replaces the instrumented libraries (tests add their own); nil: all.
	Libraries []kit.Library
	// Overlap lets the app start before the probes are attached: Instrument returns
	// once the hold (package hold) is in place, and the app runs its own start until
	// its first instrumented call, where it waits for them. Without it, or where the
	// hold cannot go, Instrument returns once they are attached.
	Overlap bool
	// HoldLimit bounds how long the hold may keep the app waiting for the probes
	// (--attach-timeout); 0: no bound.
	HoldLimit time.Duration
}

// Libraries are the instrumented libraries, each configured by its own options.
func Libraries(opts Options) []kit.Library {
	if opts.Libraries != nil {
		return opts.Libraries
	}
	return []kit.Library{
		nethttp.Library(),
		grpc.Library(),
		databasesql.Library(),
		goredis.Library(),
		pgx.Library(),
		kafkago.Library(),
		sarama.Library(),
		otelapi.Library(),
		chi.Library(),
		gorillamux.Library(),
		gin.Library(),
		echo.Library(),
	}
}

// Specs is what every probe needs from a target binary: the specs of every library.
func Specs() []offsets.Spec { return specsOf(Libraries(Options{})) }

func specsOf(libs []kit.Library) []offsets.Spec {
	var specs []offsets.Spec
	for _, l := range libs {
		specs = append(specs, l.Specs...)
	}
	return specs
}

// propagatingClients are the client specs whose calls the socket programs (probes/wire)
// put a traceparent into. An app that has none of them gets no socket programs: loading
// them (the sk_msg program is the largest the verifier sees) and attaching them to the
// app's cgroup would only lengthen its wait at the start gate.
var propagatingClients = []string{nethttp.ClientSpec.Name, grpc.ClientSpec.Name}

// Prepare starts, in the background, what instrumenting involves that needs no target
// (parsing the offsets database and the BPF objects): the launcher calls it first
// thing, so that the work overlaps its own start and the app's time at the start gate
// shrinks. The objects are parsed one at a time, in the order of Libraries (net/http,
// which nearly every Go service has, first), each only while Instrument has not found
// that the app does without it: on a machine of two CPUs, parsing four objects at once
// when the app needs one delayed that one by the others' time. Load parses what it
// needs and Prepare has not.
func Prepare(opts Options) {
	go offsets.EmbeddedDatabase()
	libs := Libraries(opts)
	go func() {
		for i, l := range libs {
			if prepareNeeds(l.Name) {
				l.Object()
			}
			if i == 0 && opts.Propagate && prepareNeeds(wireObject) {
				wire.Prepare()
			}
		}
	}()
}

// wireObject names the socket programs' object among those Instrument needs.
const wireObject = "probes/wire"

// needed holds the names of the objects (libraries, wireObject) Instrument loads, once
// it has resolved the app's functions.
var needed atomic.Pointer[map[string]bool]

// prepareNeeds reports whether Prepare is to parse the object name: every one until
// Instrument knows what the app needs.
func prepareNeeds(name string) bool {
	n := needed.Load()
	return n == nil || (*n)[name]
}

func (o Options) kit() kit.Options {
	return kit.Options{RingBufferSize: o.RingBufferSize, Sampling: o.Telemetry.Sampling, TraceContext: o.Telemetry.TraceContext, Propagate: o.Propagate}
}

// Session is an instrumented app: attached probes feeding a pipeline.
type Session struct {
	// loaded is closed once attach has returned (at once without Overlap): the fields
	// below it are set then.
	loaded  chan struct{}
	loadErr error // attach's: nothing is traced
	// http2 is closed once the socket programs follow HTTP/2 or never will (with
	// Overlap, after loaded): the wire is not closed before.
	http2 chan struct{}

	app     telemetry.App
	cfg     otelconfig.Config
	probes  []kit.Probe
	names   []string // enabled specs
	shared  *kit.Shared
	wire    *wire.Wire    // nil: no propagation
	started chan struct{} // closed once the pipeline exists (or failed)
	pipe    *telemetry.Pipeline
	cancel  context.CancelFunc // stops the readers, which then drain
	readers sync.WaitGroup
	report  chan struct{} // stops the loss reports

	exitedAt atomic.Int64 // CLOCK_MONOTONIC ns the app exited at (AppExited); 0 unknown

	mu        sync.Mutex
	lost      uint64                             // kernel losses reported so far
	reported  map[string]telemetry.ExporterStats // each exporter's failures and drops reported so far
	lostErr   bool                               // a loss counter could not be read: said once
	shutdown  sync.Once
	finished  chan struct{}
	accounted chan struct{} // closed once the final loss report is made
	finishErr error
}

// Instrument analyses the executable at path and attaches every probe that applies to
// process pid. It fails only when no probe could be attached: the error joins each
// probe's *kit.Error. Probes that could not be attached while others were are logged,
// with why. The telemetry pipeline is built after it returns: spans only come once the
// app runs, and they wait in the kernel until then. When ctx ends first, what was
// attached is released and ctx's error returned.
//
// This runs inside the start gate, so the work overlaps: functions are resolved first
// (under a millisecond), then each library with a probe to attach loads its programs
// (the verifier's time) and attaches its uprobes (the kernel sleeps through each
// registration), while DWARF is read.
func Instrument(ctx context.Context, path string, pid int, opts Options) (*Session, error) {
	if opts.Telemetry.Disabled {
		return nil, telemetry.ErrDisabled
	}
	libs := Libraries(opts)
	specs := specsOf(libs)
	bin, err := offsets.Open(path) // headers and Go version only: fast
	if err != nil {
		return nil, err
	}
	rep, err := offsets.AnalyzeFunctions(bin, specs) // < 1 ms: symbols or pclntab
	if err != nil {
		bin.Close()
		return nil, err
	}
	resolved := kit.ReportsOf(rep) // where to attach; rep changes with AddFields
	// What the app needs is known: Prepare parses no other object.
	propagate := opts.Propagate && opts.Telemetry.TraceContext && slices.ContainsFunc(propagatingClients, resolved.Enabled)
	// The socket programs go at the app's own cgroup: where they may not (the host's
	// root), nothing of propagation loads, the clients' writers neither.
	var cgroup *bpf.Cgroup
	if propagate {
		if cgroup, err = bpf.AppCgroup(pid); err != nil {
			slog.Warn(fmt.Sprintf("outgoing requests will not carry traceparent: %v (client spans are still made)", err))
			propagate = false
		}
	}
	need := map[string]bool{wireObject: propagate}
	for _, l := range libs {
		need[l.Name] = l.Used(resolved)
	}
	needed.Store(&need)
	var errs, unused []error // unused: probes of what the program does not use, said at debug level
	for _, p := range rep.Probes {
		if !p.Enabled {
			err := &kit.Error{Probe: p.Name, Stage: kit.StageResolve, Err: errors.New(p.Reason)}
			if p.Unused() {
				unused = append(unused, err)
			} else {
				errs = append(errs, err)
			}
		}
	}
	if !slices.ContainsFunc(libs, func(l kit.Library) bool { return l.Used(resolved) }) { // nothing to trace: do not hold the app for DWARF
		bin.Close()
		if cgroup != nil {
			cgroup.Close()
		}
		return nil, errors.Join(append(errs, unused...)...)
	}

	a := analysis{path: path, pid: pid, opts: opts, libs: libs, specs: specs, bin: bin, rep: rep, resolved: resolved,
		cgroup: cgroup, propagate: propagate, errs: errs, unused: unused}
	s := newSession(path, pid, bin.GoVersion, opts)
	if opts.Overlap {
		core, http2, err := holdPoints(a)
		var h *hold.Hold
		if err == nil {
			h, err = hold.Attach(path, pid, core, http2)
		}
		if err == nil {
			a.http2Later = len(http2) > 0
			go s.attachHeld(ctx, a, h)
			return s, nil
		}
		slog.Debug("the app waits at the start gate until the probes are attached: " + err.Error())
	}
	defer close(s.loaded)
	defer close(s.http2)
	if err := s.attach(ctx, a); err != nil {
		return nil, err
	}
	return s, nil
}

// analysis is what Instrument found of the app before loading anything.
type analysis struct {
	path      string
	pid       int
	opts      Options
	libs      []kit.Library
	specs     []offsets.Spec
	bin       *offsets.Binary // closed by attach
	rep       *offsets.Report
	resolved  kit.Reports
	cgroup    *bpf.Cgroup // the app's, for the socket programs; nil without propagation
	propagate bool
	// http2Later: attach does not wait for the socket programs to follow HTTP/2; the
	// app's HTTP/2 connection set-up is held until attachHeld has them do it.
	http2Later bool
	errs       []error // probes that cannot attach, to be said
	unused     []error // probes of what the program does not use
}

func newSession(path string, pid int, goVersion string, opts Options) *Session {
	return &Session{app: telemetry.App{Path: path, PID: pid, GoVersion: goVersion}, cfg: opts.Telemetry, loaded: make(chan struct{}), http2: make(chan struct{}),
		started: make(chan struct{}), report: make(chan struct{}), reported: map[string]telemetry.ExporterStats{}, finished: make(chan struct{}), accounted: make(chan struct{})}
}

// attach loads and attaches the probes a found, and starts the pipeline. It fails only
// when no probe could be attached.
func (s *Session) attach(ctx context.Context, a analysis) error {
	path, pid, opts, libs, specs, bin, rep, resolved := a.path, a.pid, a.opts, a.libs, a.specs, a.bin, a.rep, a.resolved
	cgroup, propagate, errs, unused := a.cgroup, a.propagate, a.errs, a.unused
	fields := make(chan error, 1)
	go func() {
		fields <- rep.AddFields(bin, specs)
		bin.Close() // only once nothing reads it
	}()
	// Where the app's context types keep their parent, for the clients' context walks:
	// read beside the fields, from a mapping of its own (1-2 ms).
	contexts := make(chan contextParents, 1)
	if slices.ContainsFunc(libs, func(l kit.Library) bool { return looksByContext(l, resolved) }) {
		go func() { contexts <- readContextParents(path) }()
	} else {
		contexts <- contextParents{}
	}

	t := kit.Target{Path: path, PID: pid, GoVersion: bin.GoVersion, Modules: bin.Modules}
	env := kit.Env{Options: opts.kit(), Shared: kit.NewShared()}
	env.Propagate = propagate
	type attached struct {
		lib   int // index in libs
		probe kit.Probe
		err   error
	}
	results := make(chan attached, len(libs))
	// The socket programs, for the clients' trace context, attach alongside.
	type wireResult struct {
		w   *wire.Wire
		err error
	}
	wired := make(chan wireResult, 1)
	if propagate {
		go func() {
			w, err := wire.AttachTo(cgroup, pid, env.Shared, !a.http2Later)
			cgroup.Close()
			if err == nil && !a.http2Later {
				if err = w.FollowHTTP2(); err != nil {
					w.Close()
					w = nil
				}
			}
			wired <- wireResult{w, err}
		}()
	} else {
		wired <- wireResult{}
	}
	loading := 0
	for i := range libs {
		lib := &libs[i]
		if !lib.Used(resolved) {
			continue
		}
		loading++
		go func() {
			p, err := lib.Load(ctx, t, resolved, env)
			if err == nil {
				if err = p.Attach(ctx); err != nil {
					go p.Close() // detaching waits out a kernel grace period: not in the gate
					p = nil
				}
			}
			results <- attached{i, p, err}
		}()
	}
	// abandon releases everything once ctx has ended, in the background, as the
	// work still under way ends.
	abandon := func(probes []kit.Probe, pending int) {
		go func() {
			if r := <-wired; r.w != nil {
				r.w.Close()
			}
			for _, p := range probes {
				p.Close()
			}
			for ; pending > 0; pending-- {
				if r := <-results; r.probe != nil {
					r.probe.Close()
				}
			}
			env.Shared.Close()
		}()
	}
	byLib := make([]kit.Probe, len(libs))
	var probes []kit.Probe // attached so far
	for pending := loading; pending > 0; pending-- {
		select {
		case r := <-results:
			if r.err != nil {
				errs = append(errs, r.err)
				continue
			}
			byLib[r.lib] = r.probe
			probes = append(probes, r.probe)
		case <-ctx.Done():
			abandon(probes, pending)
			return fmt.Errorf("instrumenting %s: %w", path, ctx.Err())
		}
	}
	// In library order, whatever order they attached in.
	probes = probes[:0]
	var loaded []*kit.Library
	for i, p := range byLib {
		if p != nil {
			probes, loaded = append(probes, p), append(loaded, &libs[i])
		}
	}
	var w *wire.Wire
	select {
	case r := <-wired:
		if r.err != nil {
			slog.Warn(fmt.Sprintf("outgoing requests will not carry traceparent: %v (client spans are still made)", r.err))
		}
		w = r.w
		wired <- wireResult{} // for abandon
	case <-ctx.Done():
		abandon(probes, 0)
		return fmt.Errorf("instrumenting %s: %w", path, ctx.Err())
	}
	env.Shared.SetPropagating(w != nil)
	slog.Debug("socket programs", "attached", w != nil, "propagate", env.Propagate)
	var fieldErr error
	select {
	case fieldErr = <-fields:
	case <-ctx.Done():
		abandon(probes, 0)
		if w != nil {
			go w.Close()
		}
		return fmt.Errorf("instrumenting %s: %w", path, ctx.Err())
	}

	var cps contextParents
	select {
	case cps = <-contexts:
	case <-ctx.Done():
		abandon(probes, 0)
		if w != nil {
			go w.Close()
		}
		return fmt.Errorf("instrumenting %s: %w", path, ctx.Err())
	}
	if cps.err != nil {
		slog.Debug("context types not read: only parents in their first word are followed", "err", cps.err)
	}
	env.Shared.SetContextParents(cps.list)

	// Fields are known: each probe enables the specs they allow.
	reps := kit.ReportsOf(rep)
	var inflight kit.Lookup
	for i, lib := range loaded {
		if fieldErr != nil {
			errs = append(errs, &kit.Error{Probe: lib.SpecNames(), Stage: kit.StageFields, Err: fieldErr})
			go probes[i].Close()
			continue
		}
		for _, s := range lib.Specs {
			if resolved.Enabled(s.Name) && !reps.Enabled(s.Name) { // fields are missing
				errs = append(errs, &kit.Error{Probe: s.Name, Stage: kit.StageFields, Err: errors.New(reps[s.Name].Reason)})
			}
		}
		for spec, how := range lib.Clients {
			if reps.Enabled(spec) {
				inflight |= how
			}
		}
	}
	s.shared = env.Shared
	if fieldErr == nil {
		for _, p := range probes {
			if err := p.Configure(reps, inflight); err != nil {
				errs = append(errs, err)
				go p.Close() // detaching waits out a kernel grace period: not in the gate
				continue
			}
			s.probes = append(s.probes, p)
			s.names = append(s.names, p.Enabled()...)
		}
	}
	if len(s.probes) == 0 {
		go func() {
			if w != nil {
				w.Close()
			}
			env.Shared.Close()
		}()
		return errors.Join(errs...)
	}
	if w != nil {
		if err := w.Enable(); err != nil {
			slog.Warn(fmt.Sprintf("outgoing requests will not carry traceparent: %v (client spans are still made)", err))
			go w.Close()
		} else {
			s.wire = w
		}
	}
	// A probe the program could use but that is not attached is said, one line per
	// cause (grpc.server, grpc.client: google.golang.org/grpc v1.39.0 is older than
	// ...); one for what the program does not use is not news.
	for _, err := range sameCause(errs) {
		slog.Warn("probe not attached: " + err.Error())
	}
	for _, err := range unused {
		slog.Debug("probe not attached: " + err.Error())
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	if len(cps.list) > 0 && !fillContextParentsNow(env.Shared, cps, pid) {
		go fillContextParents(runCtx, env.Shared, cps, pid)
	}
	go s.start(runCtx)
	slog.Debug("probes attached", "probes", strings.Join(s.names, ","), "pid", pid, "offsets", offsetSources(rep))
	return nil
}

// connectFunc is where the app's TCP connections are made (net.Dial, the HTTP and
// gRPC clients' dialers): with propagation, the hold stops the app there too, so that
// no connection is made before the socket programs can see it.
const connectFunc = "net.(*netFD).connect"

// holdPoints are where the hold goes, as ELF file offsets, in two groups. core: the
// first instructions of the functions the probes a found instrument, and, with
// propagation, of connectFunc, so that no connection is made before the socket
// programs can see it. http2: with propagation, the libraries' HTTP/2 connection
// set-up (kit.Library.PrefaceWriters), held until the socket programs follow HTTP/2;
// nil when a library's is not found (then core waits for that too). It refuses where
// an entry probe is at its function's first instruction (a function without a stack
// check): a call held there would have passed it.
func holdPoints(a analysis) (core, http2 []uint64, err error) {
	for _, p := range a.rep.Probes {
		if !p.Enabled {
			continue
		}
		for _, u := range p.Uprobes {
			if u.EntryProbe != nil && *u.EntryProbe == u.Offset {
				return nil, nil, fmt.Errorf("%s has no stack check: its entry probe is at its first instruction, where the hold would go", u.Symbol)
			}
			if !slices.Contains(core, u.Offset) {
				core = append(core, u.Offset)
			}
		}
	}
	if !a.propagate {
		return core, nil, nil
	}
	var writers []*kit.Library // enabled libraries with HTTP/2 connections of their own
	names := []string{connectFunc}
	for i := range a.libs {
		l := &a.libs[i]
		if len(l.PrefaceWriters) > 0 && l.Used(a.resolved) {
			writers = append(writers, l)
			names = append(names, l.PrefaceWriters...)
		}
	}
	fns, err := a.bin.Functions(names...)
	if err != nil {
		return nil, nil, fmt.Errorf("find %s: %w", connectFunc, err)
	}
	connect, ok := fns[connectFunc]
	if !ok {
		return nil, nil, fmt.Errorf("%s not in the binary: connections could be made before the socket programs see them", connectFunc)
	}
	core = append(core, connect.Offset)
	for _, l := range writers {
		found := false
		for _, name := range l.PrefaceWriters {
			if fn, ok := fns[name]; ok && !slices.Contains(core, fn.Offset) && !slices.Contains(http2, fn.Offset) {
				http2, found = append(http2, fn.Offset), true
			}
		}
		if !found {
			slog.Debug(l.Name + ": no HTTP/2 connection set-up found: the app's calls wait for the socket programs to follow HTTP/2")
			return core, nil, nil
		}
	}
	return core, http2, nil
}

// attachHeld is attach with the app let go: the hold h stops it at its first
// instrumented call until the probes are in place (or could not be, or HoldLimit
// has passed), then lets it go on. With a.http2Later, its HTTP/2 connection set-up
// stays held, and the socket programs follow HTTP/2 only once the app reaches it
// (followHTTP2): an app that opens no plaintext HTTP/2 connection never waits for the
// verification of their largest program.
func (s *Session) attachHeld(ctx context.Context, a analysis, h *hold.Hold) {
	var limit <-chan time.Time
	if a.opts.HoldLimit > 0 {
		t := time.NewTimer(a.opts.HoldLimit)
		defer t.Stop()
		limit = t.C
	}
	done := make(chan error, 1)
	go func() { done <- s.attach(ctx, a) }()
	var err error
	select {
	case err = <-done:
	case <-limit:
		s.letGo(h, a)
		err = <-done
	}
	http2 := err == nil && a.http2Later && s.wire != nil
	if http2 {
		continued, rerr := h.ReleaseCore()
		logRelease("core", continued, rerr)
	} else {
		continued, rerr := h.Release()
		logRelease("all", continued, rerr)
		close(s.http2)
	}
	s.loadErr = err
	close(s.loaded)
	if err != nil && ctx.Err() == nil {
		slog.Warn(fmt.Sprintf("not tracing %s: %s; the app runs without tracing", a.path, strings.ReplaceAll(err.Error(), "\n", "; ")))
	}
	if http2 {
		s.followHTTP2(ctx, a, h)
	}
}

// followHTTP2 has the socket programs follow HTTP/2 once the app reaches its HTTP/2
// connection set-up, where the hold stopped it, then lets it go on; or lets it go when
// ctx ends (the app exited).
func (s *Session) followHTTP2(ctx context.Context, a analysis, h *hold.Hold) {
	defer close(s.http2)
	select {
	case <-h.Later():
	case <-ctx.Done():
		h.Release()
		return
	}
	followed := make(chan error, 1)
	go func() { followed <- s.wire.FollowHTTP2() }()
	var limit <-chan time.Time
	if a.opts.HoldLimit > 0 {
		t := time.NewTimer(a.opts.HoldLimit)
		defer t.Stop()
		limit = t.C
	}
	var err error
	select {
	case err = <-followed:
		continued, rerr := h.Release()
		logRelease("HTTP/2", continued, rerr)
	case <-limit:
		s.letGo(h, a)
		err = <-followed
	}
	if err != nil && ctx.Err() == nil {
		slog.Warn(fmt.Sprintf("outgoing HTTP/2 requests will not carry traceparent: %v (client spans are still made)", err))
	}
}

// letGo releases the hold after --attach-timeout, saying so.
func (s *Session) letGo(h *hold.Hold, a analysis) {
	continued, err := h.Release()
	logRelease("all, at --attach-timeout", continued, err)
	slog.Warn(fmt.Sprintf("%s let go after --attach-timeout (%s) with its probes still attaching: its calls until they are attached are not traced", a.path, a.opts.HoldLimit))
}

func logRelease(what string, continued bool, err error) {
	if err != nil {
		slog.Warn(err.Error())
	}
	slog.Debug("hold released", "points", what, "continued", continued)
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

// Loaded is closed once the probes are attached, or could not be: at once unless
// Options.Overlap let the app go before.
func (s *Session) Loaded() <-chan struct{} { return s.loaded }

// Probes names the specs the session traces with.
func (s *Session) Probes() []string {
	<-s.loaded
	return slices.Clone(s.names)
}

// start builds the pipeline and starts delivering spans. Without a pipeline, the
// probes are detached: tracing is off, said once.
func (s *Session) start(ctx context.Context) {
	defer close(s.started)
	pipe, err := telemetry.New(ctx, s.app, s.cfg)
	if err != nil {
		slog.Warn(fmt.Sprintf("not tracing %s: %v", s.app.Path, err))
		for _, p := range s.probes {
			p.Detach()
		}
		return
	}
	s.pipe = pipe
	for _, p := range s.probes {
		s.readers.Add(1)
		go func(p kit.Probe) {
			defer s.readers.Done()
			p.Run(ctx, pipe.Emit)
		}(p)
	}
	go s.reportLoss()
}

// lossInterval is how often lost spans are counted and, if any, reported.
const lossInterval = 10 * time.Second

func (s *Session) reportLoss() {
	t := time.NewTicker(lossInterval)
	defer t.Stop()
	for {
		select {
		case <-s.report:
			return
		case <-t.C:
			s.logLoss("in the last "+lossInterval.String(), false)
		}
	}
}

// logLoss says how many spans were dropped since the last report, and where: every
// span the probes made is exported, or counted here.
func (s *Session) logLoss(when string, final bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var kernel uint64
	for _, p := range s.probes {
		n, err := p.Lost()
		if err != nil && !s.lostErr {
			slog.Warn(err.Error())
			s.lostErr = true
		}
		kernel += n
	}
	var parts []string
	total := uint64(0)
	if kernel > s.lost {
		parts = append(parts, fmt.Sprintf("%d in the kernel (its ring buffer was full: the launcher could not read it in time; --ring-buffer)", kernel-s.lost))
		total += kernel - s.lost
		s.lost = kernel
	}
	if s.pipe != nil {
		for _, st := range s.pipe.Stats() {
			was := s.reported[st.Exporter]
			if n := st.Dropped - was.Dropped; n > 0 {
				parts = append(parts, fmt.Sprintf("%d with the queue to %s full (%d spans, OTEL_BSP_MAX_QUEUE_SIZE or --max-queue: the collector did not keep up)", n, st.Exporter, s.cfg.Batch.MaxQueueSize))
				total += n
			}
			// At exit, why, once: an export still being retried has said nothing yet,
			// and a failed one's error may have been held back (said once per 10 s).
			lastErr, unexported := "", st.Unexported()
			if final {
				lastErr = st.LastError
			}
			if n := st.Failed - was.Failed; n > 0 {
				why := "collector down, slow or refusing"
				if lastErr != "" && unexported == 0 {
					why += "; the last export error: " + lastErr
				}
				parts = append(parts, fmt.Sprintf("%d in failed exports to %s (%s)", n, st.Exporter, why))
				total += n
			}
			if n := unexported; final && n > 0 {
				part := fmt.Sprintf("%d not exported to %s within --flush-timeout", n, st.Exporter)
				if lastErr != "" {
					part += " (the last export error: " + lastErr + ")"
				}
				parts = append(parts, part)
				total += n
			}
			s.reported[st.Exporter] = st
		}
	}
	if total > 0 {
		slog.Warn(fmt.Sprintf("%d spans dropped %s: %s", total, when, strings.Join(parts, ", ")))
	}
}

// Programs lists every attached BPF program (for run counts).
func (s *Session) Programs() []*ebpf.Program {
	<-s.loaded
	var progs []*ebpf.Program
	for _, p := range s.probes {
		progs = append(progs, p.Programs()...)
	}
	return progs
}

// ForceFlush exports the spans made so far, within ctx: those waiting in the kernel
// are read first.
func (s *Session) ForceFlush(ctx context.Context) error {
	if !ready(s.loaded, ctx) {
		return ctx.Err()
	}
	if s.loadErr != nil {
		return nil
	}
	select {
	case <-s.started:
	case <-ctx.Done():
		return ctx.Err()
	}
	if s.pipe == nil {
		return nil
	}
	for _, p := range s.probes {
		for p.Pending() > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Millisecond):
			}
		}
	}
	return s.pipe.ForceFlush(ctx)
}

// Shutdown detaches the probes, delivers the spans they still hold and flushes the
// pipeline, within ctx, then says how many spans were dropped in all. Later calls wait
// for the first (within their own ctx) and return its result.
func (s *Session) Shutdown(ctx context.Context) error {
	s.shutdown.Do(func() {
		go func() {
			defer close(s.finished)
			s.finishErr = s.stop(ctx)
		}()
	})
	select {
	case <-s.finished:
		return s.finishErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// AppExited says when the app exited, on CLOCK_MONOTONIC, as the launcher saw it reaped:
// the spans still open when Shutdown detaches the probes (a watch stream, a long poll,
// a handler that never returned) end then, marked app_exit. Without it they end when
// the probes are detached, marked launcher_detach.
func (s *Session) AppExited(monotonic time.Duration) { s.exitedAt.Store(int64(monotonic)) }

// Accounted is closed once Shutdown's final loss report is made: after a Shutdown that
// ran out of time, a caller that wants every span said exported or dropped waits for
// it (what is left past the deadline is bounded: the readers' last second, a flush
// that ends at once).
func (s *Session) Accounted() <-chan struct{} { return s.accounted }

func (s *Session) stop(ctx context.Context) error {
	if !ready(s.loaded, ctx) {
		close(s.accounted)
		return fmt.Errorf("the probes were still attaching: %w", ctx.Err())
	}
	if s.loadErr != nil { // nothing attached: nothing to flush
		close(s.accounted)
		return nil
	}
	defer close(s.report)
	begin := time.Now()
	var errs []error
	end, why := uint64(s.exitedAt.Load()), telemetry.EndAppExit
	detached := make(chan error, 1)
	if end != 0 {
		// The app is gone: its probes, bound to its process, fire no more, and all it
		// made is in the ring buffers and maps already. The kernel detaches them in
		// the background (a grace period, 25-60 ms a link here, not waited for), or
		// else beside the flush, not before it.
		go func() { detached <- s.detach(kit.Probe.Release) }()
	} else {
		// The app may still run: no span may come once the maps are swept.
		detached <- s.detach(kit.Probe.Detach)
		end, why = monotonicNow(), telemetry.EndDetach
	}
	s.cancel() // the readers drain the ring buffers, and end
	if !ready(s.started, ctx) {
		// The pipeline is still being built (it never takes this long): what the
		// probes hold is lost with the launcher.
		errs = append(errs, fmt.Errorf("the telemetry pipeline was not ready within --flush-timeout: the probes' spans, and their metrics, not exported: %w", ctx.Err()))
		close(s.accounted)
		return errors.Join(errs...)
	}
	// The readers go through what the ring buffers hold (emitting never waits for an
	// exporter), then the pipeline exports what it holds.
	drained := make(chan struct{})
	go func() { s.readers.Wait(); close(drained) }()
	ready(drained, ctx)
	if s.pipe != nil {
		// Spans begun and never ended - what the maps still hold once the probes are
		// detached - end now, before the last export. Read even if the readers have not
		// drained: a span in a ring buffer is no longer in a map.
		s.endInFlight(end, why)
		// Not wrapped: the pipeline's errors name the signal each is about (spans or
		// metrics), which a prefix here could only contradict.
		if err := s.pipe.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	s.logLoss("in all", true)
	close(s.accounted)
	slog.Debug("telemetry flushed", "took", time.Since(begin))
	if err := <-detached; err != nil {
		errs = append(errs, err)
	}
	slog.Debug("probes detached", "took", time.Since(begin))
	if s.wire != nil {
		s.logWire()
		select {
		case <-s.http2:
			if err := s.wire.Close(); err != nil {
				errs = append(errs, fmt.Errorf("detach the socket programs: %w", err))
			}
		default:
			// HTTP/2's program is still being verified, which Close would wait
			// for: the wire goes with the launcher's exit, which ends the verifier.
			go s.wire.Close()
		}
	}
	for _, p := range s.probes {
		if err := p.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.shared.Close(); err != nil {
		errs = append(errs, err)
	}
	slog.Debug("probes closed", "took", time.Since(begin))
	return errors.Join(errs...)
}

// detach detaches every probe with how (Detach, Release), all at once: a detach may
// wait for a kernel grace period, and they overlap.
func (s *Session) detach(how func(kit.Probe) error) error {
	errs := make([]error, len(s.probes))
	var wg sync.WaitGroup
	for i, p := range s.probes {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = how(p) }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// endInFlight ends the spans still in flight in the probes' maps at end, marked why
// (the app's exit, or the probes' detach), hands them to the pipeline, and says how
// many, by probe, in one line.
func (s *Session) endInFlight(end uint64, why telemetry.EndReason) {
	begin := time.Now()
	ended := map[string]int{}
	total := 0
	for _, p := range s.probes {
		n, err := p.EndInFlight(end, why, s.pipe.Emit)
		for spec, k := range n {
			ended[spec] += k
			total += k
		}
		if err != nil {
			slog.Warn(fmt.Sprintf("spans still open when the probes were detached: %v; those not read are not exported", err))
		}
	}
	slog.Debug("spans in flight ended", "spans", total, "reason", why, "took", time.Since(begin))
	if total == 0 {
		return
	}
	specs := slices.Sorted(maps.Keys(ended))
	parts := make([]string, len(specs))
	for i, spec := range specs {
		parts[i] = fmt.Sprintf("%s %d", spec, ended[spec])
	}
	when := "at the app's exit"
	if why != telemetry.EndAppExit {
		when = "when the probes were detached"
	}
	slog.Info(fmt.Sprintf("%d spans were still open %s (%s): ended there, marked %s=%s", total, when, strings.Join(parts, ", "), telemetry.EndReasonKey, why))
}

// monotonicNow is CLOCK_MONOTONIC in nanoseconds: the probes' clock.
func monotonicNow() uint64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// logWire says what the socket programs did: requests that went out without their
// client span's context (an HTTP/2 header block that could not grow, a header the app
// wrote that could not be replaced) are counted, and said at exit, never silent.
func (s *Session) logWire() {
	c, err := s.wire.Counts()
	if err != nil {
		slog.Warn(err.Error())
		return
	}
	slog.Debug("outgoing traceparent", "http1", c.HTTP1Inserted, "http2", c.H2Inserted, "http1 replaced", c.HTTP1Replaced, "http1 tracestate", c.HTTP1Tracestate)
	for _, line := range c.Report() { // the trace loses a hop there: said as a warning
		slog.Warn(line)
	}
}

// WireCounts is what the socket programs did so far; false without propagation.
func (s *Session) WireCounts() (wire.Counts, bool) {
	<-s.loaded
	if s.wire == nil {
		return wire.Counts{}, false
	}
	c, err := s.wire.Counts()
	return c, err == nil
}

// ready waits for c to close, within ctx; a closed c wins over an ended ctx.
func ready(c <-chan struct{}, ctx context.Context) bool {
	select {
	case <-c:
		return true
	default:
	}
	select {
	case <-c:
		return true
	case <-ctx.Done():
		return false
	}
}

// CheckHost checks, for `launch doctor`, what each library's probe needs of this
// host: it loads every program, attaches what can be attached without an app, and
// detaches.
func CheckHost(ctx context.Context, opts Options) []kit.Finding {
	env := kit.Env{Options: opts.kit()}
	var fs []kit.Finding
	for _, l := range Libraries(opts) {
		fs = append(fs, l.Check(ctx, env)...)
	}
	return append(fs, checkHold(), wire.Check(), wire.Limits, wire.OwnLimits)
}

// checkHold says whether the app can start while the probes load (Options.Overlap).
func checkHold() kit.Finding {
	if err := hold.Check(); err != nil {
		return kit.Finding{Status: kit.Warn, Text: fmt.Sprintf("start: %v: the app waits at the start gate until the probes are attached", err)}
	}
	return kit.Finding{Status: kit.OK, Text: "start: the app starts while the probes load; its first instrumented call (or connection, with propagation) waits for them: the kernel stops it (SIGSTOP) and the launcher continues it (SIGCONT) once they are attached, or after --attach-timeout; --gate holds it at the start gate instead"}
}

// sameCause joins the probe errors with one cause into one ("grpc.server, grpc.client:
// google.golang.org/grpc v1.39.0 is older than ..."), in order of first appearance.
func sameCause(errs []error) []error {
	var out []error
	byCause := map[string]*kit.Error{}
	for _, err := range errs {
		var ke *kit.Error
		if !errors.As(err, &ke) {
			out = append(out, err)
			continue
		}
		key := fmt.Sprint(ke.Stage) + "\x00" + ke.Err.Error()
		if first, ok := byCause[key]; ok {
			first.Probe += ", " + ke.Probe
			continue
		}
		joined := &kit.Error{Probe: ke.Probe, Stage: ke.Stage, Err: ke.Err}
		byCause[key] = joined
		out = append(out, joined)
	}
	return out
}

// looksByContext reports whether lib has a client spec the app resolved that looks for
// its parent by the call's context.
func looksByContext(lib kit.Library, resolved kit.Reports) bool {
	for spec, how := range lib.Clients {
		if how&kit.ByContext != 0 && resolved.Enabled(spec) {
			return true
		}
	}
	return false
}

// contextParents are the app's context types whose parent is not their first word, and
// where the app has them.
type contextParents struct {
	list []offsets.ContextParent
	rel  offsets.Relocation
	err  error
}

func readContextParents(path string) contextParents {
	b, err := offsets.Open(path)
	if err != nil {
		return contextParents{err: err}
	}
	defer b.Close()
	list, err := b.ContextParents()
	return contextParents{list: list, rel: b.Relocation(), err: err}
}

// fillContextParentsNow fills the probes' context_parents map for process pid if the
// app's addresses are known before it runs (it is not position-independent), and says
// whether it did.
func fillContextParentsNow(shared *kit.Shared, cps contextParents, pid int) bool {
	bias, err := cps.rel.Bias(pid)
	if err != nil {
		return false
	}
	if err := shared.FillContextParents(bias); err != nil {
		slog.Warn(fmt.Sprintf("context types keeping their parent elsewhere than first will not be followed: %v", err))
		return true
	}
	names := make([]string, len(cps.list))
	for i, p := range cps.list {
		names[i] = p.Type
	}
	slog.Debug("context types with their parent elsewhere than first", "types", strings.Join(names, ","))
	return true
}

// fillContextParents fills the map for a position-independent app once it runs its exec
// (the gate opens when Instrument returns), looking every 2 ms: context walks of calls
// made before that read such types' first word.
func fillContextParents(ctx context.Context, shared *kit.Shared, cps contextParents, pid int) {
	for deadline := time.Now().Add(30 * time.Second); !fillContextParentsNow(shared, cps, pid); {
		if time.Now().After(deadline) {
			slog.Debug("context types not followed: the app's load address is unknown")
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Millisecond):
		}
	}
}
