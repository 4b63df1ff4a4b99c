package main

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func num(k string, v int64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
}

func id(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

const t0 = 1_700_000_000_000_000_000

// testSpan is span id of trace tr, child of parent (0: none), from start to end µs
// after t0.
func testSpan(tr, sp, parent byte, name string, kind tracepb.Span_SpanKind, start, end uint64, attrs ...*commonpb.KeyValue) *tracepb.Span {
	s := &tracepb.Span{TraceId: id(tr, 16), SpanId: id(sp, 8), Name: name, Kind: kind,
		StartTimeUnixNano: t0 + start*1000, EndTimeUnixNano: t0 + end*1000, Attributes: attrs}
	if parent != 0 {
		s.ParentSpanId = id(parent, 8)
	}
	return s
}

// export is spans as one export from service.
func export(service string, spans ...*tracepb.Span) *coltracepb.ExportTraceServiceRequest {
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", service)}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans}},
	}}}
}

// greetTrace is a server span calling out (client span) to another server span, and,
// in another trace, a server span whose parent is remote.
func greetSpans() []*tracepb.Span {
	return []*tracepb.Span{
		testSpan(1, 1, 0, "GET /greet/{name}", tracepb.Span_SPAN_KIND_SERVER, 0, 1000, str("url.path", "/greet/x"), num("http.response.status_code", 200)),
		testSpan(1, 2, 1, "GET", tracepb.Span_SPAN_KIND_CLIENT, 100, 900, str("url.full", "http://h/hello/x"), str("user_agent.original", "curl")),
		testSpan(1, 3, 2, "GET /hello/{name}", tracepb.Span_SPAN_KIND_SERVER, 200, 300),
		testSpan(1, 4, 1, "SELECT", tracepb.Span_SPAN_KIND_CLIENT, 920, 990, str("db.query.text", "SELECT 1")),
		testSpan(2, 5, 9, "GET /hello/{name}", tracepb.Span_SPAN_KIND_SERVER, 2000, 2050),
	}
}

// The trees are the same whatever order the spans come in, in however many exports.
func TestBuildTraces(t *testing.T) {
	for i := range 20 {
		spans := greetSpans()
		rand.Shuffle(len(spans), func(a, b int) { spans[a], spans[b] = spans[b], spans[a] })
		var reqs []*coltracepb.ExportTraceServiceRequest
		for _, s := range spans { // one export each, the last twice (a retried export)
			reqs = append(reqs, export("svc", s))
		}
		reqs = append(reqs, reqs[len(reqs)-1])
		traces := buildTraces(spansOf(reqs))
		if len(traces) != 2 {
			t.Fatalf("round %d: %d traces, want 2", i, len(traces))
		}
		greet, remote := traces[0], traces[1]
		if greet.spans != 4 || len(greet.roots) != 1 || greet.start != t0 || greet.end != t0+1_000_000 {
			t.Fatalf("round %d: greet trace %+v, want 4 spans under one root, from t0 for 1ms", i, greet)
		}
		root := greet.roots[0]
		if root.Name != "GET /greet/{name}" || len(root.children) != 2 || root.children[0].Name != "GET" || root.children[1].Name != "SELECT" ||
			len(root.children[0].children) != 1 || root.children[0].children[0].Name != "GET /hello/{name}" {
			t.Fatalf("round %d: tree wrong:\n%s", i, render(traces))
		}
		if len(remote.roots) != 1 || remote.roots[0].missingParent != "0909090909090909" {
			t.Fatalf("round %d: the span with a remote parent: %+v, want a root noting parent 0909090909090909", i, remote.roots)
		}
	}
}

// Parents that lead back to the span (a malformed export) neither loop nor lose it.
func TestBuildTracesCycle(t *testing.T) {
	traces := buildTraces(spansOf([]*coltracepb.ExportTraceServiceRequest{export("svc",
		testSpan(1, 1, 2, "a", tracepb.Span_SPAN_KIND_INTERNAL, 0, 10),
		testSpan(1, 2, 1, "b", tracepb.Span_SPAN_KIND_INTERNAL, 1, 9))}))
	out := render(traces)
	if strings.Count(out, "INTERNAL") != 2 || !strings.Contains(out, "among its own descendants") {
		t.Errorf("a cycle of two spans:\n%s", out)
	}
}

func render(traces []*trace) string {
	var b strings.Builder
	printTraces(&b, traces, 20)
	return b.String()
}

func TestPrintTraces(t *testing.T) {
	out := render(buildTraces(spansOf([]*coltracepb.ExportTraceServiceRequest{export("svc", greetSpans()...)})))
	want := []string{
		// bar, then the tree: each child indented under its parent
		`^  ████████████████████  GET /greet/{name}  SERVER  1ms  url.path=/greet/x  http.response.status_code=200$`,
		`^  ··████████████████··  ├─ GET  CLIENT  800µs  url.full=http://h/hello/x$`,
		`^  ····██··············  │  └─ GET /hello/{name}  SERVER  100µs$`,
		`^  ··················██  └─ SELECT  CLIENT  70µs  db.query.text="SELECT 1"$`,
		`^  ████████████████████  GET /hello/{name}  SERVER  50µs  \(parent 0909090909090909 not received\)$`,
	}
	for _, w := range want {
		if !regexp.MustCompile(`(?m)` + w).MatchString(out) {
			t.Errorf("no line matching %s in:\n%s", w, out)
		}
	}
	if strings.Contains(out, "user_agent") {
		t.Errorf("a minor attribute shown:\n%s", out)
	}
}

func TestBar(t *testing.T) {
	for _, c := range []struct {
		start, end, from, to uint64
		width                int
		want                 string
	}{
		{0, 100, 0, 100, 10, "██████████"},
		{50, 100, 0, 100, 10, "·····█████"},
		{0, 50, 0, 100, 10, "█████·····"},
		{25, 75, 0, 100, 4, "·██·"},
		{10, 11, 0, 100, 10, "·█········"},   // short: one character still
		{100, 100, 0, 100, 10, "·········█"}, // at the very end: inside the bar
		{0, 200, 50, 100, 5, "█████"},        // past the trace's bounds: cut to them
		{7, 7, 7, 7, 3, "█··"},               // a trace of no duration
		{0, 10, 0, 10, 0, ""},
	} {
		got := bar(c.start, c.end, c.from, c.to, c.width)
		if got != c.want {
			t.Errorf("bar(%d, %d in %d..%d, width %d) = %q, want %q", c.start, c.end, c.from, c.to, c.width, got, c.want)
		}
		if c.width > 0 && len([]rune(got)) != c.width {
			t.Errorf("bar(%d, %d in %d..%d) is %d characters, want %d", c.start, c.end, c.from, c.to, len([]rune(got)), c.width)
		}
	}
}

func f(v float64) *float64 { return &v }

func TestQuantile(t *testing.T) {
	bounds := []float64{1, 2, 5}
	for _, c := range []struct {
		name string
		h    histogram
		q    float64
		want string
	}{
		{"median, interpolated", histogram{Bounds: bounds, Counts: []uint64{0, 10, 0, 0}, Count: 10}, 0.5, "~1.5s"},
		{"p99, interpolated", histogram{Bounds: bounds, Counts: []uint64{0, 10, 0, 0}, Count: 10}, 0.99, "~1.99s"},
		{"at the bucket's end: a bound", histogram{Bounds: bounds, Counts: []uint64{0, 10, 0, 0}, Count: 10}, 1, "≤2s"},
		{"first bucket from 0", histogram{Bounds: bounds, Counts: []uint64{4, 0, 0, 0}, Count: 4}, 0.5, "~500ms"},
		{"across buckets", histogram{Bounds: bounds, Counts: []uint64{5, 0, 5, 0}, Count: 10}, 0.7, "~3.2s"},
		{"above the last bound", histogram{Bounds: bounds, Counts: []uint64{1, 0, 0, 9}, Count: 10}, 0.5, ">5s"},
		{"narrowed to min and max", histogram{Bounds: bounds, Counts: []uint64{0, 0, 2, 0}, Count: 2, Min: 3, Max: 4, HasMinMax: true}, 0.5, "~3.5s"},
		{"above the last bound, max known", histogram{Bounds: bounds, Counts: []uint64{0, 0, 0, 2}, Count: 2, Min: 6, Max: 8, HasMinMax: true}, 0.5, "~7s"},
		{"at max, which is the bound", histogram{Bounds: bounds, Counts: []uint64{0, 2, 0, 0}, Count: 2, Min: 1.5, Max: 2, HasMinMax: true}, 1, "~2s"},
		{"no data", histogram{Bounds: bounds, Counts: []uint64{0, 0, 0, 0}}, 0.5, "-"},
	} {
		if got := quantile(c.h, c.q).text("s"); got != c.want {
			t.Errorf("%s: p%g = %s, want %s", c.name, c.q*100, got, c.want)
		}
	}
	if got := quantile(histogram{Bounds: bounds, Counts: []uint64{0, 10, 0, 0}, Count: 10}, 0.5).text("ms"); got != "~1.5ms" {
		t.Errorf("in ms: %s, want ~1.5ms", got)
	}
}

// metricsExport is one export of a histogram's points, each (attributes, bucket counts).
func metricsExport(name string, temporality metricspb.AggregationTemporality, at uint64, points ...*metricspb.HistogramDataPoint) *colmetricspb.ExportMetricsServiceRequest {
	for _, p := range points {
		p.TimeUnixNano = at
		p.ExplicitBounds = []float64{0.005, 0.01, 0.1}
		for _, c := range p.BucketCounts {
			p.Count += c
		}
	}
	return &colmetricspb.ExportMetricsServiceRequest{ResourceMetrics: []*metricspb.ResourceMetrics{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", "svc")}},
		ScopeMetrics: []*metricspb.ScopeMetrics{{Metrics: []*metricspb.Metric{{Name: name, Unit: "s",
			Data: &metricspb.Metric_Histogram{Histogram: &metricspb.Histogram{AggregationTemporality: temporality, DataPoints: points}}}}}},
	}}}
}

func point(counts []uint64, attrs ...*commonpb.KeyValue) *metricspb.HistogramDataPoint {
	return &metricspb.HistogramDataPoint{BucketCounts: counts, Attributes: attrs}
}

// Cumulative points each hold everything so far: the latest of each series counts,
// not their sum; delta points are added.
func TestMetricsTable(t *testing.T) {
	const server, client = "http.server.request.duration", "http.client.request.duration"
	cum := metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE
	get := func(code int64) []*commonpb.KeyValue {
		return []*commonpb.KeyValue{str("http.request.method", "GET"), str("http.route", "/hello/{name}"), num("http.response.status_code", code)}
	}
	reqs := []*colmetricspb.ExportMetricsServiceRequest{
		metricsExport(server, cum, 2, point([]uint64{2, 0, 0, 0}, get(200)...)),
		// later, with the first series grown and a second (errors) begun; sent before an
		// older export that arrives late
		metricsExport(server, cum, 3, point([]uint64{4, 1, 0, 0}, get(200)...), point([]uint64{0, 0, 1, 0}, get(503)...)),
		metricsExport(server, cum, 1, point([]uint64{1, 0, 0, 0}, get(200)...)),
		metricsExport(client, metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA, 1,
			point([]uint64{1, 0, 0, 0}, str("http.request.method", "GET"), str("server.address", "h"), num("server.port", 80))),
		metricsExport(client, metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA, 2,
			point([]uint64{0, 1, 0, 0}, str("http.request.method", "GET"), str("server.address", "h"), num("server.port", 80), str("error.type", "timeout"))),
		metricsExport("db.client.operation.duration", cum, 1, point([]uint64{3, 0, 0, 0}, str("db.system.name", "postgresql"), str("db.operation.name", "SELECT"), str("db.collection.name", "users"))),
		metricsExport("other.metric", cum, 1, point([]uint64{3, 0, 0, 0})),
	}
	var b strings.Builder
	printTable(&b, buildRows(latestSeries(reqs)))
	out := b.String()
	want := []string{
		`^  KIND +SERVICE +ROUTE +REQUESTS +ERRORS +P50 +P99$`,
		`^  db client +svc +postgresql SELECT users +3 +0 +~2.5ms +~4.95ms$`,
		`^  http client +svc +GET h:80 +2 +1 +≤5ms +~9.9ms$`,
		`^  http server +svc +GET /hello/{name} +6 +1 +~3.75ms +~94.6ms$`,
	}
	for _, w := range want {
		if !regexp.MustCompile(`(?m)` + w).MatchString(out) {
			t.Errorf("no line matching %s in:\n%s", w, out)
		}
	}
	if strings.Contains(out, "other") || strings.Count(out, "\n") != 4 {
		t.Errorf("want a header and three rows:\n%s", out)
	}
}

// The printer takes both signals over both transports, as real exporters send them.
func TestReceive(t *testing.T) {
	st := newStore()
	srv, err := listen(st, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	conn, err := grpc.NewClient(srv.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	spans := greetSpans()
	if _, err := coltracepb.NewTraceServiceClient(conn).Export(ctx, export("svc", spans[0], spans[1])); err != nil {
		t.Fatalf("traces over gRPC: %v", err)
	}
	cum := metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE
	if _, err := colmetricspb.NewMetricsServiceClient(conn).Export(ctx,
		metricsExport("http.server.request.duration", cum, 1, point([]uint64{1, 0, 0, 0}, str("http.route", "/grpc")))); err != nil {
		t.Fatalf("metrics over gRPC: %v", err)
	}

	post := func(path, contentType string, body []byte, want int) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+srv.httpAddr+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("POST %s (%s): %s %s, want %d", path, contentType, resp.Status, data, want)
		}
	}
	pb := func(m proto.Message) []byte { b, _ := proto.Marshal(m); return b }
	post("/v1/traces", "application/x-protobuf", pb(export("svc", spans[2])), 200)
	post("/v1/metrics", "application/x-protobuf", pb(metricsExport("http.server.request.duration", cum, 1, point([]uint64{2, 0, 0, 0}, str("http.route", "/http")))), 200)
	// OTLP/JSON: IDs in hex, enums as numbers
	post("/v1/traces", "application/json", []byte(`{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
		"scopeSpans":[{"spans":[{"traceId":"01010101010101010101010101010101","spanId":"0404040404040404","parentSpanId":"0101010101010101",
		"name":"SELECT","kind":3,"startTimeUnixNano":"1700000000000920000","endTimeUnixNano":"1700000000000990000"}]}]}]}`), 200)
	post("/v1/traces", "text/plain", []byte("hi"), http.StatusUnsupportedMediaType)
	post("/v1/traces", "application/x-protobuf", []byte("\xff\xff"), http.StatusBadRequest)

	var out strings.Builder
	srv.stop()
	st.print(&out, 20)
	for _, w := range []string{
		`(?m)^== 1 trace, 4 spans$`,
		`(?m)^  ·+█+·*  │  └─ GET /hello/\{name\}  SERVER`, // the grandchild, sent over HTTP, under the client span sent over gRPC
		`(?m)^  ·+█+·*  └─ SELECT  CLIENT  70µs$`,          // sent as JSON
		`(?m)^  http server +svc +/grpc +1 +0 `,
		`(?m)^  http server +svc +/http +2 +0 `,
	} {
		if !regexp.MustCompile(w).MatchString(out.String()) {
			t.Errorf("no match for %s in:\n%s", w, out.String())
		}
	}
}
