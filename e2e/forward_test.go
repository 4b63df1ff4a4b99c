package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// Proxies forward the incoming traceparent: the launcher gives the
// forwarded header the value of the proxy's own client span, in place, so that the
// proxy's hop is in the trace: A's server span -> A's client span -> the proxy's
// server span -> its client span -> B's server span.

// hop is a span a path through the services passes: a service's span of a kind.
type hop struct {
	service string
	kind    tracepb.Span_SpanKind
}

func serverOf(service string) hop { return hop{service, tracepb.Span_SPAN_KIND_SERVER} }
func clientOf(service string) hop { return hop{service, tracepb.Span_SPAN_KIND_CLIENT} }

// checkPath checks the trace tree above the span the traceparent B received names:
// that span and its parents must be path's hops, nearest first, the last one the
// child of root ("" for a root span), all in one trace; and B's server span for the
// request must be the first hop's child.
func checkPath(t *testing.T, recv *testenv.Receiver, what string, e echoed, root string, path ...hop) []testenv.Span {
	t.Helper()
	if e.TraceparentCount != 1 {
		t.Fatalf("%s: B received %d traceparent headers (%q)", what, e.TraceparentCount, e.Traceparent)
	}
	trace, leaf, _ := traceparentIDs(t, e.Traceparent)
	walk := func(spans []testenv.Span) ([]*testenv.Span, string) {
		var got []*testenv.Span
		id := leaf
		for range path {
			s := spanByID(spans, id)
			if s == nil {
				return got, id
			}
			got = append(got, s)
			id = s.ParentSpanID
		}
		return got, ""
	}
	spans, ok := recv.WaitFor(15*time.Second, func(sp []testenv.Span) bool {
		got, _ := walk(sp)
		return len(got) == len(path) && len(serverChildren(sp, "B", leaf)) > 0
	})
	got, missing := walk(spans)
	if !ok {
		t.Fatalf("%s: the path from B's parent %s stops at %s after %d of %d spans (%s); B's server spans under it: %d\n%s",
			what, leaf, missing, len(got), len(path), hopsOf(got), len(serverChildren(spans, "B", leaf)), spanList(spans))
	}
	for i, s := range got {
		if (hop{s.Resource["service.name"].(string), s.Kind}) != path[i] || s.TraceID != trace {
			t.Errorf("%s: span %d of the path is %s's %v in trace %s, want %s's %v in trace %s", what, i, s.Resource["service.name"], s.Kind, s.TraceID, path[i].service, path[i].kind, trace)
		}
	}
	if top := got[len(got)-1]; top.ParentSpanID != root {
		t.Errorf("%s: %s's %v has parent %q, want %q", what, top.Resource["service.name"], top.Kind, top.ParentSpanID, root)
	}
	if b := serverChildren(spans, "B", leaf); len(b) != 1 || b[0].TraceID != trace {
		t.Errorf("%s: B's server spans under %s: %d", what, leaf, len(b))
	}
	return spans
}

func serverChildren(spans []testenv.Span, service, parent string) []testenv.Span {
	var out []testenv.Span
	for _, s := range spans {
		if s.Resource["service.name"] == service && s.Kind == tracepb.Span_SPAN_KIND_SERVER && s.ParentSpanID == parent {
			out = append(out, s)
		}
	}
	return out
}

func hopsOf(spans []*testenv.Span) string {
	var parts []string
	for _, s := range spans {
		parts = append(parts, fmt.Sprintf("%v %v %s", s.Resource["service.name"], s.Kind, s.SpanID))
	}
	return strings.Join(parts, " <- ")
}

// echoVia sends GET url with header and decodes B's echo.
func echoVia(t *testing.T, client *http.Client, url string, header http.Header) echoed {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e echoed
	if json.Unmarshal(b, &e) != nil {
		t.Fatalf("%s: not an echo: %s %q", url, resp.Status, b)
	}
	return e
}

// chainThrough is A -> a proxy -> B, each under its launcher, exporting to one receiver.
type chainThrough struct {
	recv    *testenv.Receiver
	a, p, b *run
	aAddr   string // A: the httpserver target, UPSTREAM the proxy
	pAddr   string
	bAddr   string
	client  *http.Client
}

// checkThrough runs the chain's common checks: a call A's handler makes under an
// incoming trace, and one carrying a traceparent A's handler set itself.
func (c *chainThrough) checkThrough(t *testing.T, proxy string) {
	const incoming, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	e := echoVia(t, c.client, "http://"+c.aAddr+"/proxy", http.Header{"Traceparent": {"00-" + incoming + "-" + parent + "-01"}, "Tracestate": {"congo=t61rcWkgMzE"}})
	spans := checkPath(t, c.recv, "under an incoming trace", e, parent, clientOf(proxy), serverOf(proxy), clientOf("A"), serverOf("A"))
	if tr, _, _ := traceparentIDs(t, e.Traceparent); tr != incoming {
		t.Errorf("the trace is %s, want the incoming %s", tr, incoming)
	}
	// The proxy forwarded A's tracestate, which is its span's parent's: as it was.
	if e.Tracestate != "congo=t61rcWkgMzE" || e.TracestateCount != 1 {
		t.Errorf("B received %d tracestate lines, %q", e.TracestateCount, e.Tracestate)
	}
	_, leaf, _ := traceparentIDs(t, e.Traceparent)
	if b := serverChildren(spans, "B", leaf); len(b) == 1 && b[0].TraceState != "congo=t61rcWkgMzE" {
		t.Errorf("B's server span: tracestate %q", b[0].TraceState)
	}

	// A's handler sets a traceparent of its own: A's client span's replaces it, and
	// the proxy's replaces that.
	const own = "00-11111111111111111111111111111111-2222222222222222-01"
	e = echoVia(t, c.client, "http://"+c.aAddr+"/proxy?traceparent="+own, nil)
	checkPath(t, c.recv, "A's own traceparent", e, "", clientOf(proxy), serverOf(proxy), clientOf("A"), serverOf("A"))
}

// stopAndSay stops a launcher and returns what it said (its "launch:" lines).
func stopAndSay(t *testing.T, r *run) string {
	t.Helper()
	r.signal(syscall.SIGTERM)
	r.wait(20 * time.Second)
	return launcherLines(r)
}

// keptAtExit reads the exit line's counts: headers the app wrote that went as written,
// and of those HTTP/1 lines split across writes.
var keptAtExit = regexp.MustCompile(`(\d+) trace context headers the app wrote itself \(forwarded, or its own\) went as written instead of ours \(HTTP/1: (\d+) came in two writes, (\d+) were not found`)

// TestReverseProxyPropagation: A -> httputil.ReverseProxy -> B over HTTP/1, the proxy
// built with a Go whose header map is a hash map (1.22) and one with Swiss tables
// (1.26). The whole tree; the tracestate the proxy forwards as it came (W3C's cases:
// B gets what the proxy's server span kept); and a traceparent line that the proxy's
// writes split (its head over 4 KiB), left as written, counted and said at exit.
func TestReverseProxyPropagation(t *testing.T) {
	for _, proxyGo := range []string{"go1.22.12", "go1.26.8"} {
		t.Run(proxyGo, func(t *testing.T) {
			tgs := testenv.BuildTargets(t, "httpserver", []string{"go1.26.8", proxyGo}, []testenv.Variant{testenv.Plain})
			c := &chainThrough{recv: testenv.StartReceiver(t), client: &http.Client{}}
			c.b, c.bAddr = tracedServer(t, tgs[0], c.recv, "OTEL_SERVICE_NAME=B")
			c.p, c.pAddr = tracedServer(t, tgs[1], c.recv, "OTEL_SERVICE_NAME=P", "UPSTREAM=http://"+c.bAddr)
			c.a, c.aAddr = tracedServer(t, tgs[0], c.recv, "OTEL_SERVICE_NAME=A", "UPSTREAM=http://"+c.pAddr+"/rp")
			for _, addr := range []string{c.bAddr, c.pAddr, c.aAddr} {
				firstRequest(t, addr, "/")
			}
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("launcher A:\n%s\nlauncher P:\n%s\nlauncher B:\n%s", c.a.stderr, c.p.stderr, c.b.stderr)
				}
			})
			c.checkThrough(t, "P")

			// Straight to the proxy, with tracestate values its server span keeps
			// otherwise than they came: B must get what P's server span kept, and
			// B's server span must say so.
			for i, tc := range tracestateCases {
				trace := fmt.Sprintf("%032x", 0x290000+i)
				e := echoVia(t, c.client, "http://"+c.pAddr+"/rp/echo", http.Header{"Traceparent": {"00-" + trace + "-b7ad6b7169203331-01"}, "Tracestate": tc.fields})
				spans := checkPath(t, c.recv, tc.name, e, "b7ad6b7169203331", clientOf("P"), serverOf("P"))
				_, leaf, _ := traceparentIDs(t, e.Traceparent)
				if b := serverChildren(spans, "B", leaf); len(b) == 1 && b[0].TraceState != tc.want {
					t.Errorf("%s: B's server span: tracestate %q, want %q", tc.name, b[0].TraceState, tc.want)
				}
				if p := spanByID(spans, spanByID(spans, leaf).ParentSpanID); p.TraceState != tc.want {
					t.Errorf("%s: P's server span: tracestate %q, want %q", tc.name, p.TraceState, tc.want)
				}
				if e.TracestateCount != len(tc.fields) { // the lines forwarded: ours in them
					t.Errorf("%s: B received %d tracestate lines, want %d", tc.name, e.TracestateCount, len(tc.fields))
				}
			}

			// Heads of a little over 4 KiB: net/http writes them in 4 KiB pieces, and
			// where the piece ends inside the traceparent line's value, the line goes
			// as the proxy wrote it - counted, and said when the proxy's launcher
			// exits. Where it ends inside its name only, the value is replaced.
			const forwarded = "00-5bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
			replaced, kept := 0, 0
			for pad := 3880; pad < 4040; pad++ {
				e := echoVia(t, c.client, "http://"+c.pAddr+"/rp/echo", http.Header{"A-Pad": {strings.Repeat("p", pad)}, "Traceparent": {forwarded}})
				switch {
				case e.Traceparent == forwarded:
					kept++
				case strings.HasPrefix(e.Traceparent, "00-5bf92f3577b34da6a3ce929d0e0e4736-"):
					replaced++
				default:
					t.Errorf("pad %d: B received %q", pad, e.Traceparent)
				}
			}
			if kept == 0 || replaced == 0 || kept > 70 {
				t.Errorf("of 160 heads around 4 KiB, %d kept their traceparent line (split across writes), %d had it replaced", kept, replaced)
			}
			t.Logf("heads around 4 KiB: %d had their traceparent line replaced, %d kept it (split across writes)", replaced, kept)
			said := stopAndSay(t, c.p)
			t.Logf("P's launcher at exit: %s", said)
			m := keptAtExit.FindStringSubmatch(said)
			if m == nil || m[1] != strconv.Itoa(kept) || m[2] != strconv.Itoa(kept) || m[3] != "0" {
				t.Errorf("%d lines kept; P's launcher said at exit:\n%s", kept, said)
			}
		})
	}
}

// TestCaddyPropagation: A -> Caddy (reverse_proxy; built from the module proxy, a
// program the project did not write, launched as any Go app) -> B over HTTP/1: the
// whole tree.
func TestCaddyPropagation(t *testing.T) {
	testenv.RequireRoot(t)
	caddy := testenv.BuildCaddy(t)
	tgs := testenv.BuildTargets(t, "httpserver", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})
	c := &chainThrough{recv: testenv.StartReceiver(t), client: &http.Client{}}
	c.b, c.bAddr = tracedServer(t, tgs[0], c.recv, "OTEL_SERVICE_NAME=B")
	c.p, c.pAddr = tracedCaddy(t, caddy, c.recv, c.bAddr, "http")
	c.a, c.aAddr = tracedServer(t, tgs[0], c.recv, "OTEL_SERVICE_NAME=A", "UPSTREAM=http://"+c.pAddr)
	for _, addr := range []string{c.bAddr, c.aAddr} {
		firstRequest(t, addr, "/")
	}
	waitHTTP(t, "http://"+c.pAddr+"/echo")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("launcher A:\n%s\nlauncher caddy:\n%s\nlauncher B:\n%s", c.a.stderr, c.p.stderr, c.b.stderr)
		}
	})
	c.checkThrough(t, "caddy")
	if said := stopAndSay(t, c.p); strings.Contains(said, "went as written") {
		t.Errorf("caddy's launcher said: %s", said)
	}
}

// tracedCaddy runs Caddy under the launcher as a reverse proxy to upstream, its
// transport to it HTTP/1 ("http") or h2c: it serves HTTP/1 and h2c.
func tracedCaddy(t *testing.T, caddy string, recv *testenv.Receiver, upstream, versions string) (*run, string) {
	t.Helper()
	addr := freeAddr(t)
	dir := t.TempDir()
	transport := map[string]any{"protocol": "http"}
	if versions == "h2c" {
		transport["versions"] = []string{"h2c", "2"}
	}
	config := map[string]any{
		"admin":   map[string]any{"disabled": true},
		"logging": map[string]any{"logs": map[string]any{"default": map[string]any{"level": "ERROR"}}},
		"apps": map[string]any{"http": map[string]any{"servers": map[string]any{"proxy": map[string]any{
			"listen":          []string{addr},
			"protocols":       []string{"h1", "h2c"},
			"automatic_https": map[string]any{"disable": true},
			"routes": []any{map[string]any{"handle": []any{map[string]any{
				"handler":   "reverse_proxy",
				"upstreams": []any{map[string]any{"dial": upstream}},
				"transport": transport,
			}}}},
		}}}},
	}
	b, _ := json.Marshal(config)
	file := filepath.Join(dir, "caddy.json")
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(),
		"HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir,
		"OTEL_EXPORTER_OTLP_ENDPOINT="+recv.Endpoint, "OTEL_BSP_SCHEDULE_DELAY=500",
		"OTEL_SERVICE_NAME=caddy", "OTEL_RESOURCE_ATTRIBUTES=", "OTEL_TRACES_EXPORTER=", "OTEL_TRACES_SAMPLER=")
	r := start(t, opts{env: env, stdin: strings.NewReader("")}, launchBin(t), "--require-instrumentation", "--", caddy, "run", "--config", file)
	return r, addr
}

// TestReverseProxyH2C: A -> httputil.ReverseProxy over plaintext HTTP/2 (Go 1.24's
// http.Protocols) -> B. Go's encoder Huffman-codes the forwarded traceparent and, from
// the connection's second request on, sends its name as an index: the program finds
// the field by its value. A value the proxy forwards a second time goes as an index
// into the tables, which the program cannot change: the peer reads the value its table
// got the first time - the proxy's first client span - and the proxy's launcher says so
// at exit.
func TestReverseProxyH2C(t *testing.T) {
	tgs := testenv.BuildTargets(t, "httpserver", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})
	c := &chainThrough{recv: testenv.StartReceiver(t), client: &http.Client{}}
	c.b, c.bAddr = tracedServer(t, tgs[0], c.recv, "OTEL_SERVICE_NAME=B", "HTTPSERVER_H2C=1")
	c.p, c.pAddr = tracedServer(t, tgs[0], c.recv, "OTEL_SERVICE_NAME=P", "UPSTREAM=http://"+c.bAddr)
	c.a, c.aAddr = tracedServer(t, tgs[0], c.recv, "OTEL_SERVICE_NAME=A", "UPSTREAM=http://"+c.pAddr+"/rp2")
	for _, addr := range []string{c.bAddr, c.pAddr, c.aAddr} {
		firstRequest(t, addr, "/")
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("launcher A:\n%s\nlauncher P:\n%s\nlauncher B:\n%s", c.a.stderr, c.p.stderr, c.b.stderr)
		}
	})
	c.checkThrough(t, "P")
	for i := 0; i < 5; i++ { // the name indexed now: found by the value
		parent := fmt.Sprintf("%016x", 0x2900+i)
		e := echoVia(t, c.client, "http://"+c.aAddr+"/proxy", http.Header{"Traceparent": {"00-" + fmt.Sprintf("%032x", 0x29a000+i) + "-" + parent + "-01"}})
		if e.Proto != "HTTP/2.0" {
			t.Fatalf("B was reached over %q", e.Proto)
		}
		checkPath(t, c.recv, fmt.Sprintf("request %d", i), e, parent, clientOf("P"), serverOf("P"), clientOf("A"), serverOf("A"))
	}
	// Straight to the proxy: whatever came of the tracestate (ours in place, or the
	// caller's left where its name is an index), B's server span keeps what P's did.
	for i, tc := range tracestateCases {
		trace := fmt.Sprintf("%032x", 0x29b000+i)
		e := echoVia(t, c.client, "http://"+c.pAddr+"/rp2/echo", http.Header{"Traceparent": {"00-" + trace + "-b7ad6b7169203331-01"}, "Tracestate": tc.fields})
		spans := checkPath(t, c.recv, tc.name, e, "b7ad6b7169203331", clientOf("P"), serverOf("P"))
		_, leaf, _ := traceparentIDs(t, e.Traceparent)
		if b := serverChildren(spans, "B", leaf); len(b) == 1 && b[0].TraceState != tc.want {
			t.Errorf("%s: B's server span: tracestate %q, want %q", tc.name, b[0].TraceState, tc.want)
		}
	}
	// The same traceparent forwarded twice: the second goes as an index.
	again := http.Header{"Traceparent": {"00-7bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
	e1 := echoVia(t, c.client, "http://"+c.pAddr+"/rp2/echo", again)
	checkPath(t, c.recv, "forwarded once", e1, "00f067aa0ba902b7", clientOf("P"), serverOf("P"))
	e2 := echoVia(t, c.client, "http://"+c.pAddr+"/rp2/echo", again)
	if e2.Traceparent != e1.Traceparent {
		t.Errorf("forwarded again: B read %q, want what its table got the first time, %q", e2.Traceparent, e1.Traceparent)
	}
	said := stopAndSay(t, c.p)
	t.Logf("P's launcher at exit: %s", said)
	if m := regexp.MustCompile(`HTTP/2: (\d+) traceparents were no literal`).FindStringSubmatch(said); m == nil || m[1] != "1" {
		t.Errorf("P's launcher said at exit:\n%s", said)
	}
}

// TestCaddyH2C: A -> Caddy, its upstream over plaintext HTTP/2 -> B: the whole tree.
func TestCaddyH2C(t *testing.T) {
	testenv.RequireRoot(t)
	caddy := testenv.BuildCaddy(t)
	tgs := testenv.BuildTargets(t, "httpserver", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})
	c := &chainThrough{recv: testenv.StartReceiver(t), client: &http.Client{}}
	c.b, c.bAddr = tracedServer(t, tgs[0], c.recv, "OTEL_SERVICE_NAME=B", "HTTPSERVER_H2C=1")
	c.p, c.pAddr = tracedCaddy(t, caddy, c.recv, c.bAddr, "h2c")
	c.a, c.aAddr = tracedServer(t, tgs[0], c.recv, "OTEL_SERVICE_NAME=A", "UPSTREAM=http://"+c.pAddr)
	for _, addr := range []string{c.bAddr, c.aAddr} {
		firstRequest(t, addr, "/")
	}
	waitHTTP(t, "http://"+c.pAddr+"/echo")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("launcher A:\n%s\nlauncher caddy:\n%s\nlauncher B:\n%s", c.a.stderr, c.p.stderr, c.b.stderr)
		}
	})
	c.checkThrough(t, "caddy")
	for i := 0; i < 3; i++ {
		parent := fmt.Sprintf("%016x", 0x2a00+i)
		e := echoVia(t, c.client, "http://"+c.aAddr+"/proxy", http.Header{"Traceparent": {"00-" + fmt.Sprintf("%032x", 0x29c000+i) + "-" + parent + "-01"}})
		if e.Proto != "HTTP/2.0" {
			t.Fatalf("B was reached over %q", e.Proto)
		}
		checkPath(t, c.recv, fmt.Sprintf("request %d", i), e, parent, clientOf("caddy"), serverOf("caddy"), clientOf("A"), serverOf("A"))
	}
	if said := stopAndSay(t, c.p); strings.Contains(said, "went as written") {
		t.Errorf("caddy's launcher said: %s", said)
	}
}

// tracedGRPCAs runs the gRPC test service under the launcher as service name, its next
// hop next ("" for none).
func tracedGRPCAs(t *testing.T, tg testenv.Target, recv *testenv.Receiver, name, next string) (*run, string) {
	t.Helper()
	testenv.RequireRoot(t)
	addr := freeAddr(t)
	env := append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT="+recv.Endpoint, "OTEL_BSP_SCHEDULE_DELAY=200",
		"OTEL_SERVICE_NAME="+name, "OTEL_RESOURCE_ATTRIBUTES=", "OTEL_TRACES_EXPORTER=", "OTEL_TRACES_SAMPLER=")
	args := []string{launchBin(t), "--require-instrumentation", "--", tg.Path, addr}
	if next != "" {
		args = append(args, next)
	}
	return start(t, opts{env: env, stdin: strings.NewReader("")}, args...), addr
}

// TestGRPCForwardPropagation: a gRPC proxy forwards the incoming traceparent and
// tracestate metadata (the grpcservice's Forward). A.Via -> P.Forward -> B.Seen, the
// whole tree, with grpc v1.60.1 and v1.85.0; the same traceparent forwarded twice
// goes as an index the second time, counted and said at exit.
func TestGRPCForwardPropagation(t *testing.T) {
	for _, tg := range testenv.BuildGRPC(t, testenv.GRPCBuild{Version: "v1.60.1", Toolchain: "go1.24.11"}, testenv.GRPCBuild{Version: "v1.85.0", Toolchain: "go1.26.8"}) {
		t.Run(tg.Variant.Name, func(t *testing.T) {
			recv := testenv.StartReceiver(t)
			b, bAddr := tracedGRPCAs(t, tg, recv, "B", "")
			dialGRPC(t, bAddr)
			p, pAddr := tracedGRPCAs(t, tg, recv, "P", bAddr)
			pc := dialGRPC(t, pAddr)
			a, aAddr := tracedGRPCAs(t, tg, recv, "A", pAddr)
			ac := dialGRPC(t, aAddr)
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("launcher A:\n%s\nlauncher P:\n%s\nlauncher B:\n%s", a.stderr, p.stderr, b.stderr)
				}
			})
			seen := func(conn *grpc.ClientConn, method, arg, traceparent string) echoed {
				t.Helper()
				ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", traceparent, "tracestate", "congo=t61rcWkgMzE")
				out := new(wrapperspb.StringValue)
				if err := conn.Invoke(ctx, method, wrapperspb.String(arg), out); err != nil {
					t.Fatal(err)
				}
				tp, ts, _ := strings.Cut(strings.TrimPrefix(out.Value, "traceparent="), ";tracestate=")
				e := echoed{Traceparent: tp, TraceparentCount: len(strings.Split(tp, ",")), Tracestate: ts}
				if ts != "congo=t61rcWkgMzE" {
					t.Errorf("B received tracestate %q", ts)
				}
				return e
			}
			for i := 0; i < 4; i++ {
				parent := fmt.Sprintf("%016x", 0x2b00+i)
				e := seen(ac, "/demo.Echo/Via", "/demo.Echo/Forward,/demo.Echo/Seen", "00-"+fmt.Sprintf("%032x", 0x29d000+i)+"-"+parent+"-01")
				checkPath(t, recv, fmt.Sprintf("call %d", i), e, parent, clientOf("P"), serverOf("P"), clientOf("A"), serverOf("A"))
			}
			const again = "00-8bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
			e1 := seen(pc, "/demo.Echo/Forward", "/demo.Echo/Seen", again)
			checkPath(t, recv, "forwarded once", e1, "00f067aa0ba902b7", clientOf("P"), serverOf("P"))
			if e2 := seen(pc, "/demo.Echo/Forward", "/demo.Echo/Seen", again); e2.Traceparent != e1.Traceparent {
				t.Errorf("forwarded again: B read %q, want what its table got the first time, %q", e2.Traceparent, e1.Traceparent)
			}
			said := stopAndSay(t, p)
			t.Logf("P's launcher at exit: %s", said)
			if m := regexp.MustCompile(`HTTP/2: (\d+) traceparents were no literal`).FindStringSubmatch(said); m == nil || m[1] != "1" {
				t.Errorf("P's launcher said at exit:\n%s", said)
			}
		})
	}
}
