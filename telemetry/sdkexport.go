//go:build sdkexporter

// A measurement variant, not the product: a launcher built with -tags sdkexporter sends
// its spans through the OpenTelemetry SDK's OTLP trace exporters (otlptracegrpc,
// otlptracehttp) instead of its own encoder and senders, so that `go run ./bench
// exporter` weighs the two in one run (issue 30, docs/benchmarks.md). Each sampled span
// becomes a read-only snapshot - no tracer, no batch processor - held in a queue with
// our queue's rules (OTEL_BSP_*: bounded, dropped and counted when full, batches of
// MaxExportBatchSize or what ScheduleDelay finds, one export at a time), so that what
// differs is the exporter.

package telemetry

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func init() { sdkPipeline = newSDKPipeline }

// newSDKPipeline is New with the SDK's exporter for "otlp"; the other exporters
// (console) stay ours.
func newSDKPipeline(ctx context.Context, app App, cfg Config) (*Pipeline, error) {
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
	res, err := appResource(ctx, app) // again: the encoder keeps only its bytes
	if err != nil {
		p.Shutdown(ctx)
		return nil, err
	}
	p.sdk = newSnapshotQueue(exp, res, p.enc.clock, cfg.exportBatch(), p.reportSpanError)
	return p, nil
}

// newSDKExporter is the SDK's OTLP trace exporter for o: the same endpoint, transport,
// headers, timeout and compression as our senders use.
func newSDKExporter(ctx context.Context, o OTLP) (sdktrace.SpanExporter, error) {
	creds, tlsConfig, err := o.transport()
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

// snapshotQueue is queue (queue.go) over span snapshots, for the SDK's exporter.
type snapshotQueue struct {
	exp    sdktrace.SpanExporter
	res    *resource.Resource
	clock  *Clock
	cfg    Batch
	report func(error)

	mu      sync.Mutex
	filling []sdktrace.ReadOnlySpan   // the batch being filled
	full    [][]sdktrace.ReadOnlySpan // ready to export, oldest first
	waiting int                       // spans in filling and full
	closed  bool

	wake    chan struct{}   // a batch is full
	flushes chan chan error // ForceFlush's
	stop    chan struct{}   // Shutdown: flush, then end
	done    chan struct{}   // the export loop ended

	queued, exported, failed, dropped atomic.Uint64
}

func newSnapshotQueue(exp sdktrace.SpanExporter, res *resource.Resource, clock *Clock, cfg Batch, report func(error)) *snapshotQueue {
	q := &snapshotQueue{exp: exp, res: res, clock: clock, cfg: cfg, report: report,
		wake: make(chan struct{}, 1), flushes: make(chan chan error), stop: make(chan struct{}), done: make(chan struct{})}
	go q.run()
	return q
}

// snapshot is s as the SDK's span would have ended: the pipeline's wall clock, the
// parent's trace state, invalid attributes dropped and counted, a status description
// only for an error, the end reason as the last attribute (what encoder.appendSpan
// writes). The attributes are copied: the decoder reuses s.
func (q *snapshotQueue) snapshot(s *Span, flags trace.TraceFlags) sdktrace.ReadOnlySpan {
	attrs := make([]attribute.KeyValue, 0, len(s.Attributes)+1)
	for _, kv := range s.Attributes {
		if kv.Valid() {
			attrs = append(attrs, kv)
		}
	}
	dropped := len(s.Attributes) - len(attrs)
	if s.EndReason != "" {
		attrs = append(attrs, EndReasonKey.String(string(s.EndReason)))
	}
	status := sdktrace.Status{Code: s.Status}
	if s.Status == codes.Error {
		status.Description = s.StatusDescription
	}
	return tracetest.SpanStub{
		Name: s.Name,
		SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: s.TraceID, SpanID: s.SpanID, TraceFlags: flags,
			TraceState: s.Parent.TraceState()}),
		Parent:               s.Parent,
		SpanKind:             trace.ValidateSpanKind(s.Kind),
		StartTime:            q.clock.Wall(s.Start),
		EndTime:              q.clock.Wall(s.End),
		Attributes:           attrs,
		DroppedAttributes:    dropped,
		Status:               status,
		Resource:             q.res,
		InstrumentationScope: instrumentation.Scope{Name: scopeName},
	}.Snapshot()
}

// add queues s's snapshot, or drops it if the queue is full.
func (q *snapshotQueue) add(s *Span, flags trace.TraceFlags) {
	snap := q.snapshot(s, flags) // outside the lock, as ours is encoded before its queue
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	if q.waiting >= q.cfg.MaxQueueSize {
		q.mu.Unlock()
		q.dropped.Add(1)
		return
	}
	if q.filling == nil {
		q.filling = make([]sdktrace.ReadOnlySpan, 0, q.cfg.MaxExportBatchSize)
	}
	q.filling = append(q.filling, snap)
	q.waiting++
	q.queued.Add(1)
	ready := len(q.filling) >= q.cfg.MaxExportBatchSize
	if ready {
		q.seal()
	}
	q.mu.Unlock()
	if ready {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// seal moves the batch being filled to the ready ones. Called with mu held.
func (q *snapshotQueue) seal() {
	if len(q.filling) > 0 {
		q.full, q.filling = append(q.full, q.filling), nil
	}
}

// next takes the oldest ready batch; with all, the one being filled too.
func (q *snapshotQueue) next(all bool) []sdktrace.ReadOnlySpan {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.full) == 0 && all {
		q.seal()
	}
	if len(q.full) == 0 {
		return nil
	}
	b := q.full[0]
	q.full[0] = nil
	q.full = q.full[1:]
	q.waiting -= len(b)
	return b
}

func (q *snapshotQueue) run() {
	defer close(q.done)
	timer := time.NewTimer(q.cfg.ScheduleDelay)
	defer timer.Stop()
	for {
		all := false
		select {
		case <-q.wake:
		case <-timer.C:
			all = true
		case reply := <-q.flushes:
			reply <- q.exportAll()
			continue
		case <-q.stop:
			q.exportAll()
			return
		}
		for b := q.next(all); b != nil; b = q.next(all) {
			q.export(b)
		}
		timer.Reset(q.cfg.ScheduleDelay)
	}
}

// exportAll exports what is queued now.
func (q *snapshotQueue) exportAll() error {
	q.mu.Lock()
	q.seal()
	n := len(q.full)
	q.mu.Unlock()
	var err error
	for ; n > 0; n-- {
		if b := q.next(false); b != nil {
			if e := q.export(b); e != nil {
				err = e
			}
		}
	}
	return err
}

func (q *snapshotQueue) export(b []sdktrace.ReadOnlySpan) error {
	ctx, cancel := context.WithCancel(context.Background())
	if q.cfg.ExportTimeout > 0 {
		ctx, cancel = context.WithTimeout(context.Background(), q.cfg.ExportTimeout)
	}
	err := q.exp.ExportSpans(ctx, b)
	cancel()
	if err != nil {
		q.failed.Add(uint64(len(b)))
		q.report(err)
	} else {
		q.exported.Add(uint64(len(b)))
	}
	return err
}

func (q *snapshotQueue) forceFlush(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case q.flushes <- reply:
	case <-q.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (q *snapshotQueue) shutdown(ctx context.Context) error {
	q.mu.Lock()
	already := q.closed
	q.closed = true
	q.mu.Unlock()
	if !already {
		close(q.stop)
	}
	select {
	case <-q.done:
		return q.exp.Shutdown(ctx)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (q *snapshotQueue) stats() ExporterStats {
	return ExporterStats{Exporter: "otlp", Queued: q.queued.Load(), Exported: q.exported.Load(), Failed: q.failed.Load(), Dropped: q.dropped.Load()}
}
