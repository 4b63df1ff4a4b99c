package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// Request metrics from the spans' events: known numbers of requests per route and
// status (5xx among them) and of client calls (refused ones among them) give exactly
// those counts in http.server.request.duration and http.client.request.duration,
// whether the sampler keeps every trace or none (always_off: no span exported, every
// request counted); 10,000 distinct paths of one route stay one attribute set (the
// route, never the path); the last measurements are flushed when the app exits;
// exemplars name sampled spans only.
func TestRequestMetrics(t *testing.T) {
	testenv.RequireRoot(t)
	tg := testenv.BuildTargets(t, "httpserver", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})[0]
	for _, sampler := range []string{"always_on", "always_off"} {
		t.Run(sampler, func(t *testing.T) { requestMetrics(t, tg, sampler) })
	}
}

func requestMetrics(t *testing.T, tg testenv.Target, sampler string) {
	recv := testenv.StartReceiver(t)
	addr := freeAddr(t)
	env := append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT="+recv.Endpoint, "OTEL_BSP_SCHEDULE_DELAY=200",
		"OTEL_METRIC_EXPORT_INTERVAL=60000", // the final flush at exit must deliver them
		"OTEL_SERVICE_NAME=metrics", "OTEL_RESOURCE_ATTRIBUTES=", "OTEL_TRACES_EXPORTER=", "OTEL_METRICS_EXPORTER=",
		"OTEL_TRACES_SAMPLER="+sampler, "UPSTREAM=http://"+addr)
	r := start(t, opts{env: env, stdin: strings.NewReader("")}, launchBin(t), "--require-instrumentation", "--", tg.Path, addr)
	firstRequest(t, addr, "/items/first")
	client := &http.Client{}
	get := func(path string, want int) {
		t.Helper()
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v\n%s", path, err, r.stderr)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("GET %s: %s, want %d", path, resp.Status, want)
		}
	}
	const items, unavailable, proxied, refused = 10000, 30, 10, 5
	for i := 0; i < items; i++ {
		get(fmt.Sprintf("/items/%d", i), 200)
	}
	for i := 0; i < unavailable; i++ {
		get("/status/503", 503)
	}
	for i := 0; i < proxied; i++ {
		get("/proxy", 200) // and its call of /echo, served here too
	}
	for i := 0; i < refused; i++ {
		get("/refused", 502)
	}
	r.signal(syscall.SIGTERM)
	if e := r.wait(20 * time.Second); e.signal != 0 || e.code != 0 && e.code != 128+int(syscall.SIGTERM) {
		t.Fatalf("exit %+v\n%s", e, r.stderr)
	}

	// The last point of each attribute set (cumulative: the totals).
	type key struct{ metric, attrs string }
	last := map[key]testenv.Histogram{}
	for _, h := range recv.Histograms() {
		if h.Temporality != metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE || h.Unit != "s" {
			t.Errorf("%s: temporality %v, unit %q", h.Metric, h.Temporality, h.Unit)
		}
		if h.Resource["service.name"] != "metrics" {
			t.Errorf("%s: resource %v", h.Metric, h.Resource)
		}
		k := key{h.Metric, attrString(h.Attrs)}
		if p, ok := last[k]; !ok || h.Count >= p.Count {
			last[k] = h
		}
	}
	counts := map[key]uint64{}
	var keys []string
	for k, h := range last {
		counts[k] = h.Count
		keys = append(keys, fmt.Sprintf("%s %s: %d", k.metric, k.attrs, h.Count))
	}
	sort.Strings(keys)
	server, client_ := "http.server.request.duration", "http.client.request.duration"
	want := map[key]uint64{
		{server, "error.type=503 http.request.method=GET http.response.status_code=503 http.route=/status/{code} network.protocol.version=1.1 url.scheme=http"}: unavailable,
		{server, "http.request.method=GET http.response.status_code=200 http.route=/items/{id} network.protocol.version=1.1 url.scheme=http"}:                   items + 1,
		{server, "http.request.method=GET http.response.status_code=200 http.route=/proxy network.protocol.version=1.1 url.scheme=http"}:                        proxied,
		{server, "http.request.method=GET http.response.status_code=200 http.route=/echo network.protocol.version=1.1 url.scheme=http"}:                         proxied,
		{server, "error.type=502 http.request.method=GET http.response.status_code=502 http.route=/refused network.protocol.version=1.1 url.scheme=http"}:       refused,
	}
	for k, n := range want {
		if counts[k] != n {
			t.Errorf("%s %s: %d, want %d\nreceived:\n%s", k.metric, k.attrs, counts[k], n, strings.Join(keys, "\n"))
		}
	}
	var clientCalls, clientErrors uint64
	sets := 0
	for k, n := range counts {
		switch k.metric {
		case client_:
			clientCalls += n
			if strings.Contains(k.attrs, "error.type=") {
				clientErrors += n
			}
			if !strings.Contains(k.attrs, "server.address=127.0.0.1") || !strings.Contains(k.attrs, "server.port=") {
				t.Errorf("client point without its server: %s", k.attrs)
			}
		case server:
			sets++
		}
		for _, banned := range []string{"url.path", "url.full", "client.", "network.peer", "/items/1"} {
			if strings.Contains(k.attrs, banned) {
				t.Errorf("%s: a high-cardinality attribute: %s", k.metric, k.attrs)
			}
		}
	}
	if clientCalls != proxied+refused || clientErrors != refused {
		t.Errorf("client calls %d (%d errors), want %d (%d)\n%s", clientCalls, clientErrors, proxied+refused, refused, strings.Join(keys, "\n"))
	}
	if sets != len(want) {
		t.Errorf("%d attribute sets of %s, want %d:\n%s", sets, server, len(want), strings.Join(keys, "\n"))
	}

	spans := recv.Spans()
	exemplars := 0
	for _, h := range last {
		for _, e := range h.Exemplars {
			exemplars++
			if !slices.ContainsFunc(spans, func(s testenv.Span) bool { return s.TraceID == e.TraceID && s.SpanID == e.SpanID }) {
				t.Errorf("%s: exemplar %s/%s is no span exported", h.Metric, e.TraceID, e.SpanID)
			}
		}
	}
	switch sampler {
	case "always_on":
		if exemplars == 0 || len(spans) == 0 {
			t.Errorf("always_on: %d exemplars, %d spans", exemplars, len(spans))
		}
	case "always_off":
		if exemplars != 0 || len(spans) != 0 {
			t.Errorf("always_off: %d exemplars, %d spans", exemplars, len(spans))
		}
	}
	if said := launcherLines(r); said != "" {
		t.Errorf("the launcher said:\n%s", said)
	}
}

// attrString is a point's attributes, sorted: "k=v k2=v2".
func attrString(attrs map[string]any) string {
	var kv []string
	for k, v := range attrs {
		kv = append(kv, fmt.Sprintf("%s=%v", k, v))
	}
	sort.Strings(kv)
	return strings.Join(kv, " ")
}

// OTEL_METRICS_EXPORTER=console: the histograms go to the launcher's standard output
// (the app's too), flushed when the app exits, with the requests counted.
func TestRequestMetricsConsole(t *testing.T) {
	testenv.RequireRoot(t)
	tg := testenv.BuildTargets(t, "httpserver", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})[0]
	addr := freeAddr(t)
	var out testenv.SyncBuffer
	env := append(os.Environ(), "OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=console", "OTEL_SERVICE_NAME=console-metrics")
	r := start(t, opts{env: env, stdin: strings.NewReader(""), stdout: &out}, launchBin(t), "--require-instrumentation", "--", tg.Path, addr)
	firstRequest(t, addr, "/items/first")
	for i := 0; i < 6; i++ {
		resp, err := http.Get(fmt.Sprintf("http://%s/items/%d", addr, i))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	r.signal(syscall.SIGTERM)
	r.wait(20 * time.Second)
	s := out.String()
	for _, want := range []string{`"Name": "http.server.request.duration"`, `"Unit": "s"`, `"Value": "/items/{id}"`, `"Count": 7`, `"Value": "console-metrics"`} {
		if !strings.Contains(s, want) {
			t.Errorf("no %s in the console output:\n%s\n%s", want, s, r.stderr)
		}
	}
}

// OTLP over HTTP (http/protobuf): the histograms are POSTed to the generic endpoint's
// /v1/metrics, the spans to /v1/traces, and count the requests made.
func TestRequestMetricsOverHTTP(t *testing.T) {
	testenv.RequireRoot(t)
	tg := testenv.BuildTargets(t, "httpserver", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})[0]
	var mu sync.Mutex
	counts := map[string]uint64{} // by route and status: the last count posted
	paths := map[string]int{}
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		paths[r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type")]++
		if r.URL.Path == "/v1/metrics" {
			var req collectormetrics.ExportMetricsServiceRequest
			if err := proto.Unmarshal(body, &req); err != nil {
				t.Errorf("metrics export: %v", err)
			}
			for _, rm := range req.ResourceMetrics {
				for _, sm := range rm.ScopeMetrics {
					for _, m := range sm.Metrics {
						if m.Name != "http.server.request.duration" {
							continue
						}
						for _, p := range m.GetHistogram().GetDataPoints() {
							var route, status string
							for _, a := range p.Attributes {
								switch a.Key {
								case "http.route":
									route = a.Value.GetStringValue()
								case "http.response.status_code":
									status = fmt.Sprint(a.Value.GetIntValue())
								}
							}
							counts[route+" "+status] = max(counts[route+" "+status], p.Count) // cumulative: the last is the total
						}
					}
				}
			}
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()
	addr := freeAddr(t)
	env := append(os.Environ(), "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT="+collector.URL,
		"OTEL_TRACES_EXPORTER=", "OTEL_METRICS_EXPORTER=", "OTEL_METRIC_EXPORT_INTERVAL=", "OTEL_SERVICE_NAME=http-metrics")
	r := start(t, opts{env: env, stdin: strings.NewReader("")}, launchBin(t), "--require-instrumentation", "--", tg.Path, addr)
	firstRequest(t, addr, "/items/first")
	for i := 0; i < 24; i++ {
		resp, err := http.Get(fmt.Sprintf("http://%s/status/%d", addr, 200+i%2))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	r.signal(syscall.SIGTERM)
	r.wait(20 * time.Second)
	mu.Lock()
	defer mu.Unlock()
	if counts["/items/{id} 200"] != 1 || counts["/status/{code} 200"] != 12 || counts["/status/{code} 201"] != 12 || len(counts) != 3 {
		t.Errorf("counts %v, want /items/{id} 200: 1, /status/{code} 200 and 201: 12 each (posts %v)", counts, paths)
	}
	if paths["POST /v1/metrics application/x-protobuf"] == 0 || paths["POST /v1/traces application/x-protobuf"] == 0 {
		t.Errorf("posts %v", paths)
	}
	if said := launcherLines(r); said != "" {
		t.Errorf("the launcher said:\n%s", said)
	}
}

// gRPC: rpc.server.call.duration counts each call by method and status (a server
// error's code as error.type: UNAVAILABLE, not NOT_FOUND), rpc.client.call.duration each
// outgoing call with its server.
func TestRPCMetrics(t *testing.T) {
	tg := testenv.BuildGRPC(t, testenv.GRPCBuilds[2])[0]
	recv := testenv.StartReceiver(t)
	downAddr := freeAddr(t)
	start(t, opts{stdin: strings.NewReader("")}, tg.Path, downAddr) // untraced
	dialGRPC(t, downAddr)
	front, addr := tracedGRPC(t, tg, recv, downAddr)
	conn := dialGRPC(t, addr) // one Say
	const relays, fails = 10, 5
	for i := 0; i < relays; i++ {
		if err := conn.Invoke(context.Background(), "/demo.Echo/Relay", wrapperspb.String("hi"), new(wrapperspb.StringValue)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2*fails; i++ {
		code := []codes.Code{codes.NotFound, codes.Unavailable}[i%2]
		err := conn.Invoke(context.Background(), "/demo.Echo/Fail", wrapperspb.Int32(int32(code)), new(emptypb.Empty))
		if status.Code(err) != code {
			t.Fatal(err)
		}
	}
	front.signal(syscall.SIGTERM)
	front.wait(20 * time.Second)
	server, client := map[string]uint64{}, map[string]uint64{}
	downHost, downPort, _ := net.SplitHostPort(downAddr)
	for _, h := range recv.Histograms() {
		switch h.Metric {
		case "rpc.server.call.duration":
			k := fmt.Sprintf("%v %v %v", h.Attrs["rpc.method"], h.Attrs["rpc.response.status_code"], h.Attrs["error.type"])
			server[k] = max(server[k], h.Count)
		case "rpc.client.call.duration":
			if h.Attrs["server.address"] != downHost || fmt.Sprint(h.Attrs["server.port"]) != downPort || h.Attrs["rpc.system.name"] != "grpc" {
				t.Errorf("client point %v", h.Attrs)
			}
			k := attrString(h.Attrs)
			client[k] = max(client[k], h.Count)
		}
	}
	want := map[string]uint64{"demo.Echo/Say OK <nil>": 1, "demo.Echo/Relay OK <nil>": relays,
		"demo.Echo/Fail NOT_FOUND <nil>": fails, "demo.Echo/Fail UNAVAILABLE UNAVAILABLE": fails}
	for k, n := range want {
		if server[k] != n {
			t.Errorf("rpc.server.call.duration %s: %d, want %d (all: %v)", k, server[k], n, server)
		}
	}
	var calls uint64
	for _, n := range client {
		calls += n
	}
	if len(server) != len(want) || calls != 3*relays { // each Relay: Say twice, a Count stream
		t.Errorf("server points %v; client calls %d, want %d: %v", server, calls, 3*relays, client)
	}
}
