package grpc

import (
	"context"
	"reflect"
	"sync"
	"unsafe"

	"github.com/otel-go-launcher/otel-go-launcher/offsets"
	"github.com/otel-go-launcher/otel-go-launcher/probes/kit"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// scope is the instrumentation scope of the library's spans and metrics, named after
// this package.
var scope = telemetry.NewScope(reflect.TypeFor[Probe]().PkgPath())

// Library is google.golang.org/grpc for the probe kit.
func Library() kit.Library {
	lib := kit.Library{
		Name:   "grpc",
		Specs:  Specs,
		Scope:  scope,
		Object: objectSpec,
		// By the call's context first; by the goroutine for a call made with
		// context.Background() in the handler's goroutine, as for net/http.
		Clients: map[string]kit.Lookup{ClientSpec.Name: kit.ByContext | kit.ByGoroutine},
		// The client transport's set-up (exported from v1.67).
		PrefaceWriters: []string{"google.golang.org/grpc/internal/transport.NewHTTP2Client", "google.golang.org/grpc/internal/transport.newHTTP2Client"},
	}
	lib.Load = func(ctx context.Context, t kit.Target, reps kit.Reports, env kit.Env) (kit.Probe, error) {
		return load(ctx, &lib, t, reps, env)
	}
	lib.Check = func(ctx context.Context, env kit.Env) []kit.Finding { return check(&lib) }
	return lib
}

// objectSpec is the embedded BPF object, parsed once.
var objectSpec = sync.OnceValues(loadGrpc)

// Probe is the gRPC instrumentation of one app.
type Probe struct {
	*kit.Object
	server grpcGrpcServerEvent // a server record cut short, completed (decode runs in one goroutine)
	// handles: handleStream's probe is attached, and marks each stream that reached a
	// handler with its goroutine (set by Configure).
	handles bool
}

var _ kit.Probe = (*Probe)(nil)

func load(ctx context.Context, lib *kit.Library, t kit.Target, reps kit.Reports, env kit.Env) (kit.Probe, error) {
	p := &Probe{}
	spec := kit.ObjectSpec{
		Library: lib,
		Uprobes: []kit.Uprobe{
			{Spec: ServerSpec.Name, Symbol: operateHeaders, Entry: "server_headers"},
			{Spec: ServerSpec.Name, Symbol: handleStream, Entry: "server_handle"},
			{Spec: ServerSpec.Name, Symbol: writeStatus, Entry: "server_status"},
			{Spec: ClientSpec.Name, Symbol: newClientStream, Entry: "client_entry", Return: "client_started"},
			{Spec: ClientSpec.Name, Symbol: streamFinish, Entry: "client_finish"},
		},
		Enable: map[string]string{ServerSpec.Name: "server_enabled", ClientSpec.Name: "client_enabled"},
		Decode: p.decode,
		// Streams between their headers and their status; calls being made, by
		// goroutine, then streams until finished: a watch or a keep-alive may be open
		// when the app exits.
		InFlight: []kit.InFlight{
			{Map: "server_streams", Spec: ServerSpec.Name, Span: p.openServerSpan},
			{Map: "client_calls", Spec: ClientSpec.Name, Span: p.openClientSpan},
			{Map: "client_streams", Spec: ClientSpec.Name, Span: p.openClientSpan},
		},
	}
	if ups := writersFor(t.Modules.Version(Module)); ups != nil {
		spec.Writers = &kit.Writers{Spec: ClientSpec.Name, Uprobes: ups, Together: true, Calls: "outgoing gRPC calls"}
	}
	var err error
	if p.Object, err = kit.LoadObject(ctx, t, reps, env, spec); err != nil {
		return nil, err
	}
	return p, nil
}

// writersFor are the uprobes that hand a call's traceparent to the wire, for the
// app's grpc release: none before v1.53, whose connection writer takes the header
// frame from a queue.
func writersFor(version string) []kit.Uprobe {
	if version == "" || !offsets.VersionAtLeast(version, originateHdrSince) {
		return nil
	}
	fields := kit.Uprobe{Spec: ClientSpec.Name, Symbol: createHeaderFields, Return: "client_fields"}
	if offsets.VersionAtLeast(version, clientHeadersSince) {
		return []kit.Uprobe{fields, {Spec: ClientSpec.Name, Symbol: clientHeaderHandler, Entry: "client_header_handler"}}
	}
	return []kit.Uprobe{fields, {Spec: ClientSpec.Name, Symbol: originateStream, Entry: "client_originate"}}
}

// Configure sets the app's offsets, where operateHeaders takes its frame, and turns
// the probes on.
func (p *Probe) Configure(reps kit.Reports, inflight kit.Lookup) error {
	frameArg := uint64(4)
	if v := p.Target().Modules.Version(Module); v != "" && !offsets.VersionAtLeast(v, headersContextSince) {
		frameArg = 2
	}
	if inflight == 0 {
		// No probe of the app looks for a parent: handleStream's registration would
		// be a hit per RPC for nothing. Detaching waits out a grace period: not in
		// the gate.
		go p.DetachProgram("server_handle")
	}
	p.handles = inflight != 0
	return p.ConfigureWith(reps, inflight, map[string]uint64{"headers_frame_arg": frameArg})
}

// decode fills span from an event: the C struct, 8-byte aligned in the ring buffer;
// its first word says which.
func (p *Probe) decode(raw []byte, span *telemetry.Span) bool {
	switch kit.RecordKind(raw) {
	case eventServer:
		// The record ends with the tracestate's bytes kept, its unused ones left out.
		if ev := kit.RecordPrefixAs(raw, &p.server, int(unsafe.Sizeof(p.server))-len(p.server.Tracestate)); ev != nil {
			p.serverSpan(ev, span, false)
			return true
		}
	case eventClient:
		if ev := kit.RecordAs[grpcGrpcClientEvent](raw); ev != nil {
			p.clientSpan(ev, span, false)
			return true
		}
	}
	return false
}

// openServerSpan fills span from a server stream still in flight: one that reached a
// handler, where handleStream's probe tells (a stream refused before any handler leaves
// its state behind, and has no span).
func (p *Probe) openServerSpan(value []byte, span *telemetry.Span) bool {
	st := kit.RecordAs[grpcServerStream](value)
	if st == nil || st.Ev.Kind != eventServer || p.handles && st.G == 0 {
		return false
	}
	p.serverSpan(&st.Ev, span, true)
	return true
}

// openClientSpan fills span from a call still in flight: being made, or a stream.
func (p *Probe) openClientSpan(value []byte, span *telemetry.Span) bool {
	ev := kit.RecordAs[grpcGrpcClientEvent](value)
	if ev == nil || ev.Kind != eventClient {
		return false
	}
	p.clientSpan(ev, span, true)
	return true
}

// Event kinds, as the C program numbers them.
const (
	eventServer = 1
	eventClient = 2
)

// check loads every program: what instrumenting an app will need of this host.
func check(lib *kit.Library) []kit.Finding {
	return kit.CheckFindings(lib, "gRPC: calls from grpc before v1.53 carry no traceparent (their connection writer takes the header frame from a queue): the server they reach starts a new trace")
}
