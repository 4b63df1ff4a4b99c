package probes

import (
	"context"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig"
)

// The loss report at exit says why spans were not exported: the last export error,
// here a collector certificate that does not verify. Over gRPC the export is retried
// until the deadline, so it has no outcome yet at exit; over HTTP it failed at once.
func TestFinalLossReportSaysTheLastExportError(t *testing.T) {
	untrusted := httptest.NewUnstartedServer(http.NotFoundHandler())
	untrusted.Config.ErrorLog = log.New(io.Discard, "", 0)
	untrusted.EnableHTTP2 = true
	untrusted.StartTLS()
	defer untrusted.Close()
	for protocol, want := range map[string]string{
		"grpc":          "1 not exported to otlp within --flush-timeout (the last export error: Unavailable: ",
		"http/protobuf": "1 in failed exports to otlp (collector down, slow or refusing; the last export error: Post ",
	} {
		t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://"+untrusted.Listener.Addr().String())
		t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
		t.Setenv("OTEL_METRICS_EXPORTER", "none")
		cfg, err := otelconfig.FromEnv()
		if err != nil {
			t.Fatal(err)
		}
		pipe, err := telemetry.New(context.Background(), telemetry.App{Path: "/app"}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		pipe.Emit(&telemetry.Span{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, Name: "s", Start: 1, End: 2})
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		pipe.Shutdown(ctx)
		cancel()
		var logged strings.Builder
		slog.SetDefault(slog.New(slog.NewTextHandler(&logged, nil)))
		s := &Session{cfg: cfg, pipe: pipe, reported: map[string]telemetry.ExporterStats{}}
		s.logLoss("in all", true)
		slog.SetDefault(defaultLogger)
		if out := logged.String(); !strings.Contains(out, want) || !strings.Contains(out, "x509: certificate signed by unknown authority") {
			t.Errorf("%s: said %q, want %q and the x509 error", protocol, out, want)
		}
	}
}

var defaultLogger = slog.Default()
