package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// echoed is what /echo replies: what the upstream service received.
type echoed struct {
	Traceparent      string `json:"traceparent"`
	TraceparentCount int    `json:"traceparent_count"`
	Tracestate       string `json:"tracestate"`
	TracestateCount  int    `json:"tracestate_count"`
	Length           int64  `json:"length"`
	Proto            string `json:"proto"`
	SHA256           string `json:"sha256"`
}

// services are two copies of the test server under two launchers exporting to one
// receiver: A calls B ($UPSTREAM).
type services struct {
	recv       *testenv.Receiver
	a, b       *run
	aURL, bURL string
	client     *http.Client
}

func startServices(t *testing.T, a, b testenv.Target, env ...string) *services {
	t.Helper()
	s := &services{recv: testenv.StartReceiver(t), client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}}
	var bAddr, aAddr string
	s.b, bAddr = tracedServer(t, b, s.recv, append([]string{"OTEL_SERVICE_NAME=B"}, env...)...)
	s.a, aAddr = tracedServer(t, a, s.recv, append([]string{"OTEL_SERVICE_NAME=A", "UPSTREAM=http://" + bAddr}, env...)...)
	firstRequest(t, bAddr, "/")
	firstRequest(t, aAddr, "/")
	s.aURL, s.bURL = "http://"+aAddr, "http://"+bAddr
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("launcher A:\n%s\nlauncher B:\n%s", s.a.stderr, s.b.stderr)
		}
	})
	return s
}

// call makes one request to A and returns the body.
func (s *services) call(t *testing.T, method, path string, body io.Reader, header map[string]string) []byte {
	t.Helper()
	req, err := http.NewRequest(method, s.aURL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (s *services) echo(t *testing.T, path string, header map[string]string) echoed {
	t.Helper()
	var e echoed
	if b := s.call(t, "GET", path, nil, header); json.Unmarshal(b, &e) != nil {
		t.Fatalf("%s: not an echo: %q", path, b)
	}
	return e
}

// spanByID finds a span of service ("A" or "B") by span ID.
func spanByID(spans []testenv.Span, id string) *testenv.Span {
	for i := range spans {
		if spans[i].SpanID == id {
			return &spans[i]
		}
	}
	return nil
}

// spansOf lists service's spans of kind in trace.
func spansOf(spans []testenv.Span, service string, kind tracepb.Span_SpanKind, trace string) []testenv.Span {
	var out []testenv.Span
	for _, s := range spans {
		if s.Resource["service.name"] == service && s.Kind == kind && s.TraceID == trace {
			out = append(out, s)
		}
	}
	return out
}

// traceparentIDs splits a version 00 traceparent.
func traceparentIDs(t *testing.T, tp string) (trace, span, flags string) {
	t.Helper()
	parts := strings.Split(tp, "-")
	if len(parts) != 4 || parts[0] != "00" || len(parts[1]) != 32 || len(parts[2]) != 16 || len(parts[3]) != 2 {
		t.Fatalf("traceparent %q is not a version 00 traceparent", tp)
	}
	return parts[1], parts[2], parts[3]
}

// chain checks that the traceparent B echoed names A's client span, whose parent is
// wantParent (A's server span, or "" for none), and that B's server span is its child.
func (s *services) chain(t *testing.T, what string, e echoed, wantParent func([]testenv.Span) string) *testenv.Span {
	t.Helper()
	if e.TraceparentCount != 1 {
		t.Fatalf("%s: B received %d traceparent headers (%q)", what, e.TraceparentCount, e.Traceparent)
	}
	trace, clientID, flags := traceparentIDs(t, e.Traceparent)
	if flags != "01" {
		t.Errorf("%s: flags %s, want sampled", what, flags)
	}
	spans, ok := s.recv.WaitFor(10*time.Second, func(sp []testenv.Span) bool {
		return spanByID(sp, clientID) != nil && len(spansOf(sp, "B", tracepb.Span_SPAN_KIND_SERVER, trace)) > 0 && wantParent(sp) != "?"
	})
	if !ok {
		t.Fatalf("%s: no client span %s in A and server span in B (trace %s)", what, clientID, trace)
	}
	c := spanByID(spans, clientID)
	if c.Resource["service.name"] != "A" || c.Kind != tracepb.Span_SPAN_KIND_CLIENT || c.TraceID != trace {
		t.Errorf("%s: span %s is %v of %v in trace %s", what, clientID, c.Kind, c.Resource["service.name"], c.TraceID)
	}
	if want := wantParent(spans); c.ParentSpanID != want && !(want == "" && c.ParentSpanID == "") {
		t.Errorf("%s: client span's parent %q, want %q", what, c.ParentSpanID, want)
	}
	var found bool
	for _, b := range spansOf(spans, "B", tracepb.Span_SPAN_KIND_SERVER, trace) {
		found = found || b.ParentSpanID == clientID
	}
	if !found {
		t.Errorf("%s: B's server span is not the child of A's client span %s", what, clientID)
	}
	return c
}

// serverSpanOf returns a function finding A's server span for path in trace (its ID),
// "?" while it has not arrived.
func serverSpanOf(path string, trace *string) func([]testenv.Span) string {
	return func(spans []testenv.Span) string {
		for _, s := range spans {
			if s.Resource["service.name"] == "A" && s.Kind == tracepb.Span_SPAN_KIND_SERVER && s.Attrs["url.path"] == path && (*trace == "" || s.TraceID == *trace) {
				return s.SpanID
			}
		}
		return "?"
	}
}

// One trace across two services under two launchers, on this kernel in lockdown: A's
// server span, A's client span (also from goroutines, through derived contexts), B's
// server span; W3C traceparent inserted into A's requests by the kernel; bodies and
// responses byte-exact; errors; many concurrent requests over kept-alive connections.
func TestPropagation(t *testing.T) {
	for _, pair := range [][2]string{{"go1.22.12", "go1.26.8"}, {"go1.27.3", "go1.24.11"}} {
		t.Run(pair[0]+"->"+pair[1], func(t *testing.T) {
			tgs := testenv.BuildTargets(t, "httpserver", pair[:], []testenv.Variant{testenv.Plain})
			s := startServices(t, tgs[0], tgs[1])

			// A handler's call: parent A's server span; incoming tracestate passed on.
			const incomingTrace = "0af7651916cd43dd8448eb211c80319c"
			e := s.echo(t, "/proxy", map[string]string{"Traceparent": "00-" + incomingTrace + "-b7ad6b7169203331-01", "Tracestate": "congo=t61rcWkgMzE"})
			trace := incomingTrace
			c := s.chain(t, "/proxy", e, serverSpanOf("/proxy", &trace))
			if e.Tracestate != "congo=t61rcWkgMzE" {
				t.Errorf("/proxy: B received tracestate %q", e.Tracestate)
			}
			host, port, _ := net.SplitHostPort(strings.TrimPrefix(s.bURL, "http://"))
			for k, v := range map[string]any{
				"http.request.method": "GET", "url.full": s.bURL + "/echo", "server.address": host, "server.port": mustAtoi(port),
				"http.response.status_code": int64(200), "network.protocol.version": "1.1",
			} {
				if c.Attrs[k] != v {
					t.Errorf("client span %s = %v, want %v", k, c.Attrs[k], v)
				}
			}
			if c.Name != "GET" || c.StatusCode != tracepb.Status_STATUS_CODE_UNSET {
				t.Errorf("client span %q status %v", c.Name, c.StatusCode)
			}

			// Fan-out: two goroutines, contexts derived from the request's.
			var fan []echoed
			if b := s.call(t, "GET", "/fanout", nil, nil); json.Unmarshal(b, &fan) != nil || len(fan) != 2 {
				t.Fatalf("/fanout: %q", b)
			}
			trace, _, _ = traceparentIDs(t, fan[0].Traceparent)
			c0 := s.chain(t, "/fanout 1", fan[0], serverSpanOf("/fanout", &trace))
			c1 := s.chain(t, "/fanout 2", fan[1], serverSpanOf("/fanout", &trace))
			if c0.SpanID == c1.SpanID {
				t.Error("/fanout: both calls got the same span")
			}

			// context.Background() in the handler's goroutine: the handler's span is
			// its parent, found by goroutine.
			e = s.echo(t, "/background", nil)
			trace, _, _ = traceparentIDs(t, e.Traceparent)
			s.chain(t, "/background", e, serverSpanOf("/background", &trace))

			// context.Background() from a goroutine that serves no request: a new
			// trace, whose root is the client span.
			e = s.echo(t, "/detached", nil)
			trace = ""
			c = s.chain(t, "/detached", e, func([]testenv.Span) string { return "" })
			if srv := serverSpanOf("/detached", &trace)(s.recv.Spans()); srv != "?" && spanByID(s.recv.Spans(), srv).TraceID == c.TraceID {
				t.Error("/detached: the call joined the handler's trace")
			}

			// The app sent its own traceparent: A's client span's takes its place, in
			// place, alone.
			const own = "00-11111111111111111111111111111111-2222222222222222-01"
			if e = s.echo(t, "/proxy?traceparent="+own, nil); e.Traceparent == own || e.TraceparentCount != 1 {
				t.Errorf("app's own traceparent: B received %q (%d headers)", e.Traceparent, e.TraceparentCount)
			}
			trace, _, _ = traceparentIDs(t, e.Traceparent)
			s.chain(t, "app's own traceparent", e, serverSpanOf("/proxy", &trace))

			// Only the app's connections: a request from this process to B is untouched.
			resp, err := http.Get(s.bURL + "/echo")
			if err != nil {
				t.Fatal(err)
			}
			json.NewDecoder(resp.Body).Decode(&e)
			resp.Body.Close()
			if e.TraceparentCount != 0 {
				t.Errorf("a request from outside the app got a traceparent: %q", e.Traceparent)
			}

			checkBodies(t, s)
			checkConcurrent(t, s, 200)
			checkErrors(t, s)
		})
	}
}

// checkBodies sends bodies of 1 B, 64 KiB and 4 MiB (and 4 MiB chunked) through A to
// B, and fetches responses of the same sizes from B through A: byte-exact both ways.
func checkBodies(t *testing.T, s *services) {
	for _, n := range []int{1, 64 << 10, 4 << 20} {
		body := make([]byte, n)
		for i := range body {
			body[i] = byte(i*13 + i/509)
		}
		sum := sha256.Sum256(body)
		for _, chunked := range []bool{false, true} {
			var r io.Reader = bytes.NewReader(body)
			if chunked {
				r = io.MultiReader(r) // hides the length: the request is chunked
			}
			var e echoed
			if b := s.call(t, "POST", "/post", r, nil); json.Unmarshal(b, &e) != nil {
				t.Fatalf("POST %d bytes (chunked %v): %q", n, chunked, b)
			}
			if e.Length != int64(n) || e.SHA256 != hex.EncodeToString(sum[:]) || e.TraceparentCount != 1 {
				t.Errorf("POST %d bytes (chunked %v): B received %d bytes, sha256 %s, %d traceparents", n, chunked, e.Length, e.SHA256, e.TraceparentCount)
			}
		}

		got := s.call(t, "GET", "/proxy?to="+url.QueryEscape(fmt.Sprintf("/blob?n=%d", n)), nil, nil)
		if len(got) != n {
			t.Errorf("response of %d bytes arrived with %d", n, len(got))
			continue
		}
		for i, c := range got {
			if c != byte(i*7+i/251) {
				t.Errorf("response of %d bytes differs at byte %d", n, i)
				break
			}
		}
	}
}

// checkConcurrent makes n concurrent proxied requests, twice (the second round over
// the connections the first kept alive): every one gets its own traceparent, naming
// its own client span.
func checkConcurrent(t *testing.T, s *services, n int) {
	seen := map[string]bool{}
	for round := 0; round < 2; round++ {
		echoes := make([]echoed, n)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				req, _ := http.NewRequest("GET", s.aURL+"/proxy", nil)
				resp, err := s.client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				defer resp.Body.Close()
				if err := json.NewDecoder(resp.Body).Decode(&echoes[i]); err != nil {
					t.Errorf("request %d: %v", i, err)
				}
			}(i)
		}
		wg.Wait()
		clients := map[string]string{} // client span -> trace
		for i, e := range echoes {
			if e.TraceparentCount != 1 {
				t.Fatalf("round %d, request %d: B received %d traceparents", round, i, e.TraceparentCount)
			}
			trace, span, _ := traceparentIDs(t, e.Traceparent)
			if seen[span] {
				t.Errorf("round %d: client span %s named twice", round, span)
			}
			seen[span], clients[span] = true, trace
		}
		// A client span and its parent arrive in different exports: A's server span
		// ends after its call, and may be in the next batch. Wait for both.
		spans, ok := s.recv.WaitFor(20*time.Second, func(sp []testenv.Span) bool {
			for id := range clients {
				c := spanByID(sp, id)
				if c == nil || c.ParentSpanID != "" && spanByID(sp, c.ParentSpanID) == nil {
					return false
				}
			}
			return true
		})
		if !ok {
			t.Fatalf("round %d: not every client span and its parent arrived", round)
		}
		for id, trace := range clients {
			c := spanByID(spans, id)
			p := spanByID(spans, c.ParentSpanID)
			if c.TraceID != trace || p == nil || p.Kind != tracepb.Span_SPAN_KIND_SERVER || p.Attrs["url.path"] != "/proxy" {
				t.Errorf("round %d: client span %s (trace %s) has parent %+v", round, id, c.TraceID, p)
			}
		}
	}
}

// checkErrors: a refused connection, a timeout and a TLS failure are client spans with
// status Error and error.type; HTTPS gets a client span, and no header (it cannot).
func checkErrors(t *testing.T, s *services) {
	tlsServer := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer tlsServer.Close()
	for _, c := range []struct{ path, url, errType string }{
		{"/refused", "http://127.0.0.1:1/nothing", "*net.OpError"},
		{"/proxy?timeout=50ms&to=" + url.QueryEscape("/sleep?d=2s"), s.bURL + "/sleep?d=2s", "context.deadlineExceededError"},
		{"/proxy?to=" + url.QueryEscape(tlsServer.URL+"/x"), tlsServer.URL + "/x", "*tls.CertificateVerificationError"},
	} {
		s.call(t, "GET", c.path, nil, nil)
		spans, ok := s.recv.WaitFor(10*time.Second, func(sp []testenv.Span) bool { return clientSpanFor(sp, c.url) != nil })
		if !ok {
			t.Errorf("%s: no client span for %s", c.path, c.url)
			continue
		}
		cs := clientSpanFor(spans, c.url)
		if cs.StatusCode != tracepb.Status_STATUS_CODE_ERROR || cs.Attrs["error.type"] != c.errType || cs.Attrs["http.response.status_code"] != nil {
			t.Errorf("%s: status %v, error.type %v, status code %v; want Error, %s", c.path, cs.StatusCode, cs.Attrs["error.type"], cs.Attrs["http.response.status_code"], c.errType)
		}
		if p := spanByID(spans, cs.ParentSpanID); p == nil || p.Kind != tracepb.Span_SPAN_KIND_SERVER {
			t.Errorf("%s: client span without its server parent", c.path)
		}
	}
}

func clientSpanFor(spans []testenv.Span, url string) *testenv.Span {
	for i := range spans {
		if spans[i].Kind == tracepb.Span_SPAN_KIND_CLIENT && spans[i].Attrs["url.full"] == url {
			return &spans[i]
		}
	}
	return nil
}

// The kernel's sampling decision, which the outgoing traceparent carries, is the one
// the exporter applies: with a ratio sampler at A, a trace is exported by A and B
// exactly when the flag B received says sampled.
func TestPropagationSampling(t *testing.T) {
	tgs := testenv.BuildTargets(t, "httpserver", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})
	s := startServices(t, tgs[0], tgs[0], "OTEL_TRACES_SAMPLER=parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG=0.5")
	const n = 60
	sampled := map[string]bool{}
	for i := 0; i < n; i++ {
		e := s.echo(t, "/proxy", nil)
		trace, _, flags := traceparentIDs(t, e.Traceparent)
		sampled[trace] = flags == "01"
	}
	var on int
	for _, v := range sampled {
		if v {
			on++
		}
	}
	if on == 0 || on == n {
		t.Fatalf("%d of %d traces sampled at ratio 0.5", on, n)
	}
	// Wait for all sampled traces' three spans, then for anything extra.
	s.recv.WaitFor(10*time.Second, func(sp []testenv.Span) bool { return len(sp) >= 3*on })
	time.Sleep(time.Second)
	perTrace := map[string]int{}
	for _, sp := range s.recv.Spans() {
		if _, ours := sampled[sp.TraceID]; ours {
			perTrace[sp.TraceID]++
		}
	}
	for trace, want := range sampled {
		if got := perTrace[trace]; want && got != 3 || !want && got != 0 {
			t.Errorf("trace %s: sampled flag %v, %d spans exported", trace, want, got)
		}
	}
}

// --propagate=false: client spans, and requests exactly as the app wrote them.
func TestPropagationOff(t *testing.T) {
	tgs := testenv.BuildTargets(t, "httpserver", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})
	s := startServices(t, tgs[0], tgs[0], "LAUNCH_PROPAGATE=false")
	if e := s.echo(t, "/proxy", nil); e.TraceparentCount != 0 {
		t.Errorf("B received traceparent %q", e.Traceparent)
	}
	spans, ok := s.recv.WaitFor(10*time.Second, func(sp []testenv.Span) bool { return clientSpanFor(sp, s.bURL+"/echo") != nil })
	if !ok {
		t.Fatal("no client span")
	}
	c := clientSpanFor(spans, s.bURL+"/echo")
	if p := spanByID(spans, c.ParentSpanID); p == nil || p.Attrs["url.path"] != "/proxy" {
		t.Errorf("client span's parent: %+v", p)
	}
}
