package telemetry

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/exemplar"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/dbconv"
	"go.opentelemetry.io/otel/semconv/v1.43.0/httpconv"
	"go.opentelemetry.io/otel/semconv/v1.43.0/messagingconv"
	"go.opentelemetry.io/otel/semconv/v1.43.0/rpcconv"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig"
)

// cardinalityLimit bounds the attribute sets of each histogram: past it, measurements
// go to the SDK's overflow set (otel.metric.overflow=true), so memory stays bounded
// whatever the app serves. The attributes kept are the conventions' low-cardinality
// ones (a route, never a path), so a real service stays far below it.
const cardinalityLimit = 2000

// durationMetric is one of the conventions' duration histograms, and the attributes of
// a span it keeps: only those the conventions give it, never ids, paths or client ports.
type durationMetric struct {
	hist metric.Float64Histogram
	keep map[attribute.Key]bool
	sets *attributeSets
}

// messageCounter is one of the messaging conventions' message counters, and the
// attributes of a span it keeps.
type messageCounter struct {
	counter metric.Int64Counter
	keep    map[attribute.Key]bool
	sets    *attributeSets
}

// requestMetrics records the conventions' duration histograms from spans: every span
// the probes make, sampled or not, and exports them with the metrics SDK. Each scope's
// spans are measured by the scope's meter (its name, version and schema URL), as an
// instrumentation library's metrics are by its own.
type requestMetrics struct {
	mp        *sdkmetric.MeterProvider
	scopes    sync.Map   // *Scope -> *scopeMetrics, made at the scope's first span
	making    sync.Mutex // one scope's histograms made once
	pool      sync.Pool  // []attribute.KeyValue buffers
	contexts  sync.Pool  // *spanContext
	exemplars bool       // the exemplar filter may take one: the span's IDs go with its measurement
}

// scopeMetrics are the histograms of one scope's meter.
type scopeMetrics struct {
	httpServer, httpClient, rpcServer, rpcClient, db, messaging durationMetric
	// The messages a producer span sent and a consumer span delivered to the app.
	sent, consumed messageCounter
}

// The conventions' recommended bucket boundaries, in seconds.
var (
	httpBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}
	dbBuckets   = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10}
)

// newRequestMetrics builds the metrics pipeline cfg describes, with the spans' resource
// (and readers, for tests); nil without an exporter (OTEL_METRICS_EXPORTER=none).
func newRequestMetrics(ctx context.Context, cfg otelconfig.Metrics, res *resource.Resource, readers ...sdkmetric.Reader) (*requestMetrics, error) {
	if len(cfg.Exporters) == 0 && len(readers) == 0 {
		return nil, nil
	}
	opts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithCardinalityLimit(cardinalityLimit),
		sdkmetric.WithExemplarFilter(exemplarFilter(cfg))}
	for _, r := range readers {
		opts = append(opts, sdkmetric.WithReader(r))
	}
	for _, name := range cfg.Exporters {
		exp, err := metricExporter(ctx, name, cfg, true)
		if err != nil {
			return nil, fmt.Errorf("%s metrics exporter: %w", name, err)
		}
		opts = append(opts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp,
			sdkmetric.WithInterval(cfg.Interval), sdkmetric.WithTimeout(cfg.Timeout))))
	}
	m := &requestMetrics{mp: sdkmetric.NewMeterProvider(opts...), exemplars: cfg.ExemplarFilter != "always_off"}
	m.pool.New = func() any { return new([]attribute.KeyValue) }
	m.contexts.New = newSpanContext
	// The launcher's scope now: what would fail for any scope fails here.
	if _, err := m.scope(LauncherScope); err != nil {
		m.mp.Shutdown(ctx)
		return nil, err
	}
	return m, nil
}

// scope is the histograms of scope's meter, made at its first span.
func (m *requestMetrics) scope(scope *Scope) (*scopeMetrics, error) {
	if sm, ok := m.scopes.Load(scope); ok {
		return sm.(*scopeMetrics), nil
	}
	m.making.Lock()
	defer m.making.Unlock()
	if sm, ok := m.scopes.Load(scope); ok {
		return sm.(*scopeMetrics), nil
	}
	meter := m.mp.Meter(scope.Name, metric.WithInstrumentationVersion(scope.Version), metric.WithSchemaURL(scope.SchemaURL))
	sm := &scopeMetrics{}
	var err error
	histogram := func(dst *durationMetric, name, desc string, buckets []float64, keys ...attribute.Key) {
		if err != nil {
			return
		}
		dst.hist, err = meter.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(buckets...))
		dst.keep = map[attribute.Key]bool{semconv.ErrorTypeKey: true}
		dst.sets = &attributeSets{seed: maphash.MakeSeed(), sets: map[uint64][]attributeSet{}}
		for _, k := range keys {
			dst.keep[k] = true
		}
	}
	histogram(&sm.httpServer, httpconv.ServerRequestDuration{}.Name(), httpconv.ServerRequestDuration{}.Description(), httpBuckets,
		semconv.HTTPRequestMethodKey, semconv.HTTPResponseStatusCodeKey, semconv.HTTPRouteKey, semconv.URLSchemeKey,
		semconv.NetworkProtocolNameKey, semconv.NetworkProtocolVersionKey)
	histogram(&sm.httpClient, httpconv.ClientRequestDuration{}.Name(), httpconv.ClientRequestDuration{}.Description(), httpBuckets,
		semconv.HTTPRequestMethodKey, semconv.HTTPResponseStatusCodeKey, semconv.ServerAddressKey, semconv.ServerPortKey,
		semconv.URLSchemeKey, semconv.NetworkProtocolNameKey, semconv.NetworkProtocolVersionKey)
	histogram(&sm.rpcServer, rpcconv.ServerCallDuration{}.Name(), rpcconv.ServerCallDuration{}.Description(), httpBuckets,
		semconv.RPCSystemNameKey, semconv.RPCMethodKey, semconv.RPCResponseStatusCodeKey)
	histogram(&sm.rpcClient, rpcconv.ClientCallDuration{}.Name(), rpcconv.ClientCallDuration{}.Description(), httpBuckets,
		semconv.RPCSystemNameKey, semconv.RPCMethodKey, semconv.RPCResponseStatusCodeKey, semconv.ServerAddressKey, semconv.ServerPortKey)
	histogram(&sm.db, dbconv.ClientOperationDuration{}.Name(), dbconv.ClientOperationDuration{}.Description(), dbBuckets,
		semconv.DBSystemNameKey, semconv.DBOperationNameKey, semconv.DBCollectionNameKey, semconv.DBNamespaceKey,
		semconv.DBResponseStatusCodeKey, semconv.ServerAddressKey, semconv.ServerPortKey)
	messagingKeys := []attribute.Key{semconv.MessagingSystemKey, semconv.MessagingOperationNameKey, semconv.MessagingDestinationNameKey,
		semconv.MessagingDestinationPartitionIDKey, semconv.MessagingConsumerGroupNameKey, semconv.ServerAddressKey, semconv.ServerPortKey}
	histogram(&sm.messaging, messagingconv.ClientOperationDuration{}.Name(), messagingconv.ClientOperationDuration{}.Description(), httpBuckets,
		append(messagingKeys, semconv.MessagingOperationTypeKey)...)
	counter := func(dst *messageCounter, name, desc string) {
		if err != nil {
			return
		}
		dst.counter, err = meter.Int64Counter(name, metric.WithUnit("{message}"), metric.WithDescription(desc))
		dst.keep = map[attribute.Key]bool{semconv.ErrorTypeKey: true}
		dst.sets = &attributeSets{seed: maphash.MakeSeed(), sets: map[uint64][]attributeSet{}}
		for _, k := range messagingKeys {
			dst.keep[k] = true
		}
	}
	counter(&sm.sent, messagingconv.ClientSentMessages{}.Name(), messagingconv.ClientSentMessages{}.Description())
	counter(&sm.consumed, messagingconv.ClientConsumedMessages{}.Name(), messagingconv.ClientConsumedMessages{}.Description())
	if err != nil {
		return nil, fmt.Errorf("the request metrics of %s: %w", scope.Name, err)
	}
	m.scopes.Store(scope, sm)
	return sm, nil
}

// metricOf is the histogram of sm a span counts in, by what its attributes say it is;
// nil for none.
func (sm *scopeMetrics) metricOf(s *Span) *durationMetric {
	var rpc, db, http, messaging bool
	for _, kv := range s.Attributes {
		switch kv.Key {
		case semconv.MessagingSystemKey:
			messaging = true
		case semconv.RPCSystemNameKey:
			rpc = true
		case semconv.DBSystemNameKey:
			db = true
		case semconv.HTTPRequestMethodKey:
			http = true
		}
	}
	server := s.Kind == trace.SpanKindServer
	switch {
	case messaging:
		return &sm.messaging
	case rpc && server:
		return &sm.rpcServer
	case rpc:
		return &sm.rpcClient
	case db:
		return &sm.db
	case http && server:
		return &sm.httpServer
	case http:
		return &sm.httpClient
	}
	return nil
}

// record counts the span in its histogram. With exemplars, the span's context goes
// with the measurement: a sampled span (an exported one) may be an exemplar's trace.
func (m *requestMetrics) record(s *Span, sampled bool) {
	// A span the launcher ended (the app exited while it was open) lasted as long as
	// the app let it, not as long as its request: no measurement of the request.
	if s.End < s.Start || s.EndReason != "" || s.NoMetrics {
		return
	}
	sm, err := m.scope(scopeOf(s))
	if err != nil {
		otel.Handle(err)
		return
	}
	d := sm.metricOf(s)
	if d == nil {
		return
	}
	ctx := context.Background()
	if m.exemplars {
		var flags trace.TraceFlags
		if sampled {
			flags = trace.FlagsSampled
		}
		c := m.contexts.Get().(*spanContext)
		defer m.contexts.Put(c)
		c.span.sc = trace.NewSpanContext(trace.SpanContextConfig{TraceID: s.TraceID, SpanID: s.SpanID, TraceFlags: flags})
		ctx = c.ctx
	}
	buf := m.pool.Get().(*[]attribute.KeyValue)
	attrs := (*buf)[:0]
	for _, kv := range s.Attributes {
		if d.keep[kv.Key] {
			attrs = append(attrs, kv)
		}
	}
	d.hist.Record(ctx, float64(s.End-s.Start)/1e9, d.sets.option(attrs))
	if d == &sm.messaging {
		attrs = sm.countMessages(ctx, s, attrs)
	}
	*buf = attrs
	m.pool.Put(buf)
}

// countMessages counts a messaging span's messages: those a producer span sent, or a
// consumer span delivered to the app - one, or its messaging.batch.message_count. A
// span of neither kind (a settlement) counts none. attrs is a buffer to reuse.
func (sm *scopeMetrics) countMessages(ctx context.Context, s *Span, attrs []attribute.KeyValue) []attribute.KeyValue {
	var c *messageCounter
	switch s.Kind {
	case trace.SpanKindProducer:
		c = &sm.sent
	case trace.SpanKindConsumer:
		c = &sm.consumed
	default:
		return attrs
	}
	n := int64(1)
	attrs = attrs[:0]
	for _, kv := range s.Attributes {
		if kv.Key == semconv.MessagingBatchMessageCountKey && kv.Value.Type() == attribute.INT64 {
			n = kv.Value.AsInt64()
		}
		if c.keep[kv.Key] {
			attrs = append(attrs, kv)
		}
	}
	if n > 0 {
		c.counter.Add(ctx, n, c.sets.option(attrs))
	}
	return attrs
}

// spanContext is a context that holds a span's IDs for the exemplar reservoir, which
// reads them during Record: reused, because a new context a measurement (two
// allocations) cost 0.5 µs a span, more than the measurement.
type spanContext struct {
	span idsSpan
	ctx  context.Context // holds &span
}

func newSpanContext() any {
	c := &spanContext{}
	c.ctx = trace.ContextWithSpan(context.Background(), &c.span)
	return c
}

// idsSpan is a span that is only its IDs.
type idsSpan struct {
	noop.Span
	sc trace.SpanContext
}

func (s *idsSpan) SpanContext() trace.SpanContext { return s.sc }

// attributeSets keeps the measurement option of each attribute set a histogram has
// seen: a set is sorted and allocated once, not per request. Bounded: past maxSets
// (more than the cardinality limit keeps anyway) it starts again.
type attributeSets struct {
	mu   sync.Mutex
	seed maphash.Seed
	sets map[uint64][]attributeSet // by hash; a collision's sets side by side
}

type attributeSet struct {
	attrs  []attribute.KeyValue // as filtered, in the span's order
	option metric.MeasurementOption
}

const maxSets = 2 * cardinalityLimit

// option is the measurement option of attrs' set.
func (a *attributeSets) option(attrs []attribute.KeyValue) metric.MeasurementOption {
	var h maphash.Hash
	h.SetSeed(a.seed)
	for _, kv := range attrs {
		h.WriteString(string(kv.Key))
		switch kv.Value.Type() {
		case attribute.STRING:
			h.WriteString(kv.Value.AsString())
		case attribute.INT64:
			var b [8]byte
			binary.LittleEndian.PutUint64(b[:], uint64(kv.Value.AsInt64()))
			h.Write(b[:])
		default:
			h.WriteString(kv.Value.Emit())
		}
		h.WriteByte(0)
	}
	sum := h.Sum64()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, set := range a.sets[sum] {
		if slices.Equal(set.attrs, attrs) {
			return set.option
		}
	}
	if len(a.sets) >= maxSets {
		clear(a.sets)
	}
	set := attributeSet{attrs: slices.Clone(attrs), option: metric.WithAttributeSet(attribute.NewSet(attrs...))}
	a.sets[sum] = append(a.sets[sum], set)
	return set.option
}

// shutdown exports what is recorded, within ctx.
func (m *requestMetrics) shutdown(ctx context.Context) error { return m.mp.Shutdown(ctx) }

// forceFlush exports what is recorded, within ctx.
func (m *requestMetrics) forceFlush(ctx context.Context) error { return m.mp.ForceFlush(ctx) }

// exemplarFilter is OTEL_METRICS_EXEMPLAR_FILTER's.
func exemplarFilter(m otelconfig.Metrics) exemplar.Filter {
	switch m.ExemplarFilter {
	case "always_on":
		return exemplar.AlwaysOnFilter
	case "always_off":
		return exemplar.AlwaysOffFilter
	}
	return exemplar.TraceBasedFilter
}

// temporality is the temporality selector of OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE.
func temporality(m otelconfig.Metrics) sdkmetric.TemporalitySelector {
	return func(kind sdkmetric.InstrumentKind) metricdata.Temporality { return temporalityOf(m, kind) }
}

func temporalityOf(m otelconfig.Metrics, kind sdkmetric.InstrumentKind) metricdata.Temporality {
	switch kind {
	case sdkmetric.InstrumentKindCounter, sdkmetric.InstrumentKindHistogram:
		if m.Temporality == "delta" || m.Temporality == "lowmemory" {
			return metricdata.DeltaTemporality
		}
	case sdkmetric.InstrumentKindObservableCounter:
		if m.Temporality == "delta" {
			return metricdata.DeltaTemporality
		}
	}
	return metricdata.CumulativeTemporality
}

// aggregation is the exporters' aggregation selector for
// OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION: explicit, the default, or
// base-2 exponential histograms of the sizes the SDK's OTLP exporters give them.
func aggregation(m otelconfig.Metrics) sdkmetric.AggregationSelector {
	if m.HistogramAggregation != "base2_exponential_bucket_histogram" {
		return sdkmetric.DefaultAggregationSelector
	}
	return func(kind sdkmetric.InstrumentKind) sdkmetric.Aggregation {
		if kind == sdkmetric.InstrumentKindHistogram {
			return sdkmetric.AggregationBase2ExponentialHistogram{MaxSize: 160, MaxScale: 20}
		}
		return sdkmetric.DefaultAggregationSelector(kind)
	}
}

// metricExporter builds the exporter name, with every setting explicit; without retry,
// an export is one attempt (doctor's check).
func metricExporter(ctx context.Context, name string, cfg otelconfig.Metrics, retry bool) (sdkmetric.Exporter, error) {
	switch name {
	case "console":
		return stdoutmetric.New(stdoutmetric.WithPrettyPrint(), stdoutmetric.WithTemporalitySelector(temporality(cfg)), stdoutmetric.WithAggregationSelector(aggregation(cfg)))
	case "otlp":
	default:
		return nil, fmt.Errorf("no such exporter")
	}
	o := cfg.OTLP
	creds, tlsConfig, err := transport(o)
	if err != nil {
		return nil, err
	}
	if o.Protocol == "http/protobuf" {
		// The exporter reads the variables itself too; where its reading would refuse a
		// setting the launcher takes, ours replaces it: the endpoint's scheme decides
		// plaintext (OTEL_EXPORTER_OTLP_INSECURE=true is not for an https:// endpoint), and
		// a plaintext one has no TLS settings (OTEL_EXPORTER_OTLP_CERTIFICATE's are
		// another endpoint's). The exporter refuses both to start, and New with it.
		opts := []otlpmetrichttp.Option{
			otlpmetrichttp.WithEndpointURL(o.Endpoint.String()),
			otlpmetrichttp.WithTLSClientConfig(tlsConfig),
			otlpmetrichttp.WithHeaders(o.Headers),
			otlpmetrichttp.WithTimeout(o.Timeout),
			otlpmetrichttp.WithTemporalitySelector(temporality(cfg)),
			otlpmetrichttp.WithAggregationSelector(aggregation(cfg)),
			otlpmetrichttp.WithCompression(otlpmetrichttp.NoCompression),
		}
		if o.Compression == "gzip" {
			opts = append(opts, otlpmetrichttp.WithCompression(otlpmetrichttp.GzipCompression))
		}
		if !retry {
			opts = append(opts, otlpmetrichttp.WithRetry(otlpmetrichttp.RetryConfig{Enabled: false}))
		}
		return otlpmetrichttp.New(ctx, opts...)
	}
	opts := []otlpmetricgrpc.Option{
		otlpmetricgrpc.WithEndpoint(o.Endpoint.Host),
		otlpmetricgrpc.WithHeaders(o.Headers),
		otlpmetricgrpc.WithTimeout(o.Timeout),
		otlpmetricgrpc.WithTLSCredentials(creds),
		otlpmetricgrpc.WithTemporalitySelector(temporality(cfg)),
		otlpmetricgrpc.WithAggregationSelector(aggregation(cfg)),
	}
	if o.Compression == "gzip" {
		opts = append(opts, otlpmetricgrpc.WithCompressor("gzip"))
	}
	if !retry {
		opts = append(opts, otlpmetricgrpc.WithRetry(otlpmetricgrpc.RetryConfig{Enabled: false}))
	}
	return otlpmetricgrpc.New(ctx, opts...)
}
