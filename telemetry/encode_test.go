package telemetry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/otel-go-launcher/otel-go-launcher/internal/version"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig"
)

// memSender keeps what it is sent, decoded; it can stall, wait at a gate, or fail every
// failEvery-th export (a failure not retried).
type memSender struct {
	mu        sync.Mutex
	requests  []*coltracepb.ExportTraceServiceRequest
	calls     int
	failEvery int
	stall     time.Duration // the first export takes this long
	gate      chan struct{}
	reject    int64 // spans of each export answered as rejected (a partial success)
}

func (m *memSender) attempt(ctx context.Context, req []byte, resp *coltracepb.ExportTraceServiceResponse) (bool, time.Duration, error) {
	if m.gate != nil {
		select {
		case <-m.gate:
		case <-ctx.Done():
			return false, 0, ctx.Err()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.calls == 1 && m.stall > 0 {
		time.Sleep(m.stall)
	}
	if m.failEvery > 0 && m.calls%m.failEvery == 0 {
		return false, 0, errors.New("collector refused")
	}
	var r coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(req, &r); err != nil {
		return false, 0, err
	}
	m.requests = append(m.requests, &r)
	if m.reject > 0 {
		resp.PartialSuccess = &coltracepb.ExportTracePartialSuccess{RejectedSpans: m.reject, ErrorMessage: "too old"}
	}
	return false, 0, nil
}

func (m *memSender) close() error { return nil }

func (m *memSender) spans() []*tracepb.Span {
	m.mu.Lock()
	defer m.mu.Unlock()
	var spans []*tracepb.Span
	for _, r := range m.requests {
		for _, rs := range r.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				spans = append(spans, ss.Spans...)
			}
		}
	}
	return spans
}

func (m *memSender) resource() *resourcepb.Resource {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.requests[0].ResourceSpans[0].Resource
}

// testSpans are spans of every shape the probes make, and attribute values of every
// type.
func testSpans() []*Span {
	now := monoNow()
	ts, _ := trace.ParseTraceState("vendor=abc,other=x")
	remote := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2}, SpanID: trace.SpanID{3}, TraceFlags: trace.FlagsSampled | 0x02, TraceState: ts, Remote: true})
	local := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2}, SpanID: trace.SpanID{4}, TraceFlags: trace.FlagsSampled})
	long := string(bytes.Repeat([]byte("/a-long-path"), 40)) // attributes and spans longer than 127 bytes
	return []*Span{
		{Scope: testScopes[0], TraceID: trace.TraceID{1, 2}, SpanID: trace.SpanID{4}, Parent: remote, Kind: trace.SpanKindServer, Name: "GET /items/{id}",
			Start: now, End: now + 250_000, Attributes: []attribute.KeyValue{
				attribute.String("http.request.method", "GET"), attribute.String("url.path", long), attribute.Int("http.response.status_code", 200),
				attribute.Int("server.port", -1), attribute.Bool("b", true), attribute.Bool("f", false), attribute.Float64("x", 1.5),
				attribute.StringSlice("ss", []string{"a", ""}), attribute.IntSlice("is", []int{1, -2}), attribute.BoolSlice("bs", []bool{true}),
				attribute.Float64Slice("fs", []float64{0.25}), attribute.String("empty", ""),
			}},
		{Scope: testScopes[1], TraceID: trace.TraceID{1, 2}, SpanID: trace.SpanID{5}, Parent: local, Kind: trace.SpanKindClient, Name: "SELECT users",
			Start: now + 10, End: now + 90, Status: codes.Error, StatusDescription: "connection reset",
			Attributes: []attribute.KeyValue{attribute.String("db.system.name", "postgresql"), {Key: "empty-value"}, {Value: attribute.StringValue("no key")}}},
		{TraceID: trace.TraceID{9}, SpanID: trace.SpanID{9}, Kind: trace.SpanKindInternal, Name: long, Start: now, End: now},
		{Scope: testScopes[0], TraceID: trace.TraceID{7}, SpanID: trace.SpanID{7}, Name: "", Start: now, End: now + 1, Status: codes.Ok},
		// The OpenTelemetry API's: events (one with attributes) and links (remote and
		// sampled; local and not, with a tracestate the SDK's exporter leaves out).
		{Scope: testScopes[1], TraceID: trace.TraceID{1, 3}, SpanID: trace.SpanID{8}, Kind: trace.SpanKindInternal, Name: "load-order",
			Start: now, End: now + 1000, Events: []Event{{Name: "exception", Time: now + 10, Attributes: []attribute.KeyValue{
				attribute.String("exception.type", "*errors.errorString"), attribute.String("exception.message", "stock low")}},
				{Name: "validated", Time: now + 20}},
			Links: []Link{{SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{0xa}, SpanID: trace.SpanID{0xb},
				TraceFlags: trace.FlagsSampled, Remote: true})},
				{SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{0xc}, SpanID: trace.SpanID{0xd},
					TraceState: ts})}}},
		// Ended by the launcher at the app's exit: the reason is its last attribute.
		{Scope: testScopes[2], TraceID: trace.TraceID{1, 2}, SpanID: trace.SpanID{6}, Parent: local, Kind: trace.SpanKindClient, Name: "demo.Echo/Watch",
			Start: now, End: now + 5e9, Attributes: []attribute.KeyValue{attribute.String("rpc.method", "demo.Echo/Watch")}, EndReason: EndAppExit},
	}
}

// The launcher's OTLP is the SDK exporter's, byte for byte, for the same spans: the
// same resource, scopes, IDs, parents, flags, trace state, times, attributes and status;
// a batch's spans grouped by scope as the SDK's exporter groups them.
func TestEncodingMatchesSDK(t *testing.T) {
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test")
	ctx := context.Background()
	res, err := appResource(ctx, App{Path: "/srv/app", PID: 42, GoVersion: "go1.26.8"}, envResource(t))
	if err != nil {
		t.Fatal(err)
	}
	clock := NewClock()
	spans := testSpans()

	// The SDK's way: spans started and ended with the same IDs and times, exported by
	// its OTLP exporter to a client that keeps the request it would send.
	client := &capturingClient{}
	exp, err := otlptrace.New(ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithIDGenerator(spanIDs{}),
		sdktrace.WithSyncer(exp), sdktrace.WithSpanProcessor(recorder), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	endSDKSpans(ctx, tp, spans, clock)
	tp.Shutdown(ctx)
	sdkRequests := marshalRequests(t, client.requests)
	// And all the spans in one export: grouped by scope.
	if err := exp.ExportSpans(ctx, recorder.Ended()); err != nil {
		t.Fatal(err)
	}
	sdkAll, _ := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: client.requests[len(client.requests)-1]})

	// Ours: each span alone in a batch, as the SDK sent them; then all in one.
	enc := newEncoder(res, clock)
	var all batch
	for i, s := range spans {
		flags := trace.FlagsSampled
		if s.Parent.IsValid() {
			flags |= s.Parent.TraceFlags()
		}
		span := enc.appendSpan(nil, s, flags)
		all.add(scopedSpan{scopeOf(s), span})
		var one batch
		one.add(scopedSpan{scopeOf(s), span})
		if got := enc.request(nil, &one); !bytes.Equal(got, sdkRequests[i]) {
			t.Errorf("span %d (%s): not the SDK's bytes\n%s", i, s.Name, requestDiff(got, sdkRequests[i]))
		}
	}
	got := enc.request(nil, &all)
	if !bytes.Equal(got, sdkAll) {
		t.Errorf("all spans in one request: not the SDK's bytes\n%s", requestDiff(got, sdkAll))
	}
	var one coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(got, &one); err != nil {
		t.Fatal(err)
	}
	scopes := map[string]int{}
	for _, ss := range one.ResourceSpans[0].ScopeSpans {
		scopes[ss.Scope.Name] += len(ss.Spans)
		if ss.Scope.Version != version.String() || ss.SchemaUrl != semconv.SchemaURL {
			t.Errorf("scope %s: version %q, schema %q", ss.Scope.Name, ss.Scope.Version, ss.SchemaUrl)
		}
	}
	if want := map[string]int{testScopes[0].Name: 2, testScopes[1].Name: 2, testScopes[2].Name: 1, LauncherScope.Name: 1}; !maps.Equal(scopes, want) {
		t.Errorf("spans by scope %v, want %v", scopes, want)
	}
}

// A span made under a server span has the server span's tracestate - the one its
// request came with - as the SDK gives a span its parent's: the probe kit gives it to
// the span's parent (kit.traceStates), and the encoding is the SDK's for the same tree.
func TestChildSpansCarryTraceState(t *testing.T) {
	ctx := context.Background()
	res, err := appResource(ctx, App{Path: "/srv/app"}, envResource(t))
	if err != nil {
		t.Fatal(err)
	}
	clock := NewClock()
	now := monoNow()
	ts, _ := trace.ParseTraceState("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
	incoming := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled, TraceState: ts, Remote: true})
	server := &Span{Scope: testScopes[0], TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, Parent: incoming, Kind: trace.SpanKindServer, Name: "GET /", Start: now, End: now + 100}
	// As the kit gives it: the server span's context, with the tracestate the kernel sent.
	local := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled, TraceState: ts})
	query := &Span{Scope: testScopes[1], TraceID: trace.TraceID{1}, SpanID: trace.SpanID{3}, Parent: local, Kind: trace.SpanKindClient, Name: "SELECT", Start: now + 10, End: now + 20}
	call := &Span{Scope: testScopes[0], TraceID: trace.TraceID{1}, SpanID: trace.SpanID{4}, Parent: local, Kind: trace.SpanKindClient, Name: "GET", Start: now + 30, End: now + 40}

	// The SDK's: the children started under the server span itself.
	client := &capturingClient{}
	exp, err := otlptrace.New(ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithIDGenerator(spanIDs{}), sdktrace.WithSpanProcessor(recorder))
	sctx, sdkServer := tracerOf(tp, server).Start(trace.ContextWithRemoteSpanContext(context.WithValue(ctx, spanIDs{}, server), incoming),
		server.Name, trace.WithSpanKind(server.Kind), trace.WithTimestamp(clock.Wall(server.Start)))
	for _, c := range []*Span{query, call} {
		_, span := tracerOf(tp, c).Start(context.WithValue(sctx, spanIDs{}, c), c.Name, trace.WithSpanKind(c.Kind), trace.WithTimestamp(clock.Wall(c.Start)))
		if got := span.SpanContext().TraceState().String(); got != ts.String() {
			t.Fatalf("the SDK's child: tracestate %q", got)
		}
		span.End(trace.WithTimestamp(clock.Wall(c.End)))
	}
	sdkServer.End(trace.WithTimestamp(clock.Wall(server.End)))
	if err := exp.ExportSpans(ctx, recorder.Ended()); err != nil {
		t.Fatal(err)
	}
	want, _ := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: client.requests[0]})

	enc := newEncoder(res, clock)
	var b batch
	for _, s := range []*Span{query, call, server} { // in the order they end
		b.add(scopedSpan{scopeOf(s), enc.appendSpan(nil, s, trace.FlagsSampled)})
	}
	if got := enc.request(nil, &b); !bytes.Equal(got, want) {
		t.Errorf("not the SDK's bytes\n%s", requestDiff(got, want))
	}
	var r coltracepb.ExportTraceServiceRequest
	proto.Unmarshal(want, &r)
	for _, ss := range r.ResourceSpans[0].ScopeSpans {
		for _, s := range ss.Spans {
			if s.TraceState != ts.String() {
				t.Errorf("%s: tracestate %q", s.Name, s.TraceState)
			}
		}
	}
}

// testScopes are the scopes of testSpans: those of three libraries (and the launcher's).
var testScopes = []*Scope{NewScope("example.com/probes/http"), NewScope("example.com/probes/sql"), NewScope("example.com/probes/rpc")}

// tracerOf is the SDK's tracer of s's scope.
func tracerOf(tp trace.TracerProvider, s *Span) trace.Tracer {
	scope := scopeOf(s)
	return tp.Tracer(scope.Name, trace.WithInstrumentationVersion(scope.Version), trace.WithSchemaURL(scope.SchemaURL))
}

// requestDiff shows two requests, ours and the SDK's, bytes and decoded.
func requestDiff(ours, sdk []byte) string {
	var o, w coltracepb.ExportTraceServiceRequest
	proto.Unmarshal(ours, &o)
	proto.Unmarshal(sdk, &w)
	return fmt.Sprintf("ours %x\nSDK's %x\nours %v\nSDK's %v", ours, sdk, &o, &w)
}

// spanIDs gives the SDK the IDs the spans have.
type spanIDs struct{}

func (spanIDs) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	s := ctx.Value(spanIDs{}).(*Span)
	return s.TraceID, s.SpanID
}

func (spanIDs) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	return ctx.Value(spanIDs{}).(*Span).SpanID
}

type capturingClient struct{ requests [][]*tracepb.ResourceSpans }

func (c *capturingClient) Start(context.Context) error { return nil }
func (c *capturingClient) Stop(context.Context) error  { return nil }
func (c *capturingClient) UploadTraces(_ context.Context, rs []*tracepb.ResourceSpans) error {
	c.requests = append(c.requests, rs)
	return nil
}

// What encoding one server span costs (the SDK's span, transform and marshal cost
// ~20 µs of the launcher's CPU; see docs/benchmarks.md).
func BenchmarkEncodeServerSpan(b *testing.B) {
	b.Run("default limits", func(b *testing.B) { benchmarkEncode(b, testConfig().Limits) })
	// Every string value cut to 64 characters: the long url.path is.
	b.Run("length limit", func(b *testing.B) {
		benchmarkEncode(b, otelconfig.Limits{AttributeValueLength: 64, AttributeCount: 128})
	})
}

func benchmarkEncode(b *testing.B, limits otelconfig.Limits) {
	res, _ := appResource(context.Background(), App{Path: "/app"}, envResource(b))
	enc := newEncoder(res, NewClock())
	enc.limits = limits
	s := testSpans()[0]
	buf := make([]byte, 0, 2048)
	b.ReportAllocs()
	for b.Loop() {
		buf = enc.appendSpan(buf[:0], s, trace.FlagsSampled)
	}
}

// What emitting one sampled span costs, up to its export: its encoding, its queueing,
// and its share of building and sending the batch's request (to a sender that drops it).
// Each full batch is waited for: the figure is the work, not how the export goroutine
// and the benchmark's share the CPUs.
func BenchmarkEmitSpan(b *testing.B) {
	cfg := testConfig()
	p, err := newPipeline(context.Background(), App{Path: "/app"}, cfg, []namedSender{{"discard", discardSender{}}})
	if err != nil {
		b.Fatal(err)
	}
	spans := testSpans()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		p.Emit(spans[i%2]) // a server span and its client span
		if i++; i%cfg.Batch.MaxExportBatchSize == 0 {
			p.ForceFlush(context.Background())
		}
	}
	b.StopTimer()
	p.Shutdown(context.Background())
}

type discardSender struct{}

func (discardSender) attempt(context.Context, []byte, *coltracepb.ExportTraceServiceResponse) (bool, time.Duration, error) {
	return false, 0, nil
}
func (discardSender) close() error { return nil }

// endSDKSpans starts and ends, with the SDK's tracer provider tp (its IDs from
// spanIDs), spans with the IDs, parents, times, attributes and status ours have: what
// the SDK makes of the same spans.
func endSDKSpans(ctx context.Context, tp *sdktrace.TracerProvider, spans []*Span, clock *Clock) {
	for _, s := range spans {
		ctx := context.WithValue(ctx, spanIDs{}, s)
		if s.Parent.IsValid() {
			ctx = trace.ContextWithSpanContext(ctx, s.Parent)
		}
		attrs := s.Attributes
		if s.EndReason != "" {
			attrs = append(attrs[:len(attrs):len(attrs)], EndReasonKey.String(string(s.EndReason)))
		}
		var links []trace.Link
		for _, l := range s.Links {
			links = append(links, trace.Link{SpanContext: l.SpanContext, Attributes: l.Attributes})
		}
		_, span := tracerOf(tp, s).Start(ctx, s.Name, trace.WithSpanKind(s.Kind), trace.WithTimestamp(clock.Wall(s.Start)), trace.WithAttributes(attrs...),
			trace.WithLinks(links...))
		for _, ev := range s.Events {
			span.AddEvent(ev.Name, trace.WithTimestamp(clock.Wall(ev.Time)), trace.WithAttributes(ev.Attributes...))
		}
		span.SetStatus(s.Status, s.StatusDescription)
		span.End(trace.WithTimestamp(clock.Wall(s.End)))
	}
}

// marshalRequests are the requests a capturingClient kept, as bytes.
func marshalRequests(t *testing.T, requests [][]*tracepb.ResourceSpans) [][]byte {
	t.Helper()
	var reqs [][]byte
	for _, rs := range requests {
		r, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: rs})
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, r)
	}
	return reqs
}
