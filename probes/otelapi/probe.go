package otelapi

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"reflect"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"

	"github.com/otel-go-launcher/otel-go-launcher/offsets"
	"github.com/otel-go-launcher/otel-go-launcher/probes/kit"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// scope is the instrumentation scope of a span whose tracer's record was lost: named
// after this package. The others have their tracer's (scopes).
var scope = telemetry.NewScope(reflect.TypeFor[Probe]().PkgPath())

// Library is the OpenTelemetry API's global tracer for the probe kit.
func Library() kit.Library {
	lib := kit.Library{
		Name:   "OpenTelemetry API",
		Specs:  Specs,
		Scope:  scope,
		Object: objectSpec,
		// By the context the app starts a span with, alone: a span started from
		// context.Background() is a root, as the SDK would make it.
		Clients: map[string]kit.Lookup{Spec.Name: kit.ByContext},
	}
	lib.Load = func(ctx context.Context, t kit.Target, reps kit.Reports, env kit.Env) (kit.Probe, error) {
		return load(ctx, &lib, t, reps, env)
	}
	lib.Check = func(ctx context.Context, env kit.Env) []kit.Finding {
		return kit.CheckFindings(&lib,
			"OpenTelemetry API: spans of apps that set no SDK (go.opentelemetry.io/otel "+MinVersion+" on) are exported; "+
				"an app that sets its own SDK exports them itself, and older releases have nothing to probe",
			"OpenTelemetry API: read of each call: its first 16 attributes (keys up to 64 bytes, strings cut at 128, "+
				"slices' first 128 bytes - 16 numbers, 128 bools - and first 4 strings cut at 32; the Value slices and maps "+
				"of otel v1.41.0 on not read), names and messages cut at 128 bytes, the first 4 links of WithLinks (not their "+
				"attributes), AddLink's link and attributes; what is not read is counted as dropped. An exception's message "+
				"other than errors.New's and fmt.Errorf's is not read")
	}
	return lib
}

// objectSpec is the embedded BPF object, parsed once.
var objectSpec = sync.OnceValues(loadOtelapi)

// Probe is the OpenTelemetry API bridge of one app.
type Probe struct {
	*kit.Object
	event otelapiApiEvent // a record cut short, completed (decode runs in one goroutine)
	// Link addresses of what the C program tells apart - type_* variables, and the
	// option types and closures of option_addrs (OPT_*) - and of newSpan, from which
	// it learns a position-independent app's bias.
	types   map[string]uint64
	options map[uint64]uint32
	newSpan uint64
	std     map[string]uint64 // selfMeasured's variables

	spans *assembly
	// typeNames names errors' types by their link addresses (the C program's).
	typeNames *offsets.TypeNames
}

// sdkModule is the OpenTelemetry SDK's module.
const sdkModule = "go.opentelemetry.io/otel/sdk"

// typeVariables are the C program's type_* variables, by the struct whose pointer
// type each is.
var typeVariables = map[string]string{
	valueCtxType:    "type_context_valueCtx",
	errorStringType: "type_errors_errorString",
	wrapErrorType:   "type_fmt_wrapError",
}

// What an address of option_addrs is (the C program's OPT_*).
const (
	optAttributes = 1
	optTimestamp  = 2
	optKind       = 3
	optVersion    = 4
	optSchema     = 5
	optNewRoot    = 6
	optLinks      = 7
)

var _ kit.Probe = (*Probe)(nil)

func load(ctx context.Context, lib *kit.Library, t kit.Target, reps kit.Reports, env kit.Env) (kit.Probe, error) {
	p := &Probe{spans: newAssembly(maxPending)}
	spec := kit.ObjectSpec{
		Library: lib,
		Uprobes: []kit.Uprobe{
			{Spec: Spec.Name, Symbol: symNewSpan, Entry: "new_span_entry", Return: "new_span_return"},
			{Spec: Spec.Name, Symbol: symSpanEnd, Entry: "span_end"},
			{Spec: Spec.Name, Symbol: symSetAttributes, Entry: "set_attributes"},
			{Spec: Spec.Name, Symbol: symSetStatus, Entry: "set_status"},
			{Spec: Spec.Name, Symbol: symSetName, Entry: "set_name"},
			{Spec: Spec.Name, Symbol: symRecordError, Entry: "record_error"},
			{Spec: Spec.Name, Symbol: symAddEvent, Entry: "add_event"},
			{Spec: Spec.Name, Symbol: symAddLink, Entry: "add_link"},
		},
		Enable: map[string]string{Spec.Name: "otelapi_enabled"},
		Decode: p.decode,
	}
	var err error
	if p.Object, err = kit.LoadObject(ctx, t, reps, env, spec); err != nil {
		return nil, err
	}
	// An app that sets its SDK starts its spans there, once it has: said once, as
	// what the launcher cannot bridge. The SDK linked is a sign, not a proof.
	if v := t.Modules.Version(sdkModule); v != "" {
		slog.Warn(fmt.Sprintf("the app links the OpenTelemetry SDK (%s %s): the spans it starts once it sets its own tracer provider go to its exporter, not the launcher's; those started before, or with none set, are exported", sdkModule, v))
	}
	// Without them, spans have no kind, attributes, scope version or error message:
	// not worth failing for.
	p.types, p.options, p.newSpan, p.std, _ = findAddresses(t.Path)
	p.typeNames = offsets.NewTypeNames(t.Path)
	return p, nil
}

// findAddresses reads the binary for the link addresses of the types and closures the
// C program tells apart, and of newSpan; and the fields it measures itself.
func findAddresses(path string) (types map[string]uint64, options map[uint64]uint32, newSpanAddr uint64, std map[string]uint64, err error) {
	b, err := offsets.Open(path)
	if err != nil {
		return nil, nil, 0, nil, err
	}
	defer b.Close()
	fns, err0 := b.Functions(symNewSpan)
	newSpanAddr = fns[symNewSpan].Addr
	types, err1 := b.PointerTypeAddrs(slices.Collect(maps.Keys(typeVariables)))
	options = map[uint64]uint32{}
	named, err2 := b.ItabTypeAddrs([]string{attributeOption, timestampOption})
	if a, ok := named[attributeOption]; ok {
		options[a] = optAttributes
	}
	if a, ok := named[timestampOption]; ok {
		options[a] = optTimestamp
	}
	closureFns, err3 := b.FunctionsMatching(closures)
	for name, addr := range closureFns {
		switch {
		case kindOption.MatchString(name):
			options[addr] = optKind
		case versionOption.MatchString(name):
			options[addr] = optVersion
		case schemaOption.MatchString(name):
			options[addr] = optSchema
		case newRootOption.MatchString(name):
			options[addr] = optNewRoot
		case linksOption.MatchString(name):
			options[addr] = optLinks
		}
	}
	var refs []offsets.FieldRef
	for r := range selfMeasured {
		refs = append(refs, r)
	}
	std = map[string]uint64{}
	found, err4 := b.TypeInfoFieldOffsets(refs)
	for r, off := range found {
		std[selfMeasured[r]] = off
	}
	return types, options, newSpanAddr, std, errors.Join(err0, err1, err2, err3, err4)
}

// Configure also sets the link addresses of the types and closures the C program tells
// apart, and of newSpan, whence it learns where the app is loaded: nothing waits for a
// position-independent app to run.
func (p *Probe) Configure(reps kit.Reports, inflight kit.Lookup) error {
	vars := map[string]uint64{"new_span_link": p.newSpan}
	for _, u := range reps[Spec.Name].Uprobes {
		if u.Symbol == symAddLink && u.EntryProbe != nil && *u.EntryProbe != u.Offset {
			vars["add_link_framed"] = 1
		}
	}
	for name, off := range p.std {
		vars[name] = off
	}
	for st, addr := range p.types {
		vars[typeVariables[st]] = addr
	}
	if m := p.Map("option_addrs"); m != nil {
		for addr, what := range p.options {
			if err := m.Update(addr, what, ebpf.UpdateAny); err != nil {
				return fmt.Errorf("otelapi: set option_addrs: %w", err)
			}
		}
	}
	return p.ConfigureWith(reps, inflight, vars)
}

// Close also closes the binary typeNames reads.
func (p *Probe) Close() error {
	p.typeNames.Close()
	return p.Object.Close()
}

// Run also sweeps, every sweepEvery, the contexts of spans open for longer than that
// (assembly.stale): reading the app, never writing it.
func (p *Probe) Run(ctx context.Context, emit func(*telemetry.Span)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.sweep(ctx)
	}()
	p.Object.Run(ctx, emit)
	<-done
}

const sweepEvery = time.Second

// sweep unregisters, until ctx ends, the contexts that no longer hold their span.
func (p *Probe) sweep(ctx context.Context) {
	off, err := p.Variable("valuectx_val_off")
	m := p.Map("inflight_contexts")
	if err != nil || off == offsetNone || m == nil {
		return // no alias read, nothing to compare with: registrations stay until End
	}
	// Opened on the first need: most apps end their spans, and have none to check.
	var mem *os.File
	defer func() {
		if mem != nil {
			mem.Close()
		}
	}()
	tick := time.NewTicker(sweepEvery)
	defer tick.Stop()
	var word [8]byte
	failed := false
	holds := func(r registration) bool {
		if mem == nil && !failed {
			if mem, err = os.Open(fmt.Sprintf("/proc/%d/mem", p.Target().PID)); err != nil {
				failed = true
				if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ESRCH) { // not the app gone
					do := ""
					if errors.Is(err, fs.ErrPermission) {
						// An app run as another user (--user) is read with CAP_SYS_PTRACE only.
						do = ": give the launcher CAP_SYS_PTRACE"
					}
					slog.Warn(fmt.Sprintf("OpenTelemetry API: cannot read the app's memory (%v): the contexts of spans "+
						"never ended stay registered, and a context the app allocates at one's address later may find "+
						"that span as its parent%s", err, do))
				}
			}
		}
		if mem == nil {
			return true // unknown: left as it is
		}
		// The valueCtx's val: an interface, its data word second.
		if _, err := mem.ReadAt(word[:], int64(r.ctx+off+8)); err != nil {
			return false
		}
		return binary.LittleEndian.Uint64(word[:]) == r.holds
	}
	ref := make([]byte, m.ValueSize())
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, r := range p.spans.stale(time.Now().Add(-sweepEvery), holds) {
			// Only if the context's entry is still this span's (span_ref: its trace
			// ID, then its span ID).
			if err := m.Lookup(r.ctx, ref); err == nil && len(ref) >= 24 && [8]byte(ref[16:24]) == r.spanID {
				m.Delete(r.ctx)
			}
			p.spans.swept.Add(1)
		}
	}
}

// offsetNone is OFFSET_NONE: a field the app does not have.
const offsetNone = ^uint64(0)

// EndInFlight ends the spans the app started and never ended, or had not ended when
// it exited: they are in userspace, assembled from their records.
func (p *Probe) EndInFlight(end uint64, why telemetry.EndReason, emit func(*telemetry.Span)) (map[string]int, error) {
	n := p.spans.endAll(end, why, emit)
	p.spans.mu.Lock()
	evicted := p.spans.Evicted
	p.spans.mu.Unlock()
	if evicted > 0 || p.spans.swept.Load() > 0 {
		slog.Info(fmt.Sprintf("OpenTelemetry API: %d spans never ended were dropped for newer ones (%d open at most), "+
			"and %d contexts of spans not ended were unregistered once the app reused their memory",
			evicted, maxPending, p.spans.swept.Load()))
	}
	if n == 0 {
		return map[string]int{}, nil
	}
	return map[string]int{Spec.Name: n}, nil
}
