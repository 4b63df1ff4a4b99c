// Package telemetry turns the probes' kernel-side spans into OpenTelemetry spans and
// exports them: clock conversion, the OTel SDK pipeline configured from the standard
// OTEL_* environment variables, and the app's resource.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// ErrDisabled is returned when OTEL_SDK_DISABLED=true: tracing is off by choice.
var ErrDisabled = errors.New("tracing disabled by OTEL_SDK_DISABLED=true")

// Pipeline exports spans through the OTel SDK.
type Pipeline struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	clock  *Clock
	stop   chan struct{}
	done   sync.WaitGroup
}

// CheckEnv validates the tracing configuration in the environment without building
// anything, so that a mistake is reported before the app starts. ErrDisabled when
// OTEL_SDK_DISABLED=true.
func CheckEnv() error {
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true") {
		return ErrDisabled
	}
	for _, name := range strings.Split(os.Getenv("OTEL_TRACES_EXPORTER"), ",") {
		switch strings.TrimSpace(name) {
		case "", "otlp", "console", "none":
		default:
			return fmt.Errorf("OTEL_TRACES_EXPORTER=%s: want otlp, console or none", name)
		}
	}
	switch p := otlpProtocol(); p {
	case "", "grpc", "http/protobuf":
	default:
		return fmt.Errorf("OTLP protocol %q: want grpc or http/protobuf", p)
	}
	return nil
}

func otlpProtocol() string {
	if p := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"); p != "" {
		return p
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
}

// New builds the pipeline from the environment (OTEL_TRACES_EXPORTER,
// OTEL_EXPORTER_OTLP_*, OTEL_BSP_*, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES), for
// the app described by app, sampling as the probes do (see Sampling).
func New(ctx context.Context, app App, sampling Sampling) (*Pipeline, error) {
	if err := CheckEnv(); err != nil {
		return nil, err
	}
	exps, err := exporters(ctx)
	if err != nil {
		return nil, err
	}
	return newPipeline(ctx, app, sampling, exps)
}

func newPipeline(ctx context.Context, app App, sampling Sampling, exps []sdktrace.SpanExporter) (*Pipeline, error) {
	res, err := appResource(ctx, app)
	if err != nil {
		return nil, err
	}
	otel.SetErrorHandler(newRateLimitedErrors(10 * time.Second))
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res), sdktrace.WithIDGenerator(kernelIDs{}), sdktrace.WithSampler(sampling.sdkSampler()),
	}
	for _, e := range exps {
		// Blocking: a slow exporter pushes back onto the probes' ring buffers, whose
		// losses the kernel counts. Memory stays bounded (OTEL_BSP_MAX_QUEUE_SIZE).
		opts = append(opts, sdktrace.WithSpanProcessor(sdktrace.NewBatchSpanProcessor(e, sdktrace.WithBlocking())))
	}
	p := &Pipeline{tp: sdktrace.NewTracerProvider(opts...), clock: NewClock(), stop: make(chan struct{})}
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

// Emit hands a span to the SDK, which samples it and queues it for export.
func (p *Pipeline) Emit(s *Span) {
	ctx := context.WithValue(context.Background(), idsKey{}, ids{s.TraceID, s.SpanID})
	if s.Parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, s.Parent)
	}
	_, span := p.tracer.Start(ctx, s.Name,
		trace.WithSpanKind(s.Kind),
		trace.WithTimestamp(p.clock.Wall(s.Start)),
		trace.WithAttributes(s.Attributes...))
	if s.Status != 0 {
		span.SetStatus(s.Status, "")
	}
	span.End(trace.WithTimestamp(p.clock.Wall(s.End)))
}

// Shutdown exports what is queued, within ctx.
func (p *Pipeline) Shutdown(ctx context.Context) error {
	close(p.stop)
	p.done.Wait()
	return p.tp.Shutdown(ctx)
}

// exporters reads OTEL_TRACES_EXPORTER (a comma-separated list; default otlp) and the
// OTLP protocol (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_EXPORTER_OTLP_PROTOCOL;
// default grpc). Each exporter reads its own OTEL_EXPORTER_OTLP_* settings.
func exporters(ctx context.Context) ([]sdktrace.SpanExporter, error) {
	names := os.Getenv("OTEL_TRACES_EXPORTER")
	if strings.TrimSpace(names) == "" {
		names = "otlp"
	}
	var exps []sdktrace.SpanExporter
	for _, name := range strings.Split(names, ",") {
		var e sdktrace.SpanExporter
		var err error
		switch strings.TrimSpace(name) {
		case "otlp":
			e, err = otlpExporter(ctx)
		case "console":
			e, err = stdouttrace.New(stdouttrace.WithPrettyPrint())
		case "none":
			continue
		default:
			return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%s: want otlp, console or none", name)
		}
		if err != nil {
			return nil, fmt.Errorf("%s exporter: %w", name, err)
		}
		exps = append(exps, e)
	}
	return exps, nil
}

func otlpExporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	switch protocol := otlpProtocol(); protocol {
	case "", "grpc":
		return otlptracegrpc.New(ctx)
	case "http/protobuf":
		return otlptracehttp.New(ctx)
	default:
		return nil, fmt.Errorf("OTLP protocol %q: want grpc or http/protobuf", protocol)
	}
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
	mu       sync.Mutex
	every    time.Duration
	last     time.Time
	withheld int
}

func newRateLimitedErrors(every time.Duration) *rateLimitedErrors {
	return &rateLimitedErrors{every: every}
}

func (r *rateLimitedErrors) Handle(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.last) < r.every {
		r.withheld++
		return
	}
	if r.withheld > 0 {
		slog.Warn(fmt.Sprintf("exporting spans: %v (and %d more errors)", err, r.withheld))
	} else {
		slog.Warn("exporting spans: " + err.Error())
	}
	r.last, r.withheld = time.Now(), 0
}
