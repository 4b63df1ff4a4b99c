package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// Incoming tracestate values (issue 28), and what A's server span, A's outgoing
// request and B's server span must carry of each: over 512 bytes, whole members are
// dropped (those over 128 characters first, then from the end), never part of one;
// a malformed list is dropped whole. Values a Go server refuses itself (CR, LF, NUL)
// never reach a handler; the probes' own test (probes/nethttp/tracestatetest) has
// those.
var tracestateCases = []struct {
	name   string
	fields []string // the request's tracestate header lines
	want   string
}{
	{"plain", []string{"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"}, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"},
	{"whitespace and empty members", []string{" congo=t61rcWkgMzE ,, \trojo=00f067aa0ba902b7\t"}, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"},
	{"two header lines", []string{"congo=t61rcWkgMzE", "rojo=00f067aa0ba902b7"}, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"},
	{"over 512 bytes", []string{tracestateLong}, tracestateLongKept},
	{"40 members (over 32)", []string{tracestateForty}, ""},
	{"duplicate key", []string{"congo=a,rojo=b,congo=c"}, ""},
	{"duplicate key across lines", []string{"congo=a", "congo=c"}, ""},
	{"upper-case key", []string{"Congo=t61rcWkgMzE"}, ""},
	{"no '='", []string{"congo=t61rcWkgMzE,rojo"}, ""},
	{"'=' in a value", []string{"congo=a=b"}, ""},
	{"tab inside a value", []string{"congo=a\tb"}, ""},
	{"not ASCII", []string{"congo=caf\xc3\xa9"}, ""},
	{"value of 257", []string{"congo=" + strings.Repeat("x", 257)}, ""},
}

var (
	// 22 members of 43 characters, and one of 204 third: 1,172 bytes. Without the
	// long member, the first 11 short ones fit (483 bytes, 494 with a twelfth).
	tracestateLong = func() string {
		var m []string
		for i := 1; i <= 22; i++ {
			if i == 3 {
				m = append(m, "big="+strings.Repeat("B", 200))
			}
			m = append(m, fmt.Sprintf("vendor%02d=%s", i, strings.Repeat("v", 34)))
		}
		return strings.Join(m, ",")
	}()
	tracestateLongKept = func() string {
		var m []string
		for i := 1; i <= 11; i++ {
			m = append(m, fmt.Sprintf("vendor%02d=%s", i, strings.Repeat("v", 34)))
		}
		return strings.Join(m, ",")
	}()
	// The issue's: k1=v1,...,k40=v40.
	tracestateForty = func() string {
		var m []string
		for i := 1; i <= 40; i++ {
			m = append(m, fmt.Sprintf("k%d=v%d", i, i))
		}
		return strings.Join(m, ",")
	}()
)

// TestTracestate sends each case to A under an incoming traceparent; A's handler calls
// B. What B receives (one tracestate header line, or none), A's server span's
// tracestate and B's server span's must all be the case's.
func TestTracestate(t *testing.T) {
	if len(tracestateLong) <= 512 || len(tracestateLongKept) > 512 || len(tracestateLongKept)+1+43 <= 512 {
		t.Fatalf("the long case is %d bytes, %d kept", len(tracestateLong), len(tracestateLongKept))
	}
	for _, pair := range [][2]string{{"go1.22.12", "go1.26.8"}, {"go1.26.8", "go1.22.12"}} {
		t.Run(pair[0]+"->"+pair[1], func(t *testing.T) {
			tgs := testenv.BuildTargets(t, "httpserver", pair[:], []testenv.Variant{testenv.Plain})
			s := startServices(t, tgs[0], tgs[1])
			for i, c := range tracestateCases {
				trace := fmt.Sprintf("%032x", 0x7a0000+i)
				header := http.Header{"Traceparent": {"00-" + trace + "-b7ad6b7169203331-01"}, "Tracestate": c.fields}
				e := s.echoHeader(t, "/proxy", header)
				wantCount := 1
				if c.want == "" {
					wantCount = 0
				}
				if e.Tracestate != c.want || e.TracestateCount != wantCount {
					t.Errorf("%s: B received %d tracestate lines, %q\nwant %d, %q", c.name, e.TracestateCount, e.Tracestate, wantCount, c.want)
				}
				cs := s.chain(t, c.name, e, serverSpanOf("/proxy", &trace))
				spans, ok := s.recv.WaitFor(10*time.Second, func(sp []testenv.Span) bool { return spanByID(sp, cs.ParentSpanID) != nil })
				if !ok {
					t.Fatalf("%s: A's server span %s did not arrive", c.name, cs.ParentSpanID)
				}
				if a := spanByID(spans, cs.ParentSpanID); a.TraceState != c.want || a.ParentSpanID != "b7ad6b7169203331" {
					t.Errorf("%s: A's server span: parent %s, tracestate %q\nwant %q", c.name, a.ParentSpanID, a.TraceState, c.want)
				}
				for _, b := range spansOf(spans, "B", tracepb.Span_SPAN_KIND_SERVER, trace) {
					if b.TraceState != c.want {
						t.Errorf("%s: B's server span: tracestate %q\nwant %q", c.name, b.TraceState, c.want)
					}
				}
			}
			for _, r := range []*run{s.a, s.b} {
				if said := launcherLines(r); said != "" {
					t.Errorf("launcher said: %s", said)
				}
			}
		})
	}
}

// TestTracestateGRPC: the same over gRPC, into a Relay whose three calls (two unary,
// a stream) go to a second service: the Relay's server span and the three downstream
// server spans carry the case's tracestate, the metadata's several values combined.
// (grpc-go refuses to send a value outside printable ASCII: those cases are HTTP's.)
func TestTracestateGRPC(t *testing.T) {
	tgs := testenv.BuildGRPC(t, testenv.GRPCBuild{Version: "v1.60.1", Toolchain: "go1.24.11"}, testenv.GRPCBuild{Version: "v1.85.0", Toolchain: "go1.26.8"})
	for _, tg := range tgs {
		t.Run(tg.Toolchain, func(t *testing.T) {
			recv := testenv.StartReceiver(t)
			down, downAddr := tracedGRPC(t, tg, recv, "")
			dialGRPC(t, downAddr)
			front, frontAddr := tracedGRPC(t, tg, recv, downAddr)
			fc := dialGRPC(t, frontAddr)
			traces := map[string]int{} // trace -> case
			for i, c := range tracestateCases {
				if strings.ContainsFunc(strings.Join(c.fields, ""), func(r rune) bool { return r < 0x20 || r > 0x7e }) {
					continue
				}
				trace := fmt.Sprintf("%032x", 0x6a0000+i)
				traces[trace] = i
				kv := []string{"traceparent", "00-" + trace + "-b7ad6b7169203331-01"}
				for _, f := range c.fields {
					kv = append(kv, "tracestate", f)
				}
				ctx := metadata.AppendToOutgoingContext(context.Background(), kv...)
				if err := fc.Invoke(ctx, "/demo.Echo/Relay", wrapperspb.String("hi"), new(wrapperspb.StringValue)); err != nil {
					t.Fatalf("%s: Relay: %v\nfront: %s\ndownstream: %s", c.name, err, front.stderr, down.stderr)
				}
			}
			// Each Relay: its server span, and Say, Say, Count downstream.
			serverSpans := func(spans []testenv.Span) map[string][]testenv.Span {
				byTrace := map[string][]testenv.Span{}
				for _, s := range spans {
					if _, ours := traces[s.TraceID]; ours && s.Kind == tracepb.Span_SPAN_KIND_SERVER {
						byTrace[s.TraceID] = append(byTrace[s.TraceID], s)
					}
				}
				return byTrace
			}
			spans, ok := recv.WaitFor(30*time.Second, func(sp []testenv.Span) bool {
				byTrace := serverSpans(sp)
				for trace := range traces {
					if len(byTrace[trace]) < 4 {
						return false
					}
				}
				return true
			})
			if !ok {
				t.Fatalf("not every Relay's four server spans arrived: %s", spanList(spans))
			}
			for trace, spans := range serverSpans(spans) {
				c := tracestateCases[traces[trace]]
				var relays, downstream int
				for _, s := range spans {
					if s.Name == "demo.Echo/Relay" {
						relays++
					} else {
						downstream++
					}
					if s.TraceState != c.want {
						t.Errorf("%s: server span %s: tracestate %q\nwant %q", c.name, s.Name, s.TraceState, c.want)
					}
				}
				if relays != 1 || downstream != 3 {
					t.Errorf("%s: %d Relay and %d downstream server spans, want 1 and 3: %s", c.name, relays, downstream, spanList(spans))
				}
			}
			for _, r := range []*run{down, front} {
				if said := launcherLines(r); said != "" {
					t.Errorf("launcher said: %s", said)
				}
			}
		})
	}
}

// echoHeader is echo with any header, a key's several lines included.
func (s *services) echoHeader(t *testing.T, path string, header http.Header) echoed {
	t.Helper()
	req, err := http.NewRequest("GET", s.aURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e echoed
	if json.Unmarshal(b, &e) != nil {
		t.Fatalf("%s: not an echo: %s %q", path, resp.Status, b)
	}
	return e
}
