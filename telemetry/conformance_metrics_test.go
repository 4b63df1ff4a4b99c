package telemetry

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/httpconv"
	"go.opentelemetry.io/otel/trace"
	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	metricpb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/proto"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig"
)

// metricsConformanceRows are the trace exporter's rows (conformanceRows) for the
// metrics exporter - its own variables where the traces' have theirs, /v1/metrics -
// where metrics differ from them (metricsRowChanges), the rows only metrics have, and
// the metric reader's settings. A reader's row has a scenario (see
// metricsConformanceChild) and is judged by what was exported (metricsOutcome).
func metricsConformanceRows() []conformanceRow {
	var rows []conformanceRow
	for _, r := range conformanceRows {
		r.name = strings.ReplaceAll(r.name, "traces-specific", "metrics-specific")
		env := map[string]string{}
		for k, v := range r.env {
			env[strings.Replace(k, "TRACES_", "METRICS_", 1)] = v
		}
		r.env = env
		r.want = strings.ReplaceAll(r.want, "/v1/traces", "/v1/metrics")
		r.sdk = strings.ReplaceAll(r.sdk, "/v1/traces", "/v1/metrics")
		if change, ok := metricsRowChanges[r.name]; ok {
			change(&r)
		}
		rows = append(rows, r)
	}
	return append(rows, metricsOnlyRows...)
}

// metricsRowChanges are the trace exporter's rows whose outcome differs for metrics.
var metricsRowChanges = map[string]func(*conformanceRow){
	// otlpmetrichttp sends protobuf whatever the protocol says: as the launcher.
	"protocol http/json": func(r *conformanceRow) { r.sdk, r.why = "", "" },
	// The launcher's metrics go through the SDK's exporter: over HTTP, both retry an
	// attempt that timed out until their caller's deadline (the child's 2 s here), not
	// the exporter's timeout.
	"timeout, http": func(r *conformanceRow) { r.within = 0 },
}

// metricsOnlyRows: a signal's variables are not another's; the reader's settings.
var metricsOnlyRows = []conformanceRow{
	{name: "endpoint traces-specific is not the metrics', grpc", env: map[string]string{"ENDPOINT": "http://{grpc}", "TRACES_ENDPOINT": "http://{dead}"}, want: "grpc plain"},
	{name: "headers traces-specific are not the metrics', grpc", env: map[string]string{"ENDPOINT": "http://{grpc}", "HEADERS": "a=1", "TRACES_HEADERS": "b=2"}, want: "grpc plain {a:1}"},

	// Temporality: of the histograms' points in two collections, a measurement at 20 ms
	// of a sampled span and one at 300 ms of a span not sampled in each.
	{name: "temporality unset", env: map[string]string{"ENDPOINT": "http://{grpc}"}, scenario: "collect", want: "histogram cumulative counts=2,4 exemplars=1"},
	{name: "temporality cumulative", env: map[string]string{"ENDPOINT": "http://{grpc}", "METRICS_TEMPORALITY_PREFERENCE": "cumulative"}, scenario: "collect",
		want: "histogram cumulative counts=2,4 exemplars=1"},
	{name: "temporality delta", env: map[string]string{"ENDPOINT": "http://{grpc}", "METRICS_TEMPORALITY_PREFERENCE": "delta"}, scenario: "collect",
		want: "histogram delta counts=2,2 exemplars=1"},
	{name: "temporality lowmemory: histograms delta", env: map[string]string{"ENDPOINT": "http://{grpc}", "METRICS_TEMPORALITY_PREFERENCE": "lowmemory"}, scenario: "collect",
		want: "histogram delta counts=2,2 exemplars=1"},
	{name: "temporality Delta, in any case", env: map[string]string{"ENDPOINT": "http://{grpc}", "METRICS_TEMPORALITY_PREFERENCE": "Delta"}, scenario: "collect",
		want: "histogram delta counts=2,2 exemplars=1"},
	{name: "temporality invalid: cumulative", env: map[string]string{"ENDPOINT": "http://{grpc}", "METRICS_TEMPORALITY_PREFERENCE": "sometimes"}, scenario: "collect",
		want: "histogram cumulative counts=2,4 exemplars=1"},
	{name: "temporality generic is no variable", env: map[string]string{"ENDPOINT": "http://{grpc}", "TEMPORALITY_PREFERENCE": "delta"}, scenario: "collect",
		want: "histogram cumulative counts=2,4 exemplars=1"},
	// Exemplar filter: of the sampled span's measurement (trace_based), both, none.
	{name: "exemplar filter trace_based", env: map[string]string{"ENDPOINT": "http://{grpc}", "OTEL_METRICS_EXEMPLAR_FILTER": "trace_based"}, scenario: "collect",
		want: "histogram cumulative counts=2,4 exemplars=1"},
	{name: "exemplar filter always_on", env: map[string]string{"ENDPOINT": "http://{grpc}", "OTEL_METRICS_EXEMPLAR_FILTER": "always_on"}, scenario: "collect",
		want: "histogram cumulative counts=2,4 exemplars=2"},
	{name: "exemplar filter always_off", env: map[string]string{"ENDPOINT": "http://{grpc}", "OTEL_METRICS_EXEMPLAR_FILTER": "always_off"}, scenario: "collect",
		want: "histogram cumulative counts=2,4 exemplars=0"},
	{name: "exemplar filter ALWAYS_ON, in any case", env: map[string]string{"ENDPOINT": "http://{grpc}", "OTEL_METRICS_EXEMPLAR_FILTER": "ALWAYS_ON"}, scenario: "collect",
		want: "histogram cumulative counts=2,4 exemplars=2"},
	{name: "exemplar filter invalid: trace_based", env: map[string]string{"ENDPOINT": "http://{grpc}", "OTEL_METRICS_EXEMPLAR_FILTER": "sometimes"}, scenario: "collect",
		want: "histogram cumulative counts=2,4 exemplars=1"},
	// The histogram aggregation the exporter prefers.
	{name: "default histogram aggregation exponential", env: map[string]string{"ENDPOINT": "http://{grpc}", "METRICS_DEFAULT_HISTOGRAM_AGGREGATION": "base2_exponential_bucket_histogram"},
		scenario: "collect", want: "exponential cumulative counts=2,4 exemplars=1"},
	// Interval: periodic exports within 350 ms, or only the one at shutdown.
	{name: "interval 100", env: map[string]string{"ENDPOINT": "http://{grpc}", "OTEL_METRIC_EXPORT_INTERVAL": "100"}, scenario: "wait", want: "periodic"},
	{name: "interval unset (60 s)", env: map[string]string{"ENDPOINT": "http://{grpc}"}, scenario: "wait", want: "exports=1"},
	{name: "interval 0: the default", env: map[string]string{"ENDPOINT": "http://{grpc}", "OTEL_METRIC_EXPORT_INTERVAL": "0"}, scenario: "wait", want: "exports=1"},
	{name: "interval invalid: the default", env: map[string]string{"ENDPOINT": "http://{grpc}", "OTEL_METRIC_EXPORT_INTERVAL": "soon"}, scenario: "wait", want: "exports=1"},
	// Timeout: a flush without a deadline of its own, to a collector that never
	// answers, ends at the reader's timeout or, sooner, the exporter's (1 s here).
	{name: "export timeout 100", env: map[string]string{"ENDPOINT": "http://{grpc-stall}", "TIMEOUT": "1000", "OTEL_METRIC_EXPORT_TIMEOUT": "100"}, scenario: "flush",
		want: "fail", within: 600 * time.Millisecond, sdkToo: true},
	{name: "export timeout unset (30 s)", env: map[string]string{"ENDPOINT": "http://{grpc-stall}", "TIMEOUT": "1000"}, scenario: "flush",
		want: "fail", atLeast: 900 * time.Millisecond, sdkToo: true},
	{name: "export timeout 0: the default", env: map[string]string{"ENDPOINT": "http://{grpc-stall}", "TIMEOUT": "1000", "OTEL_METRIC_EXPORT_TIMEOUT": "0"}, scenario: "flush",
		want: "fail", atLeast: 900 * time.Millisecond, sdkToo: true},
	{name: "export timeout invalid: the default", env: map[string]string{"ENDPOINT": "http://{grpc-stall}", "TIMEOUT": "1000", "OTEL_METRIC_EXPORT_TIMEOUT": "soon"}, scenario: "flush",
		want: "fail", atLeast: 900 * time.Millisecond, sdkToo: true},
}

// For each setting of the OTLP exporter specification as the metrics exporter reads
// it, and of the metric reader's, the SDK's metrics (otlpmetricgrpc or otlpmetrichttp
// v1.47.0 built from the environment alone, in sdkmetric's periodic reader and meter
// provider, which read theirs) and the launcher's (otelconfig.FromEnv's Metrics, by
// newRequestMetrics, recording spans) export the request duration histogram to the
// same receivers, in a child process with that environment, as TestOTLPConformance's.
func TestOTLPMetricsConformance(t *testing.T) {
	if name := os.Getenv(conformanceChildEnv); name != "" {
		metricsConformanceChild(name, os.Getenv(conformanceScenarioEnv))
		return
	}
	setup := newConformanceSetup(t)
	setup.run(t, "TestOTLPMetricsConformance", metricsConformanceRows(), func(row conformanceRow, name string, _ conformanceResult) (string, string) {
		return setup.metricsOutcome(row.scenario, exportName(name, "ours")), setup.metricsOutcome(row.scenario, exportName(name, "sdk"))
	})
}

// metricsOutcome says what the export named name delivered: for one export and a
// flush, how it arrived (outcome's words); after two collections, the histogram's kind
// and temporality, its count in each and the first's exemplars; after a wait, whether
// exports were periodic.
func (s *conformanceSetup) metricsOutcome(scenario, name string) string {
	got := s.recs.of(name)
	switch {
	case scenario == "" || scenario == "flush" || len(got) == 0:
		return s.recs.outcome(name, s.proxy)
	case scenario == "wait" && len(got) > 2:
		return "periodic"
	case scenario == "wait":
		return fmt.Sprintf("exports=%d", len(got))
	}
	var kind, temporality string
	var counts []string
	exemplars := -1
	for _, r := range got {
		var req colmetricpb.ExportMetricsServiceRequest
		if err := proto.Unmarshal(r.body, &req); err != nil {
			return "not protobuf"
		}
		for _, rm := range req.ResourceMetrics {
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					var t metricpb.AggregationTemporality
					var count uint64
					var ex int
					switch d := m.Data.(type) {
					case *metricpb.Metric_Histogram:
						kind, t = "histogram", d.Histogram.AggregationTemporality
						for _, p := range d.Histogram.DataPoints {
							count, ex = count+p.Count, ex+len(p.Exemplars)
						}
					case *metricpb.Metric_ExponentialHistogram:
						kind, t = "exponential", d.ExponentialHistogram.AggregationTemporality
						for _, p := range d.ExponentialHistogram.DataPoints {
							count, ex = count+p.Count, ex+len(p.Exemplars)
						}
					default:
						kind = fmt.Sprintf("%T", d)
					}
					temporality = strings.ToLower(strings.TrimPrefix(t.String(), "AGGREGATION_TEMPORALITY_"))
					counts = append(counts, strconv.FormatUint(count, 10))
					if exemplars < 0 {
						exemplars = ex
					}
				}
			}
		}
	}
	return fmt.Sprintf("%s %s counts=%s exemplars=%d", kind, temporality, strings.Join(counts, ","), exemplars)
}

// measuredMetrics is one side's metrics: it records a request's duration, of a sampled
// span or not, and flushes or shuts down as its meter provider does.
type measuredMetrics struct {
	record   func(d time.Duration, sampled bool)
	flush    func(context.Context) error
	shutdown func(context.Context) error
}

// metricsConformanceChild records request durations with the SDK's metrics, then with
// the launcher's, both configured by this process's environment alone, as scenario
// says, and says how each went:
//   - "": one measurement, exported at shutdown (its duration measured);
//   - "collect": two measurements (a sampled span's, one not sampled), a flush, two more
//     and the export at shutdown;
//   - "wait": two measurements, 350 ms, and the export at shutdown;
//   - "flush": one measurement and a flush without a deadline of its own (its duration
//     measured); the shutdown is not waited for.
func metricsConformanceChild(name, scenario string) {
	var res conformanceResult
	play := func(e *conformanceExport, m measuredMetrics) {
		bg := context.Background()
		ctx, cancel := context.WithTimeout(bg, 2*time.Second)
		defer cancel()
		both := func() { m.record(20*time.Millisecond, true); m.record(300*time.Millisecond, false) }
		switch scenario {
		case "":
			m.record(20*time.Millisecond, true)
			e.measure(func() error { return m.shutdown(ctx) })
		case "collect":
			both()
			e.measure(func() error { return m.flush(bg) })
			both()
			m.shutdown(ctx)
		case "wait":
			both()
			time.Sleep(350 * time.Millisecond)
			e.measure(func() error { return m.shutdown(ctx) })
		case "flush":
			m.record(20*time.Millisecond, true)
			e.measure(func() error { return m.flush(bg) })
			ctx, cancel := context.WithTimeout(bg, 100*time.Millisecond)
			defer cancel()
			m.shutdown(ctx)
		}
	}
	// Side by side: each waits for the same timeouts.
	var wg sync.WaitGroup
	wg.Go(func() {
		if m, err := sdkMetrics(exportName(name, "sdk")); err != nil {
			res.SDK.Err = err.Error()
		} else {
			play(&res.SDK, m)
		}
	})
	wg.Go(func() {
		if m, err := ourMetrics(exportName(name, "ours"), &res.Ours); err != nil {
			res.Ours.Err = err.Error()
		} else {
			play(&res.Ours, m)
		}
	})
	wg.Wait()
	sayConformance(res)
}

// conformanceResource is a resource that names an export.
func conformanceResource(name string) *resource.Resource {
	return resource.NewSchemaless(attribute.String("conformance.export", name))
}

// spanContext is a span's context, sampled or not, for a measurement's exemplar.
func exemplarContext(sampled bool) context.Context {
	flags := trace.TraceFlags(0)
	if sampled {
		flags = trace.FlagsSampled
	}
	return trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{3}, SpanID: trace.SpanID{3}, TraceFlags: flags}))
}

// sdkMetrics is the SDK's metrics as the environment configures them: the OTLP
// exporter (otlpmetricgrpc or otlpmetrichttp by the protocol, as autoexport chooses),
// a periodic reader and a meter provider with no options but the resource, and the
// launcher's request duration histogram.
func sdkMetrics(name string) (measuredMetrics, error) {
	ctx := context.Background()
	var exp sdkmetric.Exporter
	var err error
	if envProtocol("METRICS") == "grpc" {
		exp, err = otlpmetricgrpc.New(ctx)
	} else {
		exp, err = otlpmetrichttp.New(ctx)
	}
	if err != nil {
		return measuredMetrics{}, err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)), sdkmetric.WithResource(conformanceResource(name)))
	h, err := mp.Meter(LauncherScope.Name).Float64Histogram(httpconv.ServerRequestDuration{}.Name(), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(httpBuckets...))
	if err != nil {
		return measuredMetrics{}, err
	}
	return measuredMetrics{
		record: func(d time.Duration, sampled bool) {
			h.Record(exemplarContext(sampled), d.Seconds(), metric.WithAttributes(semconv.HTTPRequestMethodGet))
		},
		flush: mp.ForceFlush, shutdown: mp.Shutdown,
	}, nil
}

// ourMetrics is the launcher's request metrics as the environment configures them;
// the configuration's warnings go to e.
func ourMetrics(name string, e *conformanceExport) (measuredMetrics, error) {
	cfg, err := otelconfig.FromEnv()
	e.Warnings = cfg.Warnings
	switch {
	case err != nil:
		return measuredMetrics{}, err
	case cfg.Metrics.Off != "":
		return measuredMetrics{}, fmt.Errorf("no metrics: %s", cfg.Metrics.Off)
	}
	m, err := newRequestMetrics(context.Background(), cfg.Metrics, conformanceResource(name))
	if err != nil {
		return measuredMetrics{}, err
	}
	return measuredMetrics{
		record: func(d time.Duration, sampled bool) {
			m.record(&Span{TraceID: trace.TraceID{3}, SpanID: trace.SpanID{3}, Kind: trace.SpanKindServer, Start: 1e9, End: 1e9 + uint64(d),
				Attributes: []attribute.KeyValue{semconv.HTTPRequestMethodGet}}, sampled)
		},
		flush: m.forceFlush, shutdown: m.shutdown,
	}, nil
}

// OTEL_METRIC_EXPORT_TIMEOUT=0 is no timeout to neither reader: the SDK's reading of the
// variable takes it as invalid, and sdkmetric.WithTimeout(0) keeps the default, 30 s
// (the rows above: both end at the exporter's timeout). The configuration says what is
// used, as describe and doctor print it.
func TestMetricExportTimeoutZeroIsTheDefault(t *testing.T) {
	t.Setenv("OTEL_METRIC_EXPORT_TIMEOUT", "0")
	cfg, err := otelconfig.FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Metrics.Timeout != 30*time.Second {
		t.Errorf("timeout %s, want the 30 s the periodic reader uses", cfg.Metrics.Timeout)
	}
}
