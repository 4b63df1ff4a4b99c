package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
	"github.com/otel-go-launcher/otel-go-launcher/offsets"
)

// contextLayers is CONTEXT_LAYERS of bpf/include/spans.h: the deepest a call's context
// may sit below its request's and still find it.
const contextLayers = 128

// A call's span is the child of the server span of the request it is made for, through
// context chains of any realistic depth (1 to 128 layers of WithValue, WithTimeout,
// WithCancel, WithoutCancel and wrappers that keep their parent elsewhere than first:
// embedded after other fields, a named field, a field's field, behind an embedded
// pointer), from a goroutine the handler starts (so that only the context can tell);
// and, made without the request's context (http.Get, context.Background()) in the
// handler's goroutine, by that goroutine. A call from another goroutine with no
// request context, or with one deeper than the bound, starts a trace of its own. Every
// span of every trace is checked: its trace, its parent, and that there is no other.
// Go 1.20 (whose timerCtx reaches its parent through an embedded pointer), 1.26 as a
// stripped PIE (wrappers read from type descriptors, relocated once the app runs) and
// 1.27 (itabs among the type descriptors).
func TestContextChains(t *testing.T) {
	b := testenv.BuildTargets(t, "httpserver", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})[0]
	for _, a := range []testenv.Target{
		testenv.BuildTargets(t, "httpserver", []string{"go1.26.8"}, []testenv.Variant{testenv.PIEStripped})[0],
		testenv.BuildTargets(t, "httpserver", []string{"go1.20.14"}, []testenv.Variant{testenv.Plain})[0],
		testenv.BuildTargets(t, "httpserver", []string{"go1.27.3"}, []testenv.Variant{testenv.Stripped})[0],
	} {
		t.Run(a.Toolchain+"-"+a.Variant.Name, func(t *testing.T) {
			s := startServices(t, a, b)
			type call struct {
				path  string
				child bool // of A's server span; else the root of a trace of its own
			}
			var calls []call
			for _, n := range []int{1, 7, 8, 9, 12, 64, 100, contextLayers} {
				calls = append(calls, call{fmt.Sprintf("/deep?layers=%d&go=1", n), true})
			}
			calls = append(calls,
				call{"/deep?layers=12&kinds=Thnp&go=1", true},                     // wrappers only
				call{"/deep?layers=64&kinds=vtcw&go=1", true},                     // the standard library's only
				call{"/deep?layers=40&kinds=tttt&go=1", true},                     // timers (Go 1.20: behind a pointer)
				call{fmt.Sprintf("/deep?layers=%d&go=1", contextLayers+1), false}, // beyond the bound, from another goroutine
				call{fmt.Sprintf("/deep?layers=%d", 2*contextLayers), true},       // beyond it, in the handler's goroutine
				call{"/get", true},        // http.Get in the handler
				call{"/background", true}, // context.Background() in the handler
				call{"/detached", false},  // context.Background() from another goroutine
			)
			type sent struct {
				call
				trace, parent string // the incoming traceparent's
				echo          echoed
			}
			var all []sent
			for _, c := range calls {
				trace, parent := randomHex(16), randomHex(8)
				e := s.echo(t, c.path, map[string]string{"Traceparent": "00-" + trace + "-" + parent + "-01"})
				all = append(all, sent{c, trace, parent, e})
			}

			// Each request's spans: A's server span in the incoming trace; A's client
			// span, which B's request names; B's server span.
			complete := func(spans []testenv.Span) bool {
				for _, c := range all {
					_, client, _ := traceparentIDs(t, c.echo.Traceparent)
					if len(spansOf(spans, "A", tracepb.Span_SPAN_KIND_SERVER, c.trace)) == 0 || spanByID(spans, client) == nil {
						return false
					}
					if cs := spanByID(spans, client); len(spansOf(spans, "B", tracepb.Span_SPAN_KIND_SERVER, cs.TraceID)) == 0 {
						return false
					}
				}
				return true
			}
			if _, ok := s.recv.WaitFor(20*time.Second, complete); !ok {
				t.Fatalf("not every request's three spans arrived")
			}
			time.Sleep(time.Second) // and nothing more
			spans := s.recv.Spans()
			inTrace := func(trace string) []testenv.Span {
				var out []testenv.Span
				for _, sp := range spans {
					if sp.TraceID == trace {
						out = append(out, sp)
					}
				}
				return out
			}
			for _, c := range all {
				if c.echo.TraceparentCount != 1 {
					t.Errorf("%s: B received %d traceparents", c.path, c.echo.TraceparentCount)
					continue
				}
				clientTrace, clientID, _ := traceparentIDs(t, c.echo.Traceparent)
				server := spansOf(spans, "A", tracepb.Span_SPAN_KIND_SERVER, c.trace)[0]
				client := *spanByID(spans, clientID)
				upstream := spansOf(spans, "B", tracepb.Span_SPAN_KIND_SERVER, clientTrace)
				path, _, _ := strings.Cut(c.path, "?")
				if server.Attrs["url.path"] != path || server.ParentSpanID != c.parent {
					t.Errorf("%s: A's server span %s (parent %s), want url.path %s and the incoming parent %s", c.path, server.Name, server.ParentSpanID, path, c.parent)
				}
				if client.Resource["service.name"] != "A" || client.Kind != tracepb.Span_SPAN_KIND_CLIENT || client.TraceID != clientTrace {
					t.Errorf("%s: span %s is %v of %v in trace %s", c.path, clientID, client.Kind, client.Resource["service.name"], client.TraceID)
				}
				if len(upstream) != 1 || upstream[0].ParentSpanID != clientID {
					t.Errorf("%s: B's server spans in trace %s: %s, want one, the child of %s", c.path, clientTrace, spanList(upstream), clientID)
				}
				if c.child {
					if clientTrace != c.trace || client.ParentSpanID != server.SpanID {
						t.Errorf("%s: A's client span in trace %s with parent %q, want %s and A's server span %s", c.path, clientTrace, client.ParentSpanID, c.trace, server.SpanID)
					}
					if got := inTrace(c.trace); len(got) != 3 {
						t.Errorf("%s: trace %s has %d spans, want 3: %s", c.path, c.trace, len(got), spanList(got))
					}
				} else {
					if clientTrace == c.trace || client.ParentSpanID != "" {
						t.Errorf("%s: A's client span in trace %s with parent %q, want a trace of its own, as its root", c.path, clientTrace, client.ParentSpanID)
					}
					if got := inTrace(c.trace); len(got) != 1 {
						t.Errorf("%s: trace %s has %d spans, want A's server span alone: %s", c.path, c.trace, len(got), spanList(got))
					}
					if got := inTrace(clientTrace); len(got) != 2 {
						t.Errorf("%s: the client's trace %s has %d spans, want 2: %s", c.path, clientTrace, len(got), spanList(got))
					}
				}
			}
		})
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// The same for gRPC: a call a gRPC handler makes with context.Background() is the child
// of the handler's span (by goroutine), one made from a goroutine the handler starts
// through 64 or 100 layers of contexts too (by context); with Background from that
// goroutine, or 129 layers, it starts a trace of its own. Every span of every trace is
// checked; where grpc sends a traceparent (v1.53+), the downstream server span is the
// client span's child.
func TestGRPCContextChains(t *testing.T) {
	builds := []testenv.GRPCBuild{testenv.GRPCBuilds[0], testenv.GRPCBuilds[2], testenv.GRPCBuilds[3]}
	for i, tg := range testenv.BuildGRPC(t, builds...) {
		propagates := offsets.VersionAtLeast(builds[i].Version, "v1.53.0")
		t.Run(tg.Toolchain+"/"+tg.Variant.Name, func(t *testing.T) {
			recv := testenv.StartReceiver(t)
			downstream, downAddr := tracedGRPC(t, tg, recv, "")
			dialGRPC(t, downAddr)
			front, frontAddr := tracedGRPC(t, tg, recv, downAddr)
			fc := dialGRPC(t, frontAddr)
			type call struct {
				method string
				in     proto.Message
				child  bool
				trace  string
				parent string
			}
			calls := []*call{
				{method: "Orphan", in: wrapperspb.String("hi"), child: true},
				{method: "Detached", in: wrapperspb.String("hi")},
				{method: "Deep", in: wrapperspb.Int32(64), child: true},
				// grpc derives the handler's context from the stream's, which the server
				// span is registered under, through a few layers of its own.
				{method: "Deep", in: wrapperspb.Int32(100), child: true},
				{method: "Deep", in: wrapperspb.Int32(contextLayers + 1)},
			}
			for _, c := range calls {
				c.trace, c.parent = randomHex(16), randomHex(8)
				ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-"+c.trace+"-"+c.parent+"-01")
				if err := fc.Invoke(ctx, "/demo.Echo/"+c.method, c.in, new(wrapperspb.StringValue)); err != nil {
					t.Fatalf("%s: %v\nfront: %s\ndownstream: %s", c.method, err, front.stderr, downstream.stderr)
				}
			}
			// Each call: the front's server span and client span, the downstream's
			// server span.
			spans, ok := recv.WaitFor(20*time.Second, func(s []testenv.Span) bool {
				n := 0
				for _, sp := range s {
					if sp.Kind == tracepb.Span_SPAN_KIND_CLIENT {
						n++
					}
				}
				return n >= len(calls) && len(s) >= 2+3*len(calls) // dialGRPC's 2 Say server spans
			})
			if !ok {
				t.Fatalf("spans: %s", spanList(spans))
			}
			time.Sleep(time.Second) // and nothing more
			spans = recv.Spans()
			var clients, says []testenv.Span
			for _, sp := range spans {
				switch {
				case sp.Kind == tracepb.Span_SPAN_KIND_CLIENT:
					clients = append(clients, sp)
				case sp.Name == "demo.Echo/Say":
					says = append(says, sp)
				}
			}
			if len(clients) != len(calls) || len(says) != 2+len(calls) {
				t.Fatalf("%d client spans, %d Say server spans; want %d and %d: %s", len(clients), len(says), len(calls), 2+len(calls), spanList(spans))
			}
			inTrace := func(trace string) []testenv.Span {
				var out []testenv.Span
				for _, sp := range spans {
					if sp.TraceID == trace {
						out = append(out, sp)
					}
				}
				return out
			}
			for _, c := range calls {
				what := fmt.Sprintf("%s(%v)", c.method, c.in)
				var server *testenv.Span
				for _, sp := range inTrace(c.trace) {
					if sp.Kind == tracepb.Span_SPAN_KIND_SERVER && sp.Name == "demo.Echo/"+c.method {
						server = &sp
					}
				}
				if server == nil || server.ParentSpanID != c.parent {
					t.Errorf("%s: no server span in trace %s with the incoming parent %s: %s", what, c.trace, c.parent, spanList(inTrace(c.trace)))
					continue
				}
				// The client span the handler made: within its server span.
				var client *testenv.Span
				for i := range clients {
					if !clients[i].Start.Before(server.Start) && !clients[i].End.After(server.End) {
						client = &clients[i]
					}
				}
				if client == nil || client.Name != "demo.Echo/Say" {
					t.Errorf("%s: no client Say span within its server span: %s", what, spanList(clients))
					continue
				}
				want := 2 // the server span and its call
				if c.child && (client.TraceID != c.trace || client.ParentSpanID != server.SpanID) {
					t.Errorf("%s: client span in trace %s with parent %q, want %s and the server span %s", what, client.TraceID, client.ParentSpanID, c.trace, server.SpanID)
				}
				if !c.child && (client.TraceID == c.trace || client.ParentSpanID != "") {
					t.Errorf("%s: client span in trace %s with parent %q, want a trace of its own, as its root", what, client.TraceID, client.ParentSpanID)
				}
				if !c.child {
					want = 1
				}
				if propagates {
					var down []testenv.Span
					for _, sp := range says {
						if sp.TraceID == client.TraceID {
							down = append(down, sp)
						}
					}
					if len(down) != 1 || down[0].ParentSpanID != client.SpanID {
						t.Errorf("%s: downstream Say spans in the client's trace: %s, want one, the child of %s", what, spanList(down), client.SpanID)
					}
					if c.child {
						want++
					} else if n := len(inTrace(client.TraceID)); n != 2 {
						t.Errorf("%s: the client's trace %s has %d spans, want 2", what, client.TraceID, n)
					}
				}
				if got := inTrace(c.trace); len(got) != want {
					t.Errorf("%s: trace %s has %d spans, want %d: %s", what, c.trace, len(got), want, spanList(got))
				}
			}
		})
	}
}
