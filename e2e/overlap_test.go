package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// The app starts before the probes are attached, and its first instrumented call
// waits for them: a command whose main makes an HTTP call at once is held there (the
// launcher says so at debug level), and that call is traced whole - its client span,
// and the traceparent the socket programs put on it, which makes the called service's
// server span its child. Over plaintext HTTP/2 it is held again at its connection's
// set-up, until the socket programs follow HTTP/2. With --gate, the app waits at the
// start gate instead, and the trace is the same.
func TestFirstCallHeld(t *testing.T) {
	testenv.RequireRoot(t)
	onecall := testenv.Build(t, "./e2e/testdata/onecall", "CGO_ENABLED=0")
	tg := testenv.BuildTargets(t, "httpserver", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})[0]
	recvB := testenv.StartReceiver(t)
	b, addr := tracedServer(t, tg, recvB, "HTTPSERVER_H2C=1")
	firstRequest(t, addr, "/items/ready")
	if _, ok := recvB.WaitFor(10*time.Second, byPath("/items/ready")); !ok {
		t.Fatalf("B traces nothing\n%s", b.stderr)
	}
	for _, c := range []struct {
		name  string
		flags []string
		env   []string
		held  []string // the launcher's debug lines
	}{
		{"overlapped", nil, nil, []string{"hold released points=core continued=true"}},
		{"overlapped-h2c", nil, []string{"ONECALL_H2C=1"}, []string{"hold released points=core continued=true", "hold released points=HTTP/2 continued=true"}},
		{"gate", []string{"--gate"}, nil, nil},
		{"gate-h2c", []string{"--gate"}, []string{"ONECALL_H2C=1"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			recvA := testenv.StartReceiver(t)
			path := "/items/first-call-" + c.name
			env := append(append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT="+recvA.Endpoint), c.env...)
			argv := append(append([]string{launchBin(t), "--log-level", "debug"}, c.flags...), "--", onecall, "http://"+addr+path)
			e, _, stderr := runLaunch(t, opts{env: env}, argv...)
			if e.code != 0 {
				t.Fatalf("launcher %v\n%s", e, stderr)
			}
			for _, line := range c.held {
				if !strings.Contains(stderr, line) {
					t.Errorf("the app's first call was not held (no %q)\n%s", line, stderr)
				}
			}
			if c.held == nil && strings.Contains(stderr, "hold released") {
				t.Errorf("--gate: the hold was used\n%s", stderr)
			}
			spans := recvA.Spans()
			if len(spans) != 1 || spans[0].Kind != tracepb.Span_SPAN_KIND_CLIENT || spans[0].Attrs["url.full"] != "http://"+addr+path ||
				strings.HasSuffix(c.name, "h2c") != (spans[0].Attrs["network.protocol.version"] == "2") {
				t.Fatalf("A's spans: want the one client span of GET %s, got %+v\n%s", path, spans, stderr)
			}
			client := spans[0]
			got, ok := recvB.WaitFor(10*time.Second, byPath(path))
			if !ok {
				t.Fatalf("no server span in B for %s", path)
			}
			server := findPath(got, path)
			if server.TraceID != client.TraceID || server.ParentSpanID != client.SpanID {
				t.Errorf("B's server span (trace %s, parent %s) is not the child of A's client span (trace %s, span %s): the first call went without its traceparent",
					server.TraceID, server.ParentSpanID, client.TraceID, client.SpanID)
			}
		})
	}
}
