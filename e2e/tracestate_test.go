package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// Incoming tracestate values (hostile ones included), and what A's server span, A's outgoing
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
	// Over the 32-member limit: k1=v1,...,k40=v40.
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
// tracestate, A's client span's (its parent's, as the SDK gives it) and B's server
// span's must all be the case's.
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
				if cs.TraceState != c.want {
					t.Errorf("%s: A's client span: tracestate %q\nwant %q", c.name, cs.TraceState, c.want)
				}
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
// a stream) go to a second service: the Relay's server span, its three client spans
// and the three downstream server spans carry the case's tracestate, the metadata's
// several values combined; each client span is the Relay's child, each downstream
// server span a client span's.
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
			// Each Relay: its server span, its three calls, and Say, Say, Count downstream.
			byTrace := func(spans []testenv.Span) map[string][]testenv.Span {
				byTrace := map[string][]testenv.Span{}
				for _, s := range spans {
					if _, ours := traces[s.TraceID]; ours {
						byTrace[s.TraceID] = append(byTrace[s.TraceID], s)
					}
				}
				return byTrace
			}
			spans, ok := recv.WaitFor(30*time.Second, func(sp []testenv.Span) bool {
				byTrace := byTrace(sp)
				for trace := range traces {
					if len(byTrace[trace]) < 7 {
						return false
					}
				}
				return true
			})
			if !ok {
				t.Fatalf("not every Relay's seven spans arrived: %s", spanList(spans))
			}
			for trace, spans := range byTrace(spans) {
				c := tracestateCases[traces[trace]]
				var relay *testenv.Span
				clients := map[string]bool{}
				for i, s := range spans {
					switch {
					case s.Name == "demo.Echo/Relay":
						relay = &spans[i]
					case s.Kind == tracepb.Span_SPAN_KIND_CLIENT:
						clients[s.SpanID] = true
					}
					if s.TraceState != c.want {
						t.Errorf("%s: %v span %s: tracestate %q\nwant %q", c.name, s.Kind, s.Name, s.TraceState, c.want)
					}
				}
				if relay == nil || len(clients) != 3 || len(spans) != 7 {
					t.Fatalf("%s: want a Relay server span, 3 client spans and 3 downstream server spans: %s", c.name, spanList(spans))
				}
				if relay.ParentSpanID != "b7ad6b7169203331" {
					t.Errorf("%s: the Relay's parent %s, not the incoming one", c.name, relay.ParentSpanID)
				}
				for _, s := range spans {
					switch {
					case s.SpanID == relay.SpanID:
					case s.Kind == tracepb.Span_SPAN_KIND_CLIENT && s.ParentSpanID != relay.SpanID:
						t.Errorf("%s: client span %s: parent %s, not the Relay's %s", c.name, s.Name, s.ParentSpanID, relay.SpanID)
					case s.Kind == tracepb.Span_SPAN_KIND_SERVER && !clients[s.ParentSpanID]:
						t.Errorf("%s: downstream server span %s: parent %s, no client span of the Relay", c.name, s.Name, s.ParentSpanID)
					}
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

// TestTracestateChildren: requests with a traceparent and a tracestate into services
// whose handlers make database/sql queries (SQLite) or Redis commands - in the handler's
// goroutine, from goroutines it starts with its context, without a context -: every span
// of each request's trace has the request's tracestate, as the SDK gives a span its
// parent's; the server span's parent is the incoming one, and every client span's the
// server span or, for a Redis connection's set-up, the command that opened it; each span
// is under its library's scope, of the launcher's version and the conventions' schema.
func TestTracestateChildren(t *testing.T) {
	testenv.RequireRoot(t)
	t.Run("database/sql", func(t *testing.T) {
		tg := testenv.BuildTargets(t, "dbservice", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})[0]
		dsn := "file:" + filepath.Join(t.TempDir(), "db.sqlite")
		tracestateChildren(t, tg, "databasesql", []string{"-driver", "sqlite", "-dsn", dsn}, "/items/first", "/tx", "/fanout", "/noctx")
	})
	t.Run("go-redis", func(t *testing.T) {
		tg := testenv.BuildRedis(t, testenv.ModuleBuild{Version: testenv.RedisDefault, Toolchain: "go1.26.8"})[0]
		server, _ := startRedis(t)
		// The first command opens a connection: its set-up commands are its children.
		tracestateChildren(t, tg, "goredis", []string{"-redis", server, "-db", redisDB}, "/set?key=first", "/pipeline", "/fanout", "/noctx")
	})
}

// schemaURL is the semantic conventions' schema the spans follow.
const schemaURL = "https://opentelemetry.io/schemas/1.43.0"

func tracestateChildren(t *testing.T, tg testenv.Target, lib string, args []string, paths ...string) {
	const tracestate = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
	recv := testenv.StartReceiver(t)
	addr := freeAddr(t)
	env := append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT="+recv.Endpoint, "OTEL_BSP_SCHEDULE_DELAY=200",
		"OTEL_SERVICE_NAME=", "OTEL_RESOURCE_ATTRIBUTES=", "OTEL_TRACES_EXPORTER=", "OTEL_TRACES_SAMPLER=", "OTEL_METRICS_EXPORTER=none")
	argv := append([]string{launchBin(t), "--require-instrumentation", "--", tg.Path, "-addr", addr}, args...)
	r := start(t, opts{env: env, stdin: strings.NewReader("")}, argv...)
	if !eventually(20*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		t.Fatalf("the service never listened\n%s", r.stderr)
	}
	traces := map[string]string{} // trace -> path
	for i, path := range paths {
		trace := fmt.Sprintf("%032x", 0x5a0000+i)
		traces[trace] = path
		resp, _, _ := get(t, http.DefaultClient, "http://"+addr+path, map[string]string{
			"traceparent": "00-" + trace + "-b7ad6b7169203331-01", "tracestate": tracestate})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s\n%s", path, resp.Status, r.stderr)
		}
	}
	server := func(spans []testenv.Span) *testenv.Span {
		for i := range spans {
			if spans[i].Kind == tracepb.Span_SPAN_KIND_SERVER {
				return &spans[i]
			}
		}
		return nil
	}
	byTrace := func(spans []testenv.Span) map[string][]testenv.Span {
		m := map[string][]testenv.Span{}
		for _, s := range spans {
			m[s.TraceID] = append(m[s.TraceID], s)
		}
		return m
	}
	if _, ok := recv.WaitFor(20*time.Second, func(spans []testenv.Span) bool {
		m := byTrace(spans)
		for trace := range traces {
			if server(m[trace]) == nil {
				return false
			}
		}
		return true
	}); !ok {
		t.Fatalf("not every request's server span arrived: %s\n%s", spanList(recv.Spans()), r.stderr)
	}
	time.Sleep(time.Second) // and the client spans, from other ring buffers
	all := byTrace(recv.Spans())
	nested := 0
	for trace, path := range traces {
		spans := all[trace]
		srv := server(spans)
		if srv.ParentSpanID != "b7ad6b7169203331" || srv.Scope.Name != scopePrefix+"nethttp" {
			t.Errorf("%s: server span %s: parent %s, scope %s", path, srv.Name, srv.ParentSpanID, srv.Scope.Name)
		}
		byID := map[string]testenv.Span{}
		for _, s := range spans {
			byID[s.SpanID] = s
		}
		clients := 0
		for _, s := range spans {
			if s.TraceState != tracestate {
				t.Errorf("%s: %v span %s: tracestate %q, want the request's %q", path, s.Kind, s.Name, s.TraceState, tracestate)
			}
			if s.Scope.Version == "" || s.Scope.Version != srv.Scope.Version || s.Scope.SchemaURL != schemaURL {
				t.Errorf("%s: span %s: scope %+v, want the launcher's version (%q) and %s", path, s.Name, s.Scope, srv.Scope.Version, schemaURL)
			}
			if s.SpanID == srv.SpanID {
				continue
			}
			clients++
			if s.Kind != tracepb.Span_SPAN_KIND_CLIENT || s.Scope.Name != scopePrefix+lib {
				t.Errorf("%s: %v span %s under scope %s, want a client span of %s", path, s.Kind, s.Name, s.Scope.Name, scopePrefix+lib)
			}
			// Up its parents to the server span, within the trace.
			p, hops := s, 0
			for ; p.ParentSpanID != srv.SpanID && hops < 4; hops++ {
				q, ok := byID[p.ParentSpanID]
				if !ok {
					t.Errorf("%s: span %s: parent %s is no span of the trace: %s", path, p.Name, p.ParentSpanID, spanList(spans))
					break
				}
				p = q
			}
			if hops > 0 {
				nested++
			}
		}
		if clients == 0 {
			t.Errorf("%s: no client span: %s", path, spanList(spans))
		}
	}
	if lib == "goredis" && nested == 0 {
		t.Errorf("no Redis connection set-up span under the command that opened it: %s", spanList(recv.Spans()))
	}
	if said := launcherLines(r); said != "" {
		t.Errorf("launcher said: %s", said)
	}
}

// scopePrefix is the probe packages' path: each library's scope is its package's.
const scopePrefix = "github.com/otel-go-launcher/otel-go-launcher/probes/"

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
