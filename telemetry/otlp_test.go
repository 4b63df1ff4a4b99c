package telemetry

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// otlpHTTPReceiver answers every POST 200 and keeps, for each, the path and headers.
type otlpHTTPReceiver struct {
	*httptest.Server
	mu   sync.Mutex
	got  []http.Header
	path []string
}

func newOTLPHTTPReceiver(t *testing.T) *otlpHTTPReceiver {
	r := &otlpHTTPReceiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.got = append(r.got, req.Header.Clone())
		r.path = append(r.path, req.URL.Path)
		r.mu.Unlock()
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *otlpHTTPReceiver) paths() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.path)
}

// A header name that is not a token is left out of both signals' exports, which go
// with the other headers, and said once: by the configuration, not again by the
// metrics exporters' own reading of the variable.
func TestBadHeaderNameLeftOutOfBothSignals(t *testing.T) {
	recv := newOTLPHTTPReceiver(t)
	for k, v := range map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT": recv.URL,
		"OTEL_EXPORTER_OTLP_HEADERS": "x bad=1,api-key=k", "OTEL_EXPORTER_OTLP_TIMEOUT": "2000", "OTEL_METRICS_EXPORTER": "otlp", "OTEL_TRACES_EXPORTER": "otlp"} {
		t.Setenv(k, v)
	}
	var logged strings.Builder
	defer slog.SetDefault(slog.Default())
	slog.SetDefault(slog.New(slog.NewTextHandler(&logged, nil)))
	otel.SetLogger(logr.New(sdkSink{}))
	cfg, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(context.Background(), App{Path: "/app"}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.Emit(&Span{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, Kind: trace.SpanKindServer, Name: "GET", Start: 1, End: 2,
		Attributes: []attribute.KeyValue{attribute.String("http.request.method", "GET")}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if paths := recv.paths(); !slices.Contains(paths, "/v1/traces") || !slices.Contains(paths, "/v1/metrics") {
		t.Errorf("received %q, want the spans and the metrics; log:\n%s", paths, logged.String())
	}
	for _, h := range recv.got {
		if h.Get("api-key") != "k" {
			t.Errorf("headers %v, want api-key", h)
		}
	}
	want := []string{`OTEL_EXPORTER_OTLP_HEADERS: header name "x bad" is not a token: left out`}
	if !slices.Equal(cfg.Warnings, want) {
		t.Errorf("warnings %q, want %q", cfg.Warnings, want)
	}
	if strings.Contains(logged.String(), "level=WARN") {
		t.Errorf("warned again:\n%s", logged.String())
	}
}
