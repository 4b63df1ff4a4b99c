package testenv

import (
	"context"
	"encoding/hex"
	"sync"
	"time"

	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
)

// Histogram is one received histogram data point, flattened for assertions.
type Histogram struct {
	Metric      string // "http.server.request.duration"
	Unit        string
	Temporality metricspb.AggregationTemporality
	Attrs       map[string]any
	Count       uint64
	Sum         float64
	Exemplars   []Exemplar
	Resource    map[string]any
	Time        time.Time
}

// Count is one received integer sum's data point (a counter's): its metric, attributes
// and value.
type Count struct {
	Metric string // "messaging.client.sent.messages"
	Unit   string
	Attrs  map[string]any
	Value  int64
}

// Exemplar is a histogram point's exemplar: the span a measurement came from.
type Exemplar struct {
	TraceID, SpanID string // hex
	Value           float64
}

// metricsReceiver is the collector's MetricsService, beside the receiver's traces on
// its endpoint: every exporter of the launcher's that a test points at it is accepted.
type metricsReceiver struct {
	collectormetrics.UnimplementedMetricsServiceServer
	mu         sync.Mutex
	histograms []Histogram
	counts     []Count
	changed    chan struct{}
	exported   *exportedBytes // KeepBytes's
}

// Export implements the collector's MetricsService: histogram and integer sum points
// are kept, other points accepted.
func (m *metricsReceiver) Export(_ context.Context, req *collectormetrics.ExportMetricsServiceRequest) (*collectormetrics.ExportMetricsServiceResponse, error) {
	m.mu.Lock()
	exported := m.exported
	m.mu.Unlock()
	exported.keep(req)
	var got []Histogram
	var counts []Count
	for _, rm := range req.ResourceMetrics {
		res := attrMap(rm.GetResource().GetAttributes())
		for _, sm := range rm.ScopeMetrics {
			for _, mt := range sm.Metrics {
				for _, p := range mt.GetSum().GetDataPoints() {
					if v, ok := p.Value.(*metricspb.NumberDataPoint_AsInt); ok {
						counts = append(counts, Count{Metric: mt.Name, Unit: mt.Unit, Attrs: attrMap(p.Attributes), Value: v.AsInt})
					}
				}
				h := mt.GetHistogram()
				if h == nil {
					continue
				}
				for _, p := range h.DataPoints {
					pt := Histogram{Metric: mt.Name, Unit: mt.Unit, Temporality: h.AggregationTemporality, Attrs: attrMap(p.Attributes),
						Count: p.Count, Sum: p.GetSum(), Resource: res, Time: time.Unix(0, int64(p.TimeUnixNano))}
					for _, e := range p.Exemplars {
						pt.Exemplars = append(pt.Exemplars, Exemplar{TraceID: hex.EncodeToString(e.TraceId), SpanID: hex.EncodeToString(e.SpanId), Value: e.GetAsDouble()})
					}
					got = append(got, pt)
				}
			}
		}
	}
	m.mu.Lock()
	m.histograms = append(m.histograms, got...)
	m.counts = append(m.counts, counts...)
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
	return &collectormetrics.ExportMetricsServiceResponse{}, nil
}

// Histograms returns the histogram points received so far, in order of arrival.
func (r *Receiver) Histograms() []Histogram {
	r.metrics.mu.Lock()
	defer r.metrics.mu.Unlock()
	return append([]Histogram(nil), r.metrics.histograms...)
}

// Counts returns the integer sum points received so far, in order of arrival.
func (r *Receiver) Counts() []Count {
	r.metrics.mu.Lock()
	defer r.metrics.mu.Unlock()
	return append([]Count(nil), r.metrics.counts...)
}

// WaitForHistograms waits until match returns true for the histogram points received,
// or timeout.
func (r *Receiver) WaitForHistograms(timeout time.Duration, match func([]Histogram) bool) ([]Histogram, bool) {
	deadline := time.After(timeout)
	for {
		r.metrics.mu.Lock()
		hs, changed := append([]Histogram(nil), r.metrics.histograms...), r.metrics.changed
		r.metrics.mu.Unlock()
		if match(hs) {
			return hs, true
		}
		select {
		case <-changed:
		case <-deadline:
			return hs, false
		}
	}
}
