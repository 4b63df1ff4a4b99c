package nethttp

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

// Library is net/http for the probe kit.
func Library() kit.Library {
	lib := kit.Library{
		Name:   "net/http",
		Specs:  Specs,
		Scope:  scope,
		Object: objectSpec,
		// By the call's context first; by the goroutine for a call made without the
		// request's (http.Get) in the handler's goroutine.
		Clients: map[string]kit.Lookup{ClientSpec.Name: kit.ByContext | kit.ByGoroutine},
		// The HTTP/2 transports' connection set-up: net/http's bundled one (its own
		// package from Go 1.27), and x/net's.
		PrefaceWriters: []string{"net/http.(*http2Transport).newClientConn", "net/http/internal/http2.(*Transport).newClientConn",
			"golang.org/x/net/http2.(*Transport).newClientConn"},
	}
	lib.Load = func(ctx context.Context, t kit.Target, reps kit.Reports, env kit.Env) (kit.Probe, error) {
		return load(ctx, &lib, t, reps, env)
	}
	lib.Check = func(ctx context.Context, env kit.Env) []kit.Finding { return check(&lib) }
	return lib
}

// objectSpec is the embedded BPF object, parsed once (2 ms): the session starts that
// before the launcher needs it.
var objectSpec = sync.OnceValues(loadNethttp)

// Probe is the net/http instrumentation of one app: one BPF object for the server and
// client probes, and the uprobes on the request writers that hand the traceparent to
// the wire (probes/wire).
type Probe struct {
	*kit.Object
	server nethttpHttpServerEvent // a server record cut short, completed (decode runs in one goroutine)
}

var _ kit.Probe = (*Probe)(nil)

// writers take a request's traceparent for the wire, in the goroutine about to write
// the request: HTTP/1, and the HTTP/2 clients'.
var writers = &kit.Writers{
	Spec: ClientSpec.Name,
	Uprobes: []kit.Uprobe{
		{Spec: ClientSpec.Name, Symbol: requestWrite, Entry: "request_write"},
		{Spec: ClientSpec.Name, Symbol: h2EncodeHeaders, Entry: "h2_request_write"},
		{Spec: ClientSpec.Name, Symbol: xnetEncodeHeaders, Entry: "h2_request_write"},
		{Spec: ClientSpec.Name, Symbol: h2EncodeHeaders127, Entry: "h2_request_write_internal"},
	},
	Calls: "outgoing requests",
}

// load loads the programs of the specs the reports resolved, for the app's map layout
// (Swiss tables since Go 1.24).
func load(ctx context.Context, lib *kit.Library, t kit.Target, reps kit.Reports, env kit.Env) (kit.Probe, error) {
	layout := "_hmap"
	if offsets.VersionAtLeast(t.GoVersion, swissMapsSince) {
		layout = "_swiss"
	}
	p := &Probe{}
	spec := kit.ObjectSpec{
		Library: lib,
		Uprobes: []kit.Uprobe{
			{Spec: ServerSpec.Name, Symbol: serveHTTP, Entry: "server_entry" + layout},
			{Spec: ServerSpec.Name, Symbol: finishRequest, Entry: "server_finish"},
			{Spec: ServerSpec.Name, Symbol: connServeDeferred, Entry: "server_conn_done"},
			{Spec: ServerSpec.Name, Symbol: responseHijack, Entry: "server_hijack"},
			{Spec: ServerSpec.Name, Symbol: h2RunHandlerDeferred, Call: "h2_server_panic"},
			{Spec: ClientSpec.Name, Symbol: roundTrip, Entry: "client_entry" + layout, Return: "client_return"},
		},
		Enable: map[string]string{
			ServerSpec.Name: "server_enabled", ClientSpec.Name: "client_enabled", XNetServerSpec.Name: "xnet_server_enabled",
		},
		Writers: writers,
		Decode:  p.decode,
		// Requests whose handler has not returned, calls not answered yet: a long poll
		// may be open when the app exits.
		InFlight: []kit.InFlight{
			{Map: "server_calls", Spec: ServerSpec.Name, Span: openServerSpan},
			{Map: "client_calls", Spec: ClientSpec.Name, Span: p.openClientSpan},
		},
	}
	// golang.org/x/net/http2's transport, where the app has it: its calls are client
	// calls as net/http's are.
	xnet := kit.Uprobe{Spec: ClientSpec.Name, Symbol: xnetRoundTrip, Entry: "client_entry" + layout, Return: "client_return"}
	if reps.Enabled(ClientSpec.Name) && hasFunction(reps[ClientSpec.Name], xnetRoundTrip, xnetRoundTripOld) {
		spec.Uprobes = append(spec.Uprobes, xnet)
	}
	// An HTTP/2 server that runs handlers itself: x/net's own, or Go 1.27's for x/net.
	ownH2Done := true // the server spec probes handlerDone itself
	if rep := reps[XNetServerSpec.Name]; rep.Enabled {
		run := kit.Uprobe{Spec: XNetServerSpec.Name, Symbol: xnetRunHandler, Entry: "xnet_server_entry" + layout}
		done := kit.Uprobe{Spec: XNetServerSpec.Name, Symbol: xnetHandlerDone, Entry: "h2_server_done"}
		if !hasFunction(rep, xnetRunHandler) {
			run.Symbol, run.Entry, done.Symbol = h2RunHandler127, "h2_server_entry_swiss", h2HandlerDone127
		}
		serve := kit.Uprobe{Spec: XNetServerSpec.Name, Symbol: xnetServer[0], Entry: "xnet_serve_conn"}
		spec.Uprobes = append(spec.Uprobes, run, done, serve)
		if run.Symbol == xnetRunHandler {
			spec.Uprobes = append(spec.Uprobes, kit.Uprobe{Spec: XNetServerSpec.Name, Symbol: xnetRunHandlerDeferred, Call: "h2_server_panic"})
		}
		ownH2Done = done.Symbol != h2HandlerDone127
	}
	// net/http's own HTTP/2 requests end at its handlerDone too, unless the x/net spec
	// already probes it (Go 1.27's): one program serves both.
	if ownH2Done {
		spec.Uprobes = append(spec.Uprobes, kit.Uprobe{Spec: ServerSpec.Name, Symbol: h2HandlerDone, Entry: "h2_server_done"})
	}
	var err error
	if p.Object, err = kit.LoadObject(ctx, t, reps, env, spec); err != nil {
		return nil, err
	}
	return p, nil
}

// hasFunction reports whether the report resolved one of the symbols.
func hasFunction(rep offsets.ProbeReport, symbols ...string) bool {
	for _, s := range symbols {
		if _, ok := rep.Uprobe(s); ok {
			return true
		}
	}
	return false
}

// decode fills span from an event: the record is the C struct, 8-byte aligned in the
// ring buffer; its first word says which.
func (p *Probe) decode(raw []byte, span *telemetry.Span) bool {
	switch kit.RecordKind(raw) {
	case eventServer:
		// The record ends with the tracestate's bytes kept, its unused ones left out.
		if ev := kit.RecordPrefixAs(raw, &p.server, int(unsafe.Sizeof(p.server))-len(p.server.Tracestate)); ev != nil {
			serverSpan(ev, span)
			return true
		}
	case eventClient:
		if ev := kit.RecordAs[nethttpHttpClientEvent](raw); ev != nil {
			p.clientSpan(ev, span)
			return true
		}
	}
	return false
}

// openServerSpan fills span from a request whose handler has not returned: no status
// nor route yet (both are read where it ends). A request whose handler gave its
// connection to x/net's HTTP/2 server has no span (its stream has its own).
func openServerSpan(value []byte, span *telemetry.Span) bool {
	st := kit.RecordAs[nethttpServerCall](value)
	if st == nil || st.Ev.Kind != eventServer || st.HandedOver != 0 {
		return false
	}
	serverSpan(&st.Ev, span)
	return true
}

// openClientSpan fills span from a call not answered yet: no status, no error.
func (p *Probe) openClientSpan(value []byte, span *telemetry.Span) bool {
	st := kit.RecordAs[nethttpClientCall](value)
	if st == nil || st.Ev.Kind != eventClient {
		return false
	}
	p.clientSpan(&st.Ev, span)
	return true
}

// Event kinds, as the C program numbers them.
const (
	eventServer = 1
	eventClient = 2
)

// check loads every program (both map layouts): what instrumenting an app will need
// of this host.
func check(lib *kit.Library) []kit.Finding { return kit.CheckFindings(lib) }
