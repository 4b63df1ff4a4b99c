package telemetry

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig"
)

// testConfig is the configuration of the test's environment (its t.Setenv), for the
// trace pipeline alone.
func testConfig() otelconfig.Config {
	c, err := otelconfig.From(func(name string) string {
		if name == "OTEL_METRICS_EXPORTER" {
			return "none"
		}
		return os.Getenv(name)
	})
	if err != nil {
		panic(err)
	}
	return c
}

// envResource is the resource the test's environment configures.
func envResource(tb testing.TB) []attribute.KeyValue {
	c, err := otelconfig.FromEnv()
	if err != nil {
		tb.Fatal(err)
	}
	for _, w := range c.Warnings {
		tb.Log(w)
	}
	return c.Resource
}

func emitN(p *Pipeline, n int) {
	for i := 0; i < n; i++ {
		p.Emit(&Span{TraceID: trace.TraceID{1, byte(i), byte(i >> 8)}, SpanID: trace.SpanID{1, byte(i), byte(i >> 8)}, Name: "s", Start: 1, End: 2})
	}
}

// Every span is exported or counted: spans in failed exports are.
func TestEverySpanIsAccounted(t *testing.T) {
	cfg := testConfig()
	cfg.Batch.MaxExportBatchSize, cfg.Batch.ScheduleDelay = 10, time.Millisecond
	exp := &memSender{failEvery: 2}
	p, err := newPipeline(context.Background(), App{Path: "/app"}, cfg, []namedSender{{"flaky", exp}})
	if err != nil {
		t.Fatal(err)
	}
	emitN(p, 1000)
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := p.Stats()[0]
	if st.Queued != 1000 || st.Exported+st.Failed != 1000 || st.Exported != uint64(len(exp.spans())) || st.Failed == 0 || st.Unexported() != 0 || st.Dropped != 0 {
		t.Errorf("stats %+v; the exporter got %d spans", st, len(exp.spans()))
	}
}

// A partial success fails only the spans the collector rejected.
func TestPartialSuccessIsAccounted(t *testing.T) {
	cfg := testConfig()
	cfg.Batch.MaxExportBatchSize, cfg.Batch.ScheduleDelay = 10, time.Millisecond
	exp := &memSender{reject: 1}
	p, err := newPipeline(context.Background(), App{Path: "/app"}, cfg, []namedSender{{"picky", exp}})
	if err != nil {
		t.Fatal(err)
	}
	emitN(p, 100)
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats()[0]; st.Queued != 100 || st.Exported != 90 || st.Failed != 10 {
		t.Errorf("stats %+v, want 90 exported and 10 failed (one rejected per batch of 10)", st)
	}
}

// With an exporter that does not keep up, Emit does not wait: what finds the queue
// full is dropped and counted, and what was not exported by Shutdown's deadline is
// counted too.
func TestFullQueueDrops(t *testing.T) {
	cfg := testConfig()
	cfg.Batch.MaxQueueSize, cfg.Batch.MaxExportBatchSize, cfg.Batch.ScheduleDelay = 20, 10, time.Millisecond
	exp := &memSender{gate: make(chan struct{})}
	p, err := newPipeline(context.Background(), App{Path: "/app"}, cfg, []namedSender{{"stuck", exp}})
	if err != nil {
		t.Fatal(err)
	}
	emitted := make(chan struct{})
	go func() { emitN(p, 100); close(emitted) }()
	select {
	case <-emitted:
	case <-time.After(5 * time.Second):
		t.Fatal("Emit waited for a stuck exporter")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	p.Shutdown(ctx) // the exporter is still stuck: nothing is exported
	// 20 wait in the queue; at most one batch of 10 more was taken by the stuck export.
	st := p.Stats()[0]
	if st.Queued+st.Dropped != 100 || st.Queued < 20 || st.Queued > 30 || st.Exported != 0 || st.Unexported() != st.Queued {
		t.Errorf("stats %+v, want 20 to 30 queued (never exported), the rest dropped", st)
	}
	close(exp.gate)
	if err := p.Shutdown(context.Background()); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second Shutdown: %v", err)
	}
}

// OTEL_BSP_EXPORT_TIMEOUT=0 is no timeout, as in the SDK's batch processor: exports
// are bounded by the exporter's own (OTEL_EXPORTER_OTLP_TIMEOUT), not failed at once.
func TestExportTimeoutZeroIsNone(t *testing.T) {
	cfg, err := otelconfig.From(vars{"OTEL_METRICS_EXPORTER": "none", "OTEL_BSP_EXPORT_TIMEOUT": "0", "OTEL_BSP_SCHEDULE_DELAY": "10"}.get)
	if err != nil || len(cfg.Warnings) != 0 || cfg.Batch.ExportTimeout != 0 {
		t.Fatalf("config %v, warnings %q, export timeout %v", err, cfg.Warnings, cfg.Batch.ExportTimeout)
	}
	exp := &memSender{gate: make(chan struct{})} // answers in 100 ms, or fails when its context ends
	time.AfterFunc(100*time.Millisecond, func() { close(exp.gate) })
	p, err := newPipeline(context.Background(), App{Path: "/app"}, cfg, []namedSender{{"slow", exp}})
	if err != nil {
		t.Fatal(err)
	}
	emitN(p, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if st := p.Stats()[0]; st.Exported != 10 || st.Failed != 0 {
		t.Errorf("stats %+v, want all 10 exported", st)
	}
}

// A collector that stalls (2 s here, scaled down) loses nothing while the queue holds
// what comes meanwhile: it is exported once the collector is back, in batches.
func TestStalledCollectorLosesNothing(t *testing.T) {
	cfg := testConfig()
	cfg.Batch.MaxQueueSize, cfg.Batch.MaxExportBatchSize, cfg.Batch.ScheduleDelay = 5000, 100, 10*time.Millisecond
	exp := &memSender{stall: 300 * time.Millisecond}
	p, err := newPipeline(context.Background(), App{Path: "/app"}, cfg, []namedSender{{"stalling", exp}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 40; i++ { // 4,000 spans over 400 ms, most while the first export stalls
		emitN(p, 100)
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats()[0]; st.Queued != 4000 || st.Exported != 4000 || st.Dropped != 0 || len(exp.spans()) != 4000 {
		t.Errorf("stats %+v, %d spans received", st, len(exp.spans()))
	}
}

// One malformed entry of OTEL_RESOURCE_ATTRIBUTES is left out and said, as the SDK
// does; the others are kept, and tracing goes on. OTEL_SERVICE_NAME wins.
func TestMalformedResourceAttribute(t *testing.T) {
	cfg, err := otelconfig.From(vars{"OTEL_RESOURCE_ATTRIBUTES": "a=b,bad,c=d%20e,service.name=x,f=%zz", "OTEL_SERVICE_NAME": "checkout"}.get)
	if err != nil {
		t.Fatalf("tracing off: %v", err)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], "OTEL_RESOURCE_ATTRIBUTES") || !strings.Contains(cfg.Warnings[0], `"bad"`) {
		t.Errorf("warnings %q", cfg.Warnings)
	}
	res, err := appResource(context.Background(), App{Path: "/app"}, cfg.Resource)
	if err != nil {
		t.Fatal(err)
	}
	attrs := map[string]string{}
	for _, kv := range res.Attributes() {
		attrs[string(kv.Key)] = kv.Value.Emit()
	}
	if attrs["a"] != "b" || attrs["c"] != "d e" || attrs["f"] != "%zz" || attrs["bad"] != "" || attrs["service.name"] != "checkout" {
		t.Errorf("resource %v, want a=b, c=d e, f=%%zz, service.name=checkout", attrs)
	}
}

// vars is an environment for otelconfig.From.
type vars map[string]string

func (v vars) get(name string) string { return v[name] }
