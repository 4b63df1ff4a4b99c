package main

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
)

// durationMetrics are the histograms the table is made of, and what each row is of.
var durationMetrics = map[string]string{
	"http.server.request.duration": "http server",
	"http.client.request.duration": "http client",
	"db.client.operation.duration": "db client",
}

// histogram is an explicit-bucket histogram's counts: Counts[i] for values up to
// Bounds[i] (and above Bounds[i-1]), the last for those above every bound.
type histogram struct {
	Bounds    []float64
	Counts    []uint64
	Count     uint64
	Min, Max  float64
	HasMinMax bool
}

// series is one time series: a histogram's data points of one attribute set.
type series struct {
	metric, service, unit string
	attrs                 []*commonpb.KeyValue
	time                  uint64
	h                     histogram
}

// row is one line of the table: a route's requests, all of its series merged.
type row struct {
	kind, service, route string
	unit                 string
	requests, errors     uint64
	h                    histogram
}

// latestSeries keeps, of each series, its latest data point when the histogram is
// cumulative (each point holds everything since the start: adding them would count
// requests again), and the sum of its points when it is delta.
func latestSeries(reqs []*colmetricspb.ExportMetricsServiceRequest) []*series {
	byKey := map[string]*series{}
	var order []string
	for _, r := range reqs {
		for _, rm := range r.ResourceMetrics {
			service := attrString(rm.GetResource().GetAttributes(), "service.name")
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					if _, ok := durationMetrics[m.Name]; !ok || m.GetHistogram() == nil {
						continue
					}
					delta := m.GetHistogram().AggregationTemporality == metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA
					for _, dp := range m.GetHistogram().DataPoints {
						key := m.Name + "\x00" + service + "\x00" + attrsKey(dp.Attributes)
						s := byKey[key]
						if s == nil {
							s = &series{metric: m.Name, service: service, unit: m.Unit, attrs: dp.Attributes}
							byKey[key] = s
							order = append(order, key)
						}
						h := histogramOf(dp)
						switch {
						case delta:
							s.h = merge(s.h, h)
						case dp.TimeUnixNano >= s.time:
							s.h, s.time = h, dp.TimeUnixNano
						}
					}
				}
			}
		}
	}
	out := make([]*series, 0, len(order))
	for _, k := range order {
		out = append(out, byKey[k])
	}
	return out
}

func histogramOf(dp *metricspb.HistogramDataPoint) histogram {
	h := histogram{Bounds: dp.ExplicitBounds, Counts: dp.BucketCounts, Count: dp.Count}
	if dp.Min != nil && dp.Max != nil {
		h.Min, h.Max, h.HasMinMax = *dp.Min, *dp.Max, true
	}
	return h
}

// merge adds b's counts to a's. Histograms with other bounds cannot be added bucket
// by bucket: then only the counts are, and the buckets are a's.
func merge(a, b histogram) histogram {
	if a.Count == 0 && len(a.Counts) == 0 {
		return b
	}
	out := histogram{Bounds: a.Bounds, Count: a.Count + b.Count, Counts: slices.Clone(a.Counts)}
	if slices.Equal(a.Bounds, b.Bounds) && len(a.Counts) == len(b.Counts) {
		for i, c := range b.Counts {
			out.Counts[i] += c
		}
	}
	switch {
	case a.HasMinMax && b.HasMinMax:
		out.Min, out.Max, out.HasMinMax = math.Min(a.Min, b.Min), math.Max(a.Max, b.Max), true
	case a.HasMinMax:
		out.Min, out.Max, out.HasMinMax = a.Min, a.Max, true
	case b.HasMinMax:
		out.Min, out.Max, out.HasMinMax = b.Min, b.Max, true
	}
	return out
}

func attrsKey(attrs []*commonpb.KeyValue) string {
	parts := make([]string, 0, len(attrs))
	for _, a := range attrs {
		v, _ := attrText(attrs, a.Key)
		parts = append(parts, a.Key+"="+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, "\x00")
}

// routeOf names what a series' requests went to: for a server, the method and route
// (http.route, which the launcher's router probes add); for a client, the method and
// the server; for a database, the operation and what it was on.
func routeOf(s *series) string {
	text := func(k string) string { v, _ := attrText(s.attrs, k); return v }
	join := func(parts ...string) string {
		return strings.Join(slices.DeleteFunc(parts, func(p string) bool { return p == "" }), " ")
	}
	switch s.metric {
	case "http.server.request.duration":
		route := text("http.route")
		if route == "" {
			route = "(no route)"
		}
		return join(text("http.request.method"), route)
	case "http.client.request.duration":
		server := text("server.address")
		if p := text("server.port"); server != "" && p != "" {
			server += ":" + p
		}
		return join(text("http.request.method"), server)
	}
	what := text("db.collection.name")
	if what == "" {
		what = text("db.namespace")
	}
	r := join(text("db.system.name")+text("db.system"), text("db.operation.name"), what)
	if r == "" {
		r = "(no operation)"
	}
	return r
}

// failed reports whether a series' requests failed: a 5xx status or an error.type.
func failed(s *series) bool {
	if _, ok := attrText(s.attrs, "error.type"); ok {
		return true
	}
	code, ok := attrText(s.attrs, "http.response.status_code")
	n, err := strconv.Atoi(code)
	return ok && err == nil && n >= 500
}

// buildRows merges the series into one row per kind, service and route.
func buildRows(all []*series) []*row {
	byKey := map[string]*row{}
	var rows []*row
	for _, s := range all {
		r := &row{kind: durationMetrics[s.metric], service: s.service, route: routeOf(s), unit: s.unit}
		key := r.kind + "\x00" + r.service + "\x00" + r.route
		if have, ok := byKey[key]; ok {
			r = have
		} else {
			byKey[key] = r
			rows = append(rows, r)
		}
		r.requests += s.h.Count
		if failed(s) {
			r.errors += s.h.Count
		}
		r.h = merge(r.h, s.h)
	}
	slices.SortStableFunc(rows, func(a, b *row) int {
		return cmp.Or(cmp.Compare(a.kind, b.kind), cmp.Compare(a.service, b.service), cmp.Compare(a.route, b.route))
	})
	return rows
}

// estimate is a quantile's estimate from a histogram.
type estimate struct {
	value float64
	// bound: value is a bucket's upper bound, all that is known (the quantile is at
	// most that); over: the quantile is above the last bound, value.
	bound, over bool
	none        bool // no data
}

// quantile estimates the q-quantile (0 < q <= 1) of h: the bucket where the q-th
// value falls, and within it a linear interpolation between its bounds, narrowed to
// the histogram's min and max when it has them.
func quantile(h histogram, q float64) estimate {
	if h.Count == 0 || len(h.Counts) == 0 {
		return estimate{none: true}
	}
	rank := q * float64(h.Count)
	var below uint64
	for i, c := range h.Counts {
		if c == 0 || float64(below+c) < rank {
			below += c
			continue
		}
		lower := 0.0
		if i > 0 && i-1 < len(h.Bounds) {
			lower = h.Bounds[i-1]
		}
		if i >= len(h.Bounds) { // above every bound
			if h.HasMinMax {
				return interpolate(math.Max(lower, h.Min), h.Max, rank-float64(below), c)
			}
			return estimate{value: lower, over: true}
		}
		upper := h.Bounds[i]
		if h.HasMinMax {
			lower, upper = math.Max(lower, h.Min), math.Min(upper, h.Max)
		}
		e := interpolate(lower, upper, rank-float64(below), c)
		if e.value == h.Bounds[i] && !(h.HasMinMax && h.Max == h.Bounds[i]) {
			e.bound = true // the bucket's end: the values there are at most this
		}
		return e
	}
	// The counts add up to less than Count (a malformed point): the last bound.
	return estimate{value: h.Bounds[len(h.Bounds)-1], bound: true}
}

func interpolate(lower, upper, into float64, in uint64) estimate {
	if upper < lower {
		upper = lower
	}
	return estimate{value: lower + (upper-lower)*into/float64(in)}
}

// text is the estimate in unit ("s" or "ms" as durations): "~1.2ms", "≤5ms" (a
// bucket bound), ">10s" (above the last).
func (e estimate) text(unit string) string {
	if e.none {
		return "-"
	}
	v := formatValue(e.value, unit)
	switch {
	case e.over:
		return ">" + v
	case e.bound:
		return "≤" + v
	}
	return "~" + v
}

func formatValue(v float64, unit string) string {
	switch unit {
	case "s":
		return duration(uint64(math.Round(v * 1e9)))
	case "ms":
		return duration(uint64(math.Round(v * 1e6)))
	}
	return strconv.FormatFloat(v, 'g', 3, 64) + unit
}

// printTable writes the rows as a table.
func printTable(w io.Writer, rows []*row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  KIND\tSERVICE\tROUTE\tREQUESTS\tERRORS\tP50\tP99")
	for _, r := range rows {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%d\t%s\t%s\n", r.kind, r.service, r.route, r.requests, r.errors,
			quantile(r.h, 0.5).text(r.unit), quantile(r.h, 0.99).text(r.unit))
	}
	tw.Flush()
}

// print writes what was received: the traces, then the metrics table.
func (s *store) print(w io.Writer, width int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	spans := spansOf(s.traces)
	traces := buildTraces(spans)
	fmt.Fprintf(w, "== %d trace%s, %d span%s\n\n", len(traces), plural(len(traces)), len(spans), plural(len(spans)))
	printTraces(w, traces, width)
	rows := buildRows(latestSeries(s.metrics))
	fmt.Fprintf(w, "== requests by route, from the duration histograms (%d metrics export%s)\n\n", len(s.metrics), plural(len(s.metrics)))
	if len(rows) == 0 {
		fmt.Fprintln(w, "  (no duration histograms received)")
		return
	}
	printTable(w, rows)
}
