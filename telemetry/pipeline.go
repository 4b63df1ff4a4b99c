// Package telemetry turns the probes' kernel-side spans into OpenTelemetry spans and
// exports them, as its configuration (package otelconfig) says: clock conversion,
// sampling, OTLP encoding and batching with an account of every span (encode.go,
// queue.go, send.go), the request metrics (metrics.go, on the OTel metrics SDK), the
// app's resource.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig"
)

// ErrDisabled is returned when OTEL_SDK_DISABLED=true: tracing is off by choice.
var ErrDisabled = errors.New("tracing disabled by OTEL_SDK_DISABLED=true")

// Pipeline samples the probes' spans, counts them in the request metrics, encodes the
// sampled ones as OTLP once and queues them for each exporter, and accounts for each:
// exported, failed to export, dropped (its queue was full), or never exported (still
// queued when the launcher had to exit).
type Pipeline struct {
	sampling otelconfig.Sampling
	enc      *encoder
	queues   []*queue[scopedSpan, *batch]
	metrics  *requestMetrics // nil without a metrics exporter
	errors   *rateLimitedErrors
	scratch  sync.Pool // *[]byte: a span's encoding, before it is queued
	stop     chan struct{}
	done     sync.WaitGroup

	shutdown    sync.Once
	shutdownErr error
	finished    chan struct{} // closed once Shutdown's work is done
	// spansFlushed and metricsFlushed are closed once Shutdown is done with each
	// signal: what is left when its ctx ends is what its error names.
	spansFlushed, metricsFlushed chan struct{}
	metricsFailed                bool // the metrics' last export failed (said already)

	// sdk takes the sampled spans for the OTLP exporter in a launcher built with
	// -tags sdkexporter (sdkexport.go), a measurement variant; nil otherwise.
	sdk interface {
		exporterQueue
		emit(s *Span, flags trace.TraceFlags)
	}
}

// New builds the pipeline from cfg for the app described by app, sampling as cfg says
// (the probes decide the same in the kernel, see Sampling).
func New(ctx context.Context, app App, cfg otelconfig.Config) (*Pipeline, error) {
	if cfg.Disabled {
		return nil, ErrDisabled
	}
	if sdkPipeline != nil {
		return sdkPipeline(ctx, app, cfg)
	}
	senders, err := senders(cfg)
	if err != nil {
		return nil, err
	}
	return newPipeline(ctx, app, cfg, senders)
}

// sdkPipeline is New in a launcher built with -tags sdkexporter (sdkexport.go): the
// SDK's OTLP trace exporter in place of ours, to measure one against the other (bench
// exporter). nil in the launcher.
var sdkPipeline func(ctx context.Context, app App, cfg otelconfig.Config) (*Pipeline, error)

// exporterQueue is what the pipeline asks of an exporter's queue beside its spans.
type exporterQueue interface {
	forceFlush(ctx context.Context) error
	shutdown(ctx context.Context) error
	stats() ExporterStats
}

// exporters are the exporters' queues.
func (p *Pipeline) exporters() []exporterQueue {
	qs := make([]exporterQueue, 0, len(p.queues)+1)
	for _, q := range p.queues {
		qs = append(qs, q)
	}
	if p.sdk != nil {
		qs = append(qs, p.sdk)
	}
	return qs
}

// namedSender is an exporter's sender and the name it is logged by.
type namedSender struct {
	name string
	sender
}

// senders builds the senders of the exporters cfg names.
func senders(cfg otelconfig.Config) ([]namedSender, error) {
	var ss []namedSender
	for _, name := range cfg.Exporters {
		s, err := newSender(name, cfg.OTLP)
		if err != nil {
			return nil, fmt.Errorf("%s exporter: %w", name, err)
		}
		ss = append(ss, namedSender{name, s})
	}
	return ss, nil
}

func newPipeline(ctx context.Context, app App, cfg otelconfig.Config, senders []namedSender) (*Pipeline, error) {
	res, err := appResource(ctx, app, cfg.Resource)
	if err != nil {
		return nil, err
	}
	clock := NewClock()
	p := &Pipeline{sampling: cfg.Sampling, enc: newEncoder(res, clock), stop: make(chan struct{}), finished: make(chan struct{})}
	p.enc.limits = cfg.Limits
	p.scratch.New = func() any { b := make([]byte, 0, 1024); return &b }
	// The metrics SDK reports its errors through otel.Handle; the spans' are the
	// queues' own. Either way, once per 10 s.
	p.errors = newRateLimitedErrors(10 * time.Second)
	otel.SetErrorHandler(p.errors)
	if p.metrics, err = newRequestMetrics(ctx, cfg.Metrics, res); err != nil {
		return nil, err
	}
	batch := exportBatch(cfg)
	for _, s := range senders {
		p.queues = append(p.queues, newQueue[scopedSpan](s.name, &encodedBatches{send: s.sender, enc: p.enc}, batch, p.reportSpanError))
	}
	p.done.Add(1)
	go p.refreshClock(clock)
	return p, nil
}

// exportBatch is the batch configuration with the exporter's timeout as the bound on
// an export, retries included, when it is the tighter.
func exportBatch(c otelconfig.Config) otelconfig.Batch {
	b := c.Batch
	if c.OTLP.Timeout > 0 && (b.ExportTimeout == 0 || c.OTLP.Timeout < b.ExportTimeout) {
		b.ExportTimeout = c.OTLP.Timeout
	}
	return b
}

func (p *Pipeline) reportSpanError(err error) { p.errors.report("exporting spans: ", err) }

func (p *Pipeline) refreshClock(c *Clock) {
	defer p.done.Done()
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			c.Refresh()
		}
	}
}

// Emit counts a span in its duration histogram, sampled or not, and, if it is
// sampled, queues it for export. It never waits: a span that finds an exporter's
// queue full is dropped for that exporter, and counted.
func (p *Pipeline) Emit(s *Span) {
	sampled := sampled(p.sampling, s)
	if p.metrics != nil {
		p.metrics.record(s, sampled)
	}
	if !sampled || len(p.queues) == 0 && p.sdk == nil {
		return
	}
	flags := trace.FlagsSampled
	if s.Parent.IsValid() {
		flags |= s.Parent.TraceFlags() // as the SDK keeps the parent's other flags
	}
	if p.sdk != nil {
		p.sdk.emit(s, flags)
		if len(p.queues) == 0 {
			return // nothing to encode for
		}
	}
	buf := p.scratch.Get().(*[]byte)
	*buf = p.enc.appendSpan((*buf)[:0], s, flags)
	scope := scopeOf(s)
	for _, q := range p.queues {
		q.add(scopedSpan{scope, *buf})
	}
	p.scratch.Put(buf)
}

// The prefixes of the pipeline's errors: each names the one signal whose error it
// wraps (see TestMessagesNameTheirSignal), so that a caller wraps them as "telemetry"
// and never as one signal.
const (
	flushingSpans   = "flushing spans: "
	flushingMetrics = "flushing metrics: "
)

// ForceFlush exports what is queued, within ctx.
func (p *Pipeline) ForceFlush(ctx context.Context) error {
	var errs []error
	for _, q := range p.exporters() {
		if err := q.forceFlush(ctx); err != nil {
			errs = append(errs, fmt.Errorf(flushingSpans+"%w", err))
		}
	}
	if p.metrics != nil {
		if err := p.metrics.forceFlush(ctx); err != nil {
			errs = append(errs, fmt.Errorf(flushingMetrics+"%w", err))
		}
	}
	return errors.Join(errs...)
}

// Shutdown exports what is queued, within ctx. Spans emitted afterwards are not
// exported, nor counted. Later calls wait for the first (within their own ctx) and
// return its result. Export failures are said, as they are while running: the metrics'
// last export, whose failure would otherwise go unsaid, at once ("exporting metrics:
// ..."); the spans', by Stats (LastError). The error returned names the signal each of
// its parts is about: "flushing spans: ..." for a spans exporter's, and, out of time,
// "flushing metrics: context deadline exceeded" for the signal still being exported,
// not one for the other.
func (p *Pipeline) Shutdown(ctx context.Context) error {
	p.shutdown.Do(func() {
		p.spansFlushed, p.metricsFlushed = make(chan struct{}), make(chan struct{})
		go func() {
			defer close(p.finished)
			close(p.stop)
			p.done.Wait()
			var wg sync.WaitGroup
			qs := p.exporters()
			errs := make([]error, len(qs))
			for i, q := range qs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := q.shutdown(ctx); err != nil {
						errs[i] = fmt.Errorf(flushingSpans+"%s exporter: %w", q.stats().Exporter, err)
					}
				}()
			}
			if p.metrics != nil {
				if err := p.metrics.shutdown(ctx); err != nil {
					p.errors.now("exporting metrics: ", err)
					p.metricsFailed = true // read once metricsFlushed is closed
				}
			}
			close(p.metricsFlushed)
			wg.Wait()
			p.shutdownErr = errors.Join(errs...) // read once spansFlushed is closed
			close(p.spansFlushed)
		}()
	})
	select {
	case <-p.finished:
		return p.shutdownErr
	case <-ctx.Done():
	}
	// The metrics' last export ends with ctx too, with its reason (the SDK's retries
	// wrap the last attempt's error): a moment for it to be said before the launcher
	// exits.
	select {
	case <-p.finished:
	case <-time.After(shutdownGrace):
	}
	// Said of each signal still being exported when ctx ended; a signal done by now
	// says its own error, if any.
	var errs []error
	if !closed(p.metricsFlushed) || p.metricsFailed {
		errs = append(errs, fmt.Errorf(flushingMetrics+"%w", ctx.Err()))
	}
	if closed(p.spansFlushed) {
		errs = append(errs, p.shutdownErr)
	} else {
		errs = append(errs, fmt.Errorf(flushingSpans+"%w", ctx.Err()))
	}
	return errors.Join(errs...)
}

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// shutdownGrace bounds the wait, past Shutdown's deadline, for its exports to say why
// they ended (well within the launcher's own wait for the final loss report).
const shutdownGrace = 500 * time.Millisecond

// ExporterStats account for the sampled spans handed to one exporter.
type ExporterStats struct {
	Exporter string // "otlp", "console"
	Queued   uint64 // taken into its queue
	Exported uint64 // exported
	Failed   uint64 // in exports that failed (after the exporter's retries), or rejected by the collector
	Dropped  uint64 // never queued: the queue was full (OTEL_BSP_MAX_QUEUE_SIZE, --max-queue)
	// LastError is the error of the last export attempt, "" if it succeeded (or none
	// was made): why spans still unexported at exit were not.
	LastError string
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
	var stats []ExporterStats
	for _, q := range p.exporters() {
		stats = append(stats, q.stats())
	}
	return stats
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

// Handle takes the errors of the OpenTelemetry SDK: the metrics pipeline's.
func (r *rateLimitedErrors) Handle(err error) { r.report("exporting metrics: ", err) }

// report logs err, said of what, unless one was said of it in the last interval.
func (r *rateLimitedErrors) report(what string, err error) { r.log(what, err, false) }

// now logs err, said of what, whatever was said before: an error that is the last.
func (r *rateLimitedErrors) now(what string, err error) { r.log(what, err, true) }

func (r *rateLimitedErrors) log(what string, err error, now bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := r.kinds[what]
	if k == nil {
		k = &errorKind{}
		r.kinds[what] = k
	}
	if !now && time.Since(k.last) < r.every {
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
