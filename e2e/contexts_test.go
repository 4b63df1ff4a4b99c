package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
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
