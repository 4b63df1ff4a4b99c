// Package telemetry turns the probes' kernel-side spans into OpenTelemetry spans and
// exports them: the configuration read once from the standard OTEL_* variables, clock
// conversion, the OTel SDK pipeline with an account of every span, the app's resource.
package telemetry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// ErrDisabled is returned when OTEL_SDK_DISABLED=true: tracing is off by choice.
var ErrDisabled = errors.New("tracing disabled by OTEL_SDK_DISABLED=true")

// Pipeline exports spans through the OTel SDK, and accounts for each: exported, failed
// to export, or never exported (still queued when the launcher had to exit).
type Pipeline struct {
	tp        *sdktrace.TracerProvider
	tracer    trace.Tracer
	clock     *Clock
	exporters []*account
	metrics   *requestMetrics // nil without a metrics exporter
	closing   chan struct{}   // closed by StopWaiting: emitting no longer waits for room
	closeOnce sync.Once
	stop      chan struct{}
	done      sync.WaitGroup

	shutdown    sync.Once
	shutdownErr error
	finished    chan struct{} // closed once Shutdown's work is done
}

// New builds the pipeline from cfg for the app described by app, sampling as cfg says
// (the probes decide the same in the kernel, see Sampling).
func New(ctx context.Context, app App, cfg Config) (*Pipeline, error) {
	if cfg.Disabled {
		return nil, ErrDisabled
	}
	exps, err := exporters(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return newPipeline(ctx, app, cfg, exps)
}

// namedExporter is an exporter and the name it is logged by.
type namedExporter struct {
	name string
	sdktrace.SpanExporter
}

func newPipeline(ctx context.Context, app App, cfg Config, exps []namedExporter) (*Pipeline, error) {
	res, err := appResource(ctx, app)
	if err != nil {
		return nil, err
	}
	p := &Pipeline{clock: NewClock(), closing: make(chan struct{}), stop: make(chan struct{}), finished: make(chan struct{})}
	if p.metrics, err = newRequestMetrics(ctx, cfg.Metrics, res); err != nil {
		return nil, err
	}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res), sdktrace.WithIDGenerator(kernelIDs{}), sdktrace.WithSampler(cfg.Sampling.sdkSampler()),
	}
	for _, e := range exps {
		a := newAccount(e.name, e.SpanExporter, cfg.Batch.MaxQueueSize, p.closing)
		p.exporters = append(p.exporters, a)
		// Not blocking in the SDK: the account does the waiting for room, so that it
		// can stop waiting at exit. Either way a slow exporter pushes back onto the
		// probes' ring buffers, whose losses the kernel counts.
		bsp := sdktrace.NewBatchSpanProcessor(a,
			sdktrace.WithBatchTimeout(cfg.Batch.ScheduleDelay),
			sdktrace.WithExportTimeout(cfg.Batch.ExportTimeout),
			sdktrace.WithMaxQueueSize(cfg.Batch.MaxQueueSize),
			sdktrace.WithMaxExportBatchSize(cfg.Batch.MaxExportBatchSize))
		opts = append(opts, sdktrace.WithSpanProcessor(a.processor(bsp)))
	}
	// The SDK reads the OTEL_* variables again on its own and reports what Config
	// already said (in the launcher's words, naming the variable): not twice. (The
	// real handler goes first: the SDK's default hands over to the first one set.)
	handler := newRateLimitedErrors(10 * time.Second)
	otel.SetErrorHandler(handler)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(error) {}))
	p.tp = sdktrace.NewTracerProvider(opts...)
	otel.SetErrorHandler(handler)
	p.tracer = p.tp.Tracer("github.com/otel-go-launcher/otel-go-launcher")
	p.done.Add(1)
	go p.refreshClock()
	return p, nil
}

func (p *Pipeline) refreshClock() {
	defer p.done.Done()
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.clock.Refresh()
		}
	}
}

// Emit hands a span to the SDK, which samples it and queues it for export, and counts
// it in its duration histogram, sampled or not. It waits while an exporter's queue is
// full, until Shutdown; the span is then counted as dropped.
func (p *Pipeline) Emit(s *Span) {
	ctx := context.WithValue(context.Background(), idsKey{}, ids{s.TraceID, s.SpanID})
	if s.Parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, s.Parent)
	}
	ctx, span := p.tracer.Start(ctx, s.Name,
		trace.WithSpanKind(s.Kind),
		trace.WithTimestamp(p.clock.Wall(s.Start)),
		trace.WithAttributes(s.Attributes...))
	if s.Status != 0 {
		span.SetStatus(s.Status, s.StatusDescription)
	}
	span.End(trace.WithTimestamp(p.clock.Wall(s.End)))
	if p.metrics != nil {
		p.metrics.record(ctx, s)
	}
}

// ForceFlush exports what is queued, within ctx.
func (p *Pipeline) ForceFlush(ctx context.Context) error {
	err := p.tp.ForceFlush(ctx)
	if p.metrics != nil {
		err = errors.Join(err, p.metrics.forceFlush(ctx))
	}
	return err
}

// StopWaiting makes Emit drop (and count) a span that finds its exporter's queue full,
// instead of waiting for room: for the launcher's last moments, when what is left in
// the kernel must be gone through within --flush-timeout.
func (p *Pipeline) StopWaiting() { p.closeOnce.Do(func() { close(p.closing) }) }

// Shutdown stops waiting (StopWaiting) and exports what is queued, within ctx. Spans
// emitted afterwards are not exported, nor counted. Later calls wait for the first
// (within their own ctx) and return its result.
func (p *Pipeline) Shutdown(ctx context.Context) error {
	p.shutdown.Do(func() {
		go func() {
			defer close(p.finished)
			p.StopWaiting()
			close(p.stop)
			p.done.Wait()
			p.shutdownErr = p.tp.Shutdown(ctx)
			if p.metrics != nil {
				p.shutdownErr = errors.Join(p.shutdownErr, p.metrics.shutdown(ctx))
			}
		}()
	})
	select {
	case <-p.finished:
		return p.shutdownErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ExporterStats account for the sampled spans handed to one exporter.
type ExporterStats struct {
	Exporter string // "otlp", "console"
	Queued   uint64 // handed to its batch processor
	Exported uint64 // exported
	Failed   uint64 // in exports that failed (after the exporter's retries)
	Dropped  uint64 // never queued: the queue was full when the launcher exited
}

// Unexported counts the spans queued but neither exported nor failed: those still
// queued or being exported. After Shutdown, they were not exported in time.
func (s ExporterStats) Unexported() uint64 {
	if done := s.Exported + s.Failed; s.Queued > done {
		return s.Queued - done
	}
	return 0
}

// Stats account for the spans of each exporter so far.
func (p *Pipeline) Stats() []ExporterStats {
	stats := make([]ExporterStats, len(p.exporters))
	for i, a := range p.exporters {
		stats[i] = a.stats()
	}
	return stats
}

// account counts what happens to the spans of one exporter, and bounds them: a span
// takes a slot when it is queued and frees it once exported (or not), so the batch
// processor's queue is never full and drops nothing uncounted. Emit waits for a slot -
// the back pressure the probes' ring buffers take - until the pipeline closes.
type account struct {
	name string
	sdktrace.SpanExporter
	slots                             chan struct{}
	closing                           <-chan struct{}
	queued, exported, failed, dropped atomic.Uint64
}

func newAccount(name string, e sdktrace.SpanExporter, slots int, closing <-chan struct{}) *account {
	return &account{name: name, SpanExporter: e, slots: make(chan struct{}, slots), closing: closing}
}

func (a *account) stats() ExporterStats {
	return ExporterStats{Exporter: a.name, Queued: a.queued.Load(), Exported: a.exported.Load(), Failed: a.failed.Load(), Dropped: a.dropped.Load()}
}

// ExportSpans exports, counts the outcome and frees the spans' slots.
func (a *account) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := a.SpanExporter.ExportSpans(ctx, spans)
	if err != nil {
		a.failed.Add(uint64(len(spans)))
	} else {
		a.exported.Add(uint64(len(spans)))
	}
	for range spans {
		<-a.slots
	}
	return err
}

// processor wraps the exporter's batch processor: a span is queued once it has a slot.
func (a *account) processor(bsp sdktrace.SpanProcessor) sdktrace.SpanProcessor {
	return &accountedProcessor{SpanProcessor: bsp, account: a}
}

type accountedProcessor struct {
	sdktrace.SpanProcessor
	*account
}

func (p *accountedProcessor) OnEnd(s sdktrace.ReadOnlySpan) {
	select {
	case p.slots <- struct{}{}:
	case <-p.closing:
		p.dropped.Add(1)
		return
	}
	p.queued.Add(1)
	p.SpanProcessor.OnEnd(s)
}

// exporters builds the exporters cfg names.
func exporters(ctx context.Context, cfg Config) ([]namedExporter, error) {
	var exps []namedExporter
	for _, name := range cfg.Exporters {
		var e sdktrace.SpanExporter
		var err error
		switch name {
		case "otlp":
			e, err = otlpExporter(ctx, cfg.OTLP)
		case "console":
			e, err = stdouttrace.New(stdouttrace.WithPrettyPrint())
		default:
			err = fmt.Errorf("no such exporter")
		}
		if err != nil {
			return nil, fmt.Errorf("%s exporter: %w", name, err)
		}
		exps = append(exps, namedExporter{name, e})
	}
	return exps, nil
}

// otlpExporter builds the OTLP exporter with every setting explicit: what the
// exporter would read from the environment itself, Config has read already.
func otlpExporter(ctx context.Context, o OTLP) (sdktrace.SpanExporter, error) {
	creds, tlsConfig, err := o.transport()
	if err != nil {
		return nil, err
	}
	if o.Protocol == "http/protobuf" {
		opts := []otlptracehttp.Option{
			otlptracehttp.WithEndpoint(o.Endpoint.Host),
			otlptracehttp.WithURLPath(o.Endpoint.Path),
			otlptracehttp.WithHeaders(o.Headers),
			otlptracehttp.WithTimeout(o.Timeout),
			otlptracehttp.WithCompression(otlptracehttp.NoCompression),
		}
		if tlsConfig == nil {
			opts = append(opts, otlptracehttp.WithInsecure())
		} else {
			opts = append(opts, otlptracehttp.WithTLSClientConfig(tlsConfig))
		}
		if o.Compression == "gzip" {
			opts = append(opts, otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
		}
		return otlptracehttp.New(ctx, opts...)
	}
	opts := []otlptracegrpc.Option{
		otlptracegrpc.WithEndpoint(o.Endpoint.Host),
		otlptracegrpc.WithHeaders(o.Headers),
		otlptracegrpc.WithTimeout(o.Timeout),
		otlptracegrpc.WithTLSCredentials(creds),
	}
	if o.Compression == "gzip" {
		opts = append(opts, otlptracegrpc.WithCompressor("gzip"))
	}
	return otlptracegrpc.New(ctx, opts...)
}

// transport is how an OTLP exporter of either signal connects: the gRPC credentials,
// always explicit (the exporter's own reading of OTEL_EXPORTER_OTLP_CERTIFICATE would
// otherwise win over plaintext), and the TLS configuration for http/protobuf, nil for
// plaintext.
func (o OTLP) transport() (credentials.TransportCredentials, *tls.Config, error) {
	if o.Insecure {
		return insecure.NewCredentials(), nil, nil
	}
	tlsConfig, err := o.TLSConfig()
	if err != nil {
		return nil, nil, err
	}
	return credentials.NewTLS(tlsConfig), tlsConfig, nil
}

type idsKey struct{}

type ids struct {
	trace trace.TraceID
	span  trace.SpanID
}

// kernelIDs gives each span the IDs its probe chose in the kernel, so that spans the
// kernel already linked (a client call's parent, an outgoing traceparent) agree.
type kernelIDs struct{}

func (kernelIDs) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	v, _ := ctx.Value(idsKey{}).(ids)
	return v.trace, v.span
}

func (kernelIDs) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	v, _ := ctx.Value(idsKey{}).(ids)
	return v.span
}

// rateLimitedErrors logs export errors at most once per interval, with a count.
type rateLimitedErrors struct {
	mu    sync.Mutex
	every time.Duration
	kinds map[string]*errorKind // spans' and metrics' apart: one must not hide the other
}

type errorKind struct {
	last     time.Time
	withheld int
}

func newRateLimitedErrors(every time.Duration) *rateLimitedErrors {
	return &rateLimitedErrors{every: every, kinds: map[string]*errorKind{}}
}

func (r *rateLimitedErrors) Handle(err error) {
	what := "exporting spans: "
	if strings.Contains(err.Error(), "metrics") { // the metrics SDK's: "failed to upload metrics: ..."
		what = "exporting metrics: "
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	k := r.kinds[what]
	if k == nil {
		k = &errorKind{}
		r.kinds[what] = k
	}
	if time.Since(k.last) < r.every {
		k.withheld++
		return
	}
	if k.withheld > 0 {
		slog.Warn(fmt.Sprintf("%s%v (and %d more errors)", what, err, k.withheld))
	} else {
		slog.Warn(what + err.Error())
	}
	k.last, k.withheld = time.Now(), 0
}
