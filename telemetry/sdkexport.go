//go:build sdkexporter

// A measurement variant, not the product: a launcher built with -tags sdkexporter sends
// its spans through the OpenTelemetry SDK's OTLP trace exporters (otlptracegrpc,
// otlptracehttp) instead of its own encoder and senders, so that `go run ./bench
// exporter` weighs the two in one run (docs/benchmarks.md). Each sampled span
// becomes a read-only snapshot - no tracer, no batch processor - held in our own queue
// (queue.go, OTEL_BSP_*: bounded, dropped and counted when full, batches of
// MaxExportBatchSize or what ScheduleDelay finds, one export at a time), so that what
// differs is the exporter.

package telemetry

import (
	"context"
	"slices"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig"
)

func init() { sdkPipeline = newSDKPipeline }

// newSDKPipeline is New with the SDK's exporter for "otlp"; the other exporters
// (console) stay ours.
func newSDKPipeline(ctx context.Context, app App, cfg otelconfig.Config) (*Pipeline, error) {
	otlp := slices.Contains(cfg.Exporters, "otlp")
	cfg.Exporters = slices.DeleteFunc(slices.Clone(cfg.Exporters), func(n string) bool { return n == "otlp" })
	ss, err := senders(cfg)
	if err != nil {
		return nil, err
	}
	p, err := newPipeline(ctx, app, cfg, ss)
	if err != nil || !otlp {
		return p, err
	}
	exp, err := newSDKExporter(ctx, cfg.OTLP)
	if err != nil {
		p.Shutdown(ctx)
		return nil, err
	}
	res, err := appResource(ctx, app, cfg.Resource) // again: the encoder keeps only its bytes
	if err != nil {
		p.Shutdown(ctx)
		return nil, err
	}
	batch := exportBatch(cfg)
	p.sdk = sdkQueue{newQueue[sdktrace.ReadOnlySpan]("otlp", sdkBatches{exp, batch.MaxExportBatchSize}, batch, p.reportSpanError), res, p.enc.clock}
	return p, nil
}

// newSDKExporter is the SDK's OTLP trace exporter for o: the same endpoint, transport,
// headers, timeout and compression as our senders use.
func newSDKExporter(ctx context.Context, o otelconfig.OTLP) (sdktrace.SpanExporter, error) {
	creds, tlsConfig, err := transport(o)
	if err != nil {
		return nil, err
	}
	if o.Protocol == "http/protobuf" {
		opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(o.Endpoint.Host), otlptracehttp.WithURLPath(o.Endpoint.Path),
			otlptracehttp.WithHeaders(o.Headers), otlptracehttp.WithTimeout(o.Timeout)}
		if o.Insecure {
			opts = append(opts, otlptracehttp.WithInsecure())
		} else {
			opts = append(opts, otlptracehttp.WithTLSClientConfig(tlsConfig))
		}
		if o.Compression == "gzip" {
			opts = append(opts, otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
		} else {
			opts = append(opts, otlptracehttp.WithCompression(otlptracehttp.NoCompression))
		}
		return otlptracehttp.New(ctx, opts...)
	}
	opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(o.Endpoint.Host), otlptracegrpc.WithTLSCredentials(creds),
		otlptracegrpc.WithHeaders(o.Headers), otlptracegrpc.WithTimeout(o.Timeout)}
	if o.Compression == "gzip" {
		opts = append(opts, otlptracegrpc.WithCompressor("gzip"))
	}
	return otlptracegrpc.New(ctx, opts...)
}

// sdkQueue is our queue (queue.go) over span snapshots, in front of the SDK's exporter.
type sdkQueue struct {
	*queue[sdktrace.ReadOnlySpan, *snapshotBatch]
	res   *resource.Resource
	clock *Clock
}

// emit queues s's snapshot, made as ours is encoded: before the queue, outside its lock.
func (q sdkQueue) emit(s *Span, flags trace.TraceFlags) {
	q.add(q.snapshot(s, flags))
}

// snapshot is s as the SDK's span would have ended: the pipeline's wall clock, the
// parent's trace state, invalid attributes dropped and counted, a status description
// only for an error, the end reason as the last attribute (what encoder.appendSpan
// writes). The attributes are copied: the decoder reuses s.
func (q sdkQueue) snapshot(s *Span, flags trace.TraceFlags) sdktrace.ReadOnlySpan {
	attrs := make([]attribute.KeyValue, 0, len(s.Attributes)+1)
	for _, kv := range s.Attributes {
		if kv.Valid() {
			attrs = append(attrs, kv)
		}
	}
	dropped := len(s.Attributes) - len(attrs) + s.DroppedAttributes
	if s.EndReason != "" {
		attrs = append(attrs, EndReasonKey.String(string(s.EndReason)))
	}
	status := sdktrace.Status{Code: s.Status}
	if s.Status == codes.Error {
		status.Description = s.StatusDescription
	}
	var events []sdktrace.Event
	for _, ev := range s.Events {
		events = append(events, sdktrace.Event{Name: ev.Name, Time: q.clock.Wall(ev.Time), Attributes: slices.Clone(ev.Attributes),
			DroppedAttributeCount: ev.DroppedAttributes})
	}
	var links []sdktrace.Link
	for _, l := range s.Links {
		links = append(links, sdktrace.Link{SpanContext: l.SpanContext, Attributes: slices.Clone(l.Attributes),
			DroppedAttributeCount: l.DroppedAttributes})
	}
	return tracetest.SpanStub{
		Events: events,
		Links:  links,
		Name:   s.Name,
		SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: s.TraceID, SpanID: s.SpanID, TraceFlags: flags,
			TraceState: s.Parent.TraceState()}),
		Parent:               s.Parent,
		SpanKind:             trace.ValidateSpanKind(s.Kind),
		StartTime:            q.clock.Wall(s.Start),
		EndTime:              q.clock.Wall(s.End),
		Attributes:           attrs,
		DroppedAttributes:    dropped,
		DroppedEvents:        s.DroppedEvents,
		DroppedLinks:         s.DroppedLinks,
		Status:               status,
		Resource:             q.res,
		InstrumentationScope: instrumentation.Scope{Name: scopeOf(s).Name, Version: scopeOf(s).Version, SchemaURL: scopeOf(s).SchemaURL},
	}.Snapshot()
}

// sdkBatches are the SDK exporter's batches: slices of snapshots.
type sdkBatches struct {
	exp  sdktrace.SpanExporter
	size int // spans a batch holds
}

// snapshotBatch is a batch of span snapshots.
type snapshotBatch struct{ spans []sdktrace.ReadOnlySpan }

func (b *snapshotBatch) add(s sdktrace.ReadOnlySpan) { b.spans = append(b.spans, s) }
func (b *snapshotBatch) len() int                    { return len(b.spans) }

// reset keeps the buffer for another batch, but not its snapshots.
func (b *snapshotBatch) reset() { clear(b.spans); b.spans = b.spans[:0] }

func (e sdkBatches) newBatch() *snapshotBatch {
	return &snapshotBatch{spans: make([]sdktrace.ReadOnlySpan, 0, e.size)}
}

// export counts no rejected spans: the SDK's exporter gives a partial success to
// otel.Handle, not to its caller.
func (e sdkBatches) export(ctx context.Context, b *snapshotBatch, note func(error)) (int, error) {
	err := e.exp.ExportSpans(ctx, b.spans)
	note(err)
	return 0, err
}

func (e sdkBatches) close() error { return e.exp.Shutdown(context.Background()) }
