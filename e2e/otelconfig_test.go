package e2e

import (
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// The OTEL_* settings users bring from their other services, written as they write
// them: names in other cases, a malformed resource entry, an exporter of another SDK,
// no export timeout. Tracing stays on, what is replaced is said, and the spans arrive
// with the resource's other entries, joined to the incoming trace.
func TestOTelSettingsAsWritten(t *testing.T) {
	tg := testenv.BuildTargets(t, "httpserver", testenv.Toolchains[len(testenv.Toolchains)-1:], []testenv.Variant{testenv.Plain})[0]
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	for _, c := range []struct {
		name   string
		env    []string
		joined bool
		said   []string
	}{
		{"case variants", []string{"OTEL_TRACES_EXPORTER=OTLP", "OTEL_EXPORTER_OTLP_PROTOCOL=GRPC", "OTEL_EXPORTER_OTLP_COMPRESSION=GZIP",
			"OTEL_PROPAGATORS=TraceContext,Baggage", "OTEL_RESOURCE_ATTRIBUTES=team=shop,bad,tier=gold", "OTEL_BSP_EXPORT_TIMEOUT=0",
			"OTEL_METRICS_EXPORTER=prometheus"}, true,
			[]string{`OTEL_RESOURCE_ATTRIBUTES: ["bad"] not key=value: left out, the other entries kept`,
				"OTEL_METRICS_EXPORTER=prometheus: prometheus not an exporter the launcher has (otlp, console, none): left out, using otlp, the default"}},
		{"baggage alone", []string{"OTEL_PROPAGATORS=baggage", "OTEL_TRACES_EXPORTER=zipkin,otlp"}, false,
			[]string{"OTEL_PROPAGATORS=baggage has no tracecontext", "OTEL_TRACES_EXPORTER=zipkin,otlp: zipkin not an exporter the launcher has"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			recv := testenv.StartReceiver(t)
			r, addr := tracedServer(t, tg, recv, c.env...)
			firstRequest(t, addr, "/items/first")
			get(t, &http.Client{}, "http://"+addr+"/items/joined", map[string]string{"Traceparent": "00-" + traceID + "-" + parentID + "-01"})
			spans, _ := recv.WaitFor(10*time.Second, byPath("/items/joined"))
			s := findPath(spans, "/items/joined")
			if s == nil {
				t.Fatalf("no span: tracing off\n%s", r.stderr)
			}
			if joined := s.TraceID == traceID && s.ParentSpanID == parentID; joined != c.joined {
				t.Errorf("joined to the incoming trace: %v, want %v (trace %s, parent %s)", joined, c.joined, s.TraceID, s.ParentSpanID)
			}
			if c.joined && (s.Resource["team"] != "shop" || s.Resource["tier"] != "gold" || s.Resource["bad"] != nil) {
				t.Errorf("resource %v, want team=shop and tier=gold", s.Resource)
			}
			r.signal(syscall.SIGTERM)
			r.wait(10 * time.Second)
			for _, want := range c.said {
				if !strings.Contains(r.stderr.String(), want) {
					t.Errorf("not said: %q\n%s", want, r.stderr)
				}
			}
		})
	}
}
