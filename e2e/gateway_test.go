package e2e

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// TestGateway: a client -> G -> B, G the gateway target (TLS in front, a middleware
// chain of 14 context layers with context types of its own, httputil.ReverseProxy, a
// call made without the request's context), B the test server, both under the
// launcher, over HTTP/1.1 and HTTP/2 on TLS. Every span of each trace is checked: the
// path B's traceparent names, and that every span's parent is in the trace.
func TestGateway(t *testing.T) {
	testenv.RequireRoot(t)
	gw := testenv.BuildTargets(t, "gateway", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})[0]
	srv := testenv.BuildTargets(t, "httpserver", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})[0]
	recv := testenv.StartReceiver(t)
	b, bAddr := tracedServer(t, srv, recv, "OTEL_SERVICE_NAME=B")
	g, gAddr := tracedServer(t, gw, recv, "OTEL_SERVICE_NAME=G", "BACKEND=http://"+bAddr, "LAYERS=14")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("launcher G:\n%s\nlauncher B:\n%s", g.stderr, b.stderr)
		}
	})
	firstRequest(t, bAddr, "/")
	tlsConfig := &tls.Config{InsecureSkipVerify: true} // the gateway's own certificate
	clients := map[string]*http.Client{
		"1.1": {Transport: &http.Transport{TLSClientConfig: tlsConfig, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}},
		"2":   {Transport: &http.Transport{TLSClientConfig: tlsConfig, ForceAttemptHTTP2: true}},
	}
	waitGet(t, clients["1.1"], "https://"+gAddr+"/healthz")

	for i, version := range []string{"1.1", "2"} {
		t.Run("HTTP/"+version, func(t *testing.T) {
			client := clients[version]
			// Under an incoming trace: the proxy forwards the caller's traceparent,
			// which G's client span's replaces.
			trace, parent := fmt.Sprintf("%032x", 0x6a7e0000+i), "b7ad6b7169203331"
			e := echoVia(t, client, "https://"+gAddr+"/api/echo", http.Header{"Traceparent": {"00-" + trace + "-" + parent + "-01"}})
			spans := checkPath(t, recv, "proxied under an incoming trace", e, parent, clientOf("G"), serverOf("G"))
			checkGatewaySpan(t, spans, e, version)
			checkWholeTrace(t, recv, trace, parent, 3)

			// A new trace.
			e = echoVia(t, client, "https://"+gAddr+"/api/echo", nil)
			spans = checkPath(t, recv, "proxied, a new trace", e, "", clientOf("G"), serverOf("G"))
			checkGatewaySpan(t, spans, e, version)
			tr, _, _ := traceparentIDs(t, e.Traceparent)
			checkWholeTrace(t, recv, tr, "", 3)

			// Two calls from the handler: with the request's context (14 layers
			// up), and without a context: both children of G's server span.
			replies := aggregateVia(t, client, "https://"+gAddr+"/aggregate")
			var server string
			for j, e := range replies {
				spans := checkPath(t, recv, fmt.Sprintf("aggregate, call %d", j), e, "", clientOf("G"), serverOf("G"))
				_, leaf, _ := traceparentIDs(t, e.Traceparent)
				s := spanByID(spans, spanByID(spans, leaf).ParentSpanID)
				if j > 0 && s.SpanID != server {
					t.Errorf("aggregate: call %d's parent is G's server span %s, call 0's %s", j, s.SpanID, server)
				}
				server = s.SpanID
			}
			tr, _, _ = traceparentIDs(t, replies[0].Traceparent)
			checkWholeTrace(t, recv, tr, "", 5)
		})
	}
}

// checkGatewaySpan checks G's server span on the path to B's request e: its protocol
// version and that it says the request came over TLS.
func checkGatewaySpan(t *testing.T, spans []testenv.Span, e echoed, version string) {
	t.Helper()
	_, leaf, _ := traceparentIDs(t, e.Traceparent)
	s := spanByID(spans, spanByID(spans, leaf).ParentSpanID)
	if s.Attrs["network.protocol.version"] != version || s.Attrs["url.scheme"] != "https" {
		t.Errorf("G's server span %s: network.protocol.version %v, url.scheme %v, want %s over https", s.Name, s.Attrs["network.protocol.version"], s.Attrs["url.scheme"], version)
	}
}

// checkWholeTrace waits for the n spans of trace and checks each one's parent: the
// one root's is rootParent ("" for none), every other's a span of the trace.
func checkWholeTrace(t *testing.T, recv *testenv.Receiver, trace, rootParent string, n int) {
	t.Helper()
	of := func(spans []testenv.Span) []testenv.Span {
		var out []testenv.Span
		for _, s := range spans {
			if s.TraceID == trace {
				out = append(out, s)
			}
		}
		return out
	}
	spans, _ := recv.WaitFor(15*time.Second, func(sp []testenv.Span) bool { return len(of(sp)) >= n })
	in := of(spans)
	if len(in) != n {
		t.Fatalf("trace %s: %d spans, want %d\n%s", trace, len(in), n, spanList(in))
	}
	ids := map[string]bool{}
	for _, s := range in {
		ids[s.SpanID] = true
	}
	roots := 0
	for _, s := range in {
		switch {
		case s.ParentSpanID == rootParent:
			roots++
			if s.Kind != tracepb.Span_SPAN_KIND_SERVER {
				t.Errorf("trace %s: the root is a %v span %q", trace, s.Kind, s.Name)
			}
		case !ids[s.ParentSpanID]:
			t.Errorf("trace %s: %v's %v span %q has parent %s, not in the trace\n%s", trace, s.Resource["service.name"], s.Kind, s.Name, s.ParentSpanID, spanList(in))
		}
	}
	if roots != 1 {
		t.Errorf("trace %s: %d spans with parent %q, want 1\n%s", trace, roots, rootParent, spanList(in))
	}
}

// aggregateVia gets url, a JSON array of B's echoes.
func aggregateVia(t *testing.T, client *http.Client, url string) []echoed {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []echoed
	if err := json.Unmarshal(b, &out); err != nil || len(out) != 2 {
		t.Fatalf("%s: %s %q", url, resp.Status, b)
	}
	return out
}
