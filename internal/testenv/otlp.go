package testenv

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Span is a received span, flattened for assertions.
type Span struct {
	TraceID, SpanID, ParentSpanID string // hex
	TraceState                    string
	Name                          string
	Kind                          tracepb.Span_SpanKind
	Start, End                    time.Time
	Attrs                         map[string]any
	StatusCode                    tracepb.Status_StatusCode
	StatusMessage                 string
	Resource                      map[string]any
	Scope                         Scope
	Events                        []Event
	Links                         []Link
	// What the span limits, or the probe's bounds, dropped.
	DroppedAttrs, DroppedEvents, DroppedLinks uint32
}

// Link is a span's link.
type Link struct {
	TraceID, SpanID string // hex
	Flags           uint32
	Attrs           map[string]any
	DroppedAttrs    uint32
}

// Event is a span's event.
type Event struct {
	Name         string
	Time         time.Time
	Attrs        map[string]any
	DroppedAttrs uint32
}

// Scope is a span's instrumentation scope, and its ScopeSpans' schema URL.
type Scope struct {
	Name, Version, SchemaURL string
}

// Receiver is a real OTLP/gRPC receiver: the collector's TraceService, and its
// MetricsService on the same endpoint.
type Receiver struct {
	collectortrace.UnimplementedTraceServiceServer
	metrics   *metricsReceiver
	Endpoint  string // http://127.0.0.1:PORT, for OTEL_EXPORTER_OTLP_ENDPOINT
	srv       *grpc.Server
	httpSrv   *http.Server // StartHTTP's
	mu        sync.Mutex
	spans     []Span
	changed   chan struct{}
	counting  bool // count spans instead of keeping them (long benchmarks)
	count     int
	failEvery int // refuse every n-th export (0: none)
	exports   int
	exported  *exportedBytes // KeepBytes's
	// A slow collector: exports wait until pausedUntil, and each takes latency, one
	// at a time (a disk that fsyncs each).
	pausedUntil time.Time
	latency     time.Duration
	slow        sync.Mutex
}

// StartReceiver listens on a free loopback port until the test ends.
func StartReceiver(t testing.TB) *Receiver {
	t.Helper()
	r, err := NewReceiver()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}

// StartReceiverAt is StartReceiver on addr (HOST:PORT).
func StartReceiverAt(t testing.TB, addr string) *Receiver {
	t.Helper()
	r, err := newReceiver(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}

// NewReceiver listens on a free loopback port until Stop.
func NewReceiver() (*Receiver, error) { return newReceiver("127.0.0.1:0") }

func newReceiver(addr string) (*Receiver, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	r := &Receiver{Endpoint: "http://" + l.Addr().String(), srv: grpc.NewServer(), changed: make(chan struct{}),
		metrics: &metricsReceiver{changed: make(chan struct{})}}
	collectortrace.RegisterTraceServiceServer(r.srv, r)
	collectormetrics.RegisterMetricsServiceServer(r.srv, r.metrics)
	go r.srv.Serve(l)
	return r, nil
}

// Stop closes the receiver.
func (r *Receiver) Stop() {
	r.srv.Stop()
	if r.httpSrv != nil {
		r.httpSrv.Close()
	}
}

// StartHTTP serves the same receiver over OTLP/HTTP (protobuf, traces) on another free
// port, until Stop: it returns the endpoint for OTEL_EXPORTER_OTLP_ENDPOINT with
// OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf. Call it before the receiver is used.
func (r *Receiver) StartHTTP() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	r.httpSrv = &http.Server{Handler: http.HandlerFunc(r.exportHTTP)}
	go r.httpSrv.Serve(l)
	return "http://" + l.Addr().String(), nil
}

// exportHTTP is Export for a POST to /v1/traces.
func (r *Receiver) exportHTTP(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path != "/v1/traces" || req.Method != http.MethodPost {
		http.NotFound(w, req)
		return
	}
	body := io.Reader(req.Body)
	if req.Header.Get("Content-Encoding") == "gzip" {
		z, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = z
	}
	data, err := io.ReadAll(body)
	var in collectortrace.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(data, &in)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	resp, err := r.Export(req.Context(), &in)
	if err != nil { // the refusals FailEvery asks for: not retried
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	out, _ := proto.Marshal(resp)
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

// exportedBytes keeps every export's bytes, traces and metrics, as the exporter sent them.
type exportedBytes struct {
	mu  sync.Mutex
	all []byte
}

// keep appends req's bytes, if e keeps them.
func (e *exportedBytes) keep(req proto.Message) {
	if e == nil {
		return
	}
	b, _ := proto.Marshal(req)
	e.mu.Lock()
	e.all = append(e.all, b...)
	e.mu.Unlock()
}

// KeepBytes makes the receiver keep the bytes of every export from now on, for
// ExportedBytes: a test that greps everything exported for what must never leave.
func (r *Receiver) KeepBytes() {
	e := &exportedBytes{}
	r.mu.Lock()
	r.exported = e
	r.mu.Unlock()
	r.metrics.mu.Lock()
	r.metrics.exported = e
	r.metrics.mu.Unlock()
}

// ExportedBytes are the bytes of the exports received since KeepBytes, traces and
// metrics (protobuf: strings as they were sent).
func (r *Receiver) ExportedBytes() []byte {
	r.mu.Lock()
	e := r.exported
	r.mu.Unlock()
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.all)
}

// CountOnly makes the receiver count spans instead of keeping them.
func (r *Receiver) CountOnly() {
	r.mu.Lock()
	r.counting = true
	r.mu.Unlock()
}

// FailEvery makes the receiver refuse every n-th export, with a status the exporter
// does not retry (InvalidArgument): those spans are lost, and must be counted as such.
func (r *Receiver) FailEvery(n int) {
	r.mu.Lock()
	r.failEvery = n
	r.mu.Unlock()
}

// Pause makes the receiver answer no export for d from now: a collector stalled (a
// garbage collection, a full disk, a restart behind a load balancer that holds
// connections).
func (r *Receiver) Pause(d time.Duration) {
	r.mu.Lock()
	r.pausedUntil = time.Now().Add(d)
	r.mu.Unlock()
}

// Latency makes each export take d, one export at a time: a collector bound by its
// disk's fsyncs.
func (r *Receiver) Latency(d time.Duration) {
	r.mu.Lock()
	r.latency = d
	r.mu.Unlock()
}

// Received is the number of spans counted so far (CountOnly).
func (r *Receiver) Received() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// Export implements the collector's TraceService.
func (r *Receiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	paused, latency, exported := time.Until(r.pausedUntil), r.latency, r.exported
	r.mu.Unlock()
	if paused > 0 || latency > 0 {
		r.slow.Lock()
		time.Sleep(max(paused, 0) + latency)
		r.slow.Unlock()
	}
	exported.keep(req)
	var got []Span
	for _, rs := range req.ResourceSpans {
		res := attrMap(rs.GetResource().GetAttributes())
		for _, ss := range rs.ScopeSpans {
			scope := Scope{ss.GetScope().GetName(), ss.GetScope().GetVersion(), ss.SchemaUrl}
			for _, s := range ss.Spans {
				var events []Event
				for _, ev := range s.Events {
					events = append(events, Event{Name: ev.Name, Time: time.Unix(0, int64(ev.TimeUnixNano)), Attrs: attrMap(ev.Attributes),
						DroppedAttrs: ev.DroppedAttributesCount})
				}
				var links []Link
				for _, l := range s.Links {
					var attrs map[string]any
					if len(l.Attributes) > 0 {
						attrs = attrMap(l.Attributes)
					}
					links = append(links, Link{TraceID: hex.EncodeToString(l.TraceId), SpanID: hex.EncodeToString(l.SpanId), Flags: l.Flags,
						Attrs: attrs, DroppedAttrs: l.DroppedAttributesCount})
				}
				got = append(got, Span{
					Events:        events,
					Links:         links,
					TraceID:       hex.EncodeToString(s.TraceId),
					SpanID:        hex.EncodeToString(s.SpanId),
					ParentSpanID:  hex.EncodeToString(s.ParentSpanId),
					TraceState:    s.TraceState,
					Name:          s.Name,
					Kind:          s.Kind,
					Start:         time.Unix(0, int64(s.StartTimeUnixNano)),
					End:           time.Unix(0, int64(s.EndTimeUnixNano)),
					Attrs:         attrMap(s.Attributes),
					StatusCode:    s.GetStatus().GetCode(),
					StatusMessage: s.GetStatus().GetMessage(),
					Resource:      res,
					Scope:         scope,
					DroppedAttrs:  s.DroppedAttributesCount,
					DroppedEvents: s.DroppedEventsCount,
					DroppedLinks:  s.DroppedLinksCount,
				})
			}
		}
	}
	r.mu.Lock()
	r.exports++
	if r.failEvery > 0 && r.exports%r.failEvery == 0 {
		r.mu.Unlock()
		return nil, status.Error(codes.InvalidArgument, "refused by the test receiver")
	}
	if r.counting {
		r.count += len(got)
	} else {
		r.spans = append(r.spans, got...)
	}
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func attrMap(kvs []*commonpb.KeyValue) map[string]any {
	m := map[string]any{}
	for _, kv := range kvs {
		m[kv.Key] = anyValue(kv.Value)
	}
	return m
}

// anyValue is v as Go: string, int64, bool, float64, []byte, []any of those.
func anyValue(v *commonpb.AnyValue) any {
	switch v := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return v.StringValue
	case *commonpb.AnyValue_IntValue:
		return v.IntValue
	case *commonpb.AnyValue_BoolValue:
		return v.BoolValue
	case *commonpb.AnyValue_DoubleValue:
		return v.DoubleValue
	case *commonpb.AnyValue_BytesValue:
		return v.BytesValue
	case *commonpb.AnyValue_ArrayValue:
		var values []any
		for _, e := range v.ArrayValue.GetValues() {
			values = append(values, anyValue(e))
		}
		return values
	}
	return fmt.Sprint(v)
}

// Spans returns what has arrived so far.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// WaitFor waits until match returns true for the spans received, or timeout.
func (r *Receiver) WaitFor(timeout time.Duration, match func([]Span) bool) ([]Span, bool) {
	deadline := time.After(timeout)
	for {
		r.mu.Lock()
		spans, changed := append([]Span(nil), r.spans...), r.changed
		r.mu.Unlock()
		if match(spans) {
			return spans, true
		}
		select {
		case <-changed:
		case <-deadline:
			return spans, false
		}
	}
}
