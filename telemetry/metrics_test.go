package telemetry

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/otel-go-launcher/otel-go-launcher/internal/version"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig"
)

// Each library's spans count in their convention's histogram, in seconds, with that
// histogram's attributes only: never an id, a path, a query's text or a client port;
// under the library's scope (its meter's name, version and schema URL).
// Messaging spans also count their messages: sent by a producer, delivered by a consumer.
func TestRequestMetricsOfEachKind(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	m, err := newRequestMetrics(context.Background(), otelconfig.Metrics{ExemplarFilter: "trace_based"}, resource.Empty(), reader)
	if err != nil {
		t.Fatal(err)
	}
	defer m.shutdown(context.Background())
	http, sql, rpc, msg := testScopes[0], testScopes[1], testScopes[2], NewScope("example.com/kafka")
	record := func(scope *Scope, kind trace.SpanKind, ms uint64, attrs ...attribute.KeyValue) {
		m.record(&Span{Scope: scope, TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, Kind: kind, Start: 1e9, End: 1e9 + ms*1e6, Attributes: attrs}, true)
	}
	record(http, trace.SpanKindServer, 20, semconv.HTTPRequestMethodGet, semconv.HTTPRoute("/items/{id}"), semconv.URLPath("/items/7"),
		semconv.HTTPResponseStatusCode(200), semconv.ClientAddress("10.0.0.1"), semconv.ClientPort(50123), semconv.UserAgentOriginal("curl"))
	record(http, trace.SpanKindClient, 30, semconv.HTTPRequestMethodPost, semconv.URLFull("http://api:8080/x?token=1"), semconv.ServerAddress("api"),
		semconv.ServerPort(8080), semconv.HTTPResponseStatusCode(503), semconv.ErrorTypeKey.String("503"))
	record(rpc, trace.SpanKindServer, 5, semconv.RPCSystemNameGRPC, semconv.RPCMethod("hello.Greeter/Say"), semconv.RPCResponseStatusCode("OK"),
		semconv.ClientAddress("10.0.0.2"))
	record(rpc, trace.SpanKindClient, 6, semconv.RPCSystemNameGRPC, semconv.RPCMethod("hello.Greeter/Say"), semconv.RPCResponseStatusCode("UNAVAILABLE"),
		semconv.ServerAddress("greeter"), semconv.ServerPort(50051), semconv.ErrorTypeKey.String("UNAVAILABLE"))
	record(sql, trace.SpanKindClient, 2, semconv.DBSystemNamePostgreSQL, semconv.DBQueryText("SELECT * FROM t WHERE id = $1"),
		semconv.DBOperationName("SELECT"), semconv.DBCollectionName("t"), semconv.ServerAddress("10.0.0.3"), semconv.ServerPort(5432))
	record(nil, trace.SpanKindClient, 1, semconv.DBSystemNameRedis, semconv.DBOperationName("GET"), semconv.DBNamespace("3"),
		semconv.DBResponseStatusCode("WRONGTYPE"), semconv.ErrorTypeKey.String("WRONGTYPE"))
	// Kafka: a batch of three sent, one message delivered; never its offset, which is per message.
	record(msg, trace.SpanKindProducer, 3, semconv.MessagingSystemKafka, semconv.MessagingOperationTypeSend, semconv.MessagingOperationName("send"),
		semconv.MessagingDestinationName("orders"), semconv.MessagingBatchMessageCount(3))
	record(msg, trace.SpanKindConsumer, 4, semconv.MessagingSystemKafka, semconv.MessagingOperationTypeReceive, semconv.MessagingOperationName("receive"),
		semconv.MessagingDestinationName("orders"), semconv.MessagingDestinationPartitionID("2"), semconv.MessagingKafkaOffset(41),
		semconv.MessagingConsumerGroupName("billing"))
	record(http, trace.SpanKindInternal, 1) // nothing a convention measures
	// A span the launcher ended at the app's exit: its duration is not its request's.
	m.record(&Span{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{3}, Kind: trace.SpanKindServer, Start: 1e9, End: 9e9, EndReason: EndAppExit,
		Attributes: []attribute.KeyValue{semconv.HTTPRequestMethodGet, semconv.HTTPRoute("/watch")}}, true)

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	scopes := map[string]string{} // metric: its scopes
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Version != version.String() || sm.Scope.SchemaURL != semconv.SchemaURL {
			t.Errorf("scope %s: version %q, schema %q", sm.Scope.Name, sm.Scope.Version, sm.Scope.SchemaURL)
		}
		for _, mt := range sm.Metrics {
			scopes[mt.Name] += " " + sm.Scope.Name
			if sum, ok := mt.Data.(metricdata.Sum[int64]); ok {
				for _, p := range sum.DataPoints {
					var kv []string
					for _, a := range p.Attributes.ToSlice() {
						kv = append(kv, string(a.Key)+"="+a.Value.Emit())
					}
					got[mt.Name] = append(got[mt.Name], fmt.Sprintf("%d: %s", p.Value, strings.Join(kv, " ")))
				}
				if mt.Unit != "{message}" || !sum.IsMonotonic {
					t.Errorf("%s: unit %q, monotonic %v", mt.Name, mt.Unit, sum.IsMonotonic)
				}
				continue
			}
			if mt.Unit != "s" {
				t.Errorf("%s: unit %q", mt.Name, mt.Unit)
			}
			for _, p := range mt.Data.(metricdata.Histogram[float64]).DataPoints {
				var kv []string
				for _, a := range p.Attributes.ToSlice() {
					kv = append(kv, string(a.Key)+"="+a.Value.Emit())
				}
				got[mt.Name] = append(got[mt.Name], strings.Join(kv, " "))
				if p.Count != 1 || len(p.Exemplars) != 1 || p.Exemplars[0].TraceID[0] != 1 || p.Sum <= 0 || p.Sum > 0.031 {
					t.Errorf("%s: count %d, sum %v, exemplars %v", mt.Name, p.Count, p.Sum, p.Exemplars)
				}
			}
		}
	}
	want := map[string][]string{
		"http.server.request.duration": {"http.request.method=GET http.response.status_code=200 http.route=/items/{id}"},
		"http.client.request.duration": {"error.type=503 http.request.method=POST http.response.status_code=503 server.address=api server.port=8080"},
		"rpc.server.call.duration":     {"rpc.method=hello.Greeter/Say rpc.response.status_code=OK rpc.system.name=grpc"},
		"rpc.client.call.duration":     {"error.type=UNAVAILABLE rpc.method=hello.Greeter/Say rpc.response.status_code=UNAVAILABLE rpc.system.name=grpc server.address=greeter server.port=50051"},
		"db.client.operation.duration": {"db.collection.name=t db.operation.name=SELECT db.system.name=postgresql server.address=10.0.0.3 server.port=5432",
			"db.namespace=3 db.operation.name=GET db.response.status_code=WRONGTYPE db.system.name=redis error.type=WRONGTYPE"},
		"messaging.client.operation.duration": {
			"messaging.destination.name=orders messaging.operation.name=send messaging.operation.type=send messaging.system=kafka",
			"messaging.consumer.group.name=billing messaging.destination.name=orders messaging.destination.partition.id=2 messaging.operation.name=receive messaging.operation.type=receive messaging.system=kafka"},
		"messaging.client.sent.messages": {"3: messaging.destination.name=orders messaging.operation.name=send messaging.system=kafka"},
		"messaging.client.consumed.messages": {
			"1: messaging.consumer.group.name=billing messaging.destination.name=orders messaging.destination.partition.id=2 messaging.operation.name=receive messaging.system=kafka"},
	}
	for name, sets := range want {
		g := got[name]
		sort.Strings(g)
		sort.Strings(sets)
		if strings.Join(g, "\n") != strings.Join(sets, "\n") {
			t.Errorf("%s:\n got %q\nwant %q", name, g, sets)
		}
	}
	if len(got) != len(want) {
		t.Errorf("metrics %v", got)
	}
	wantScopes := map[string]string{
		"http.server.request.duration": " " + http.Name, "http.client.request.duration": " " + http.Name,
		"rpc.server.call.duration": " " + rpc.Name, "rpc.client.call.duration": " " + rpc.Name,
		"messaging.client.operation.duration": " " + msg.Name, "messaging.client.sent.messages": " " + msg.Name,
		"messaging.client.consumed.messages": " " + msg.Name,
	}
	if scopes["db.client.operation.duration"] != " "+sql.Name+" "+LauncherScope.Name && scopes["db.client.operation.duration"] != " "+LauncherScope.Name+" "+sql.Name {
		t.Errorf("db.client.operation.duration: scopes%s, want %s and %s", scopes["db.client.operation.duration"], sql.Name, LauncherScope.Name)
	}
	delete(scopes, "db.client.operation.duration")
	if !maps.Equal(scopes, wantScopes) {
		t.Errorf("scopes %v\nwant %v", scopes, wantScopes)
	}
}

// The metrics exporters the configuration names are built, each as configured: OTLP
// over gRPC and over HTTP (to /v1/metrics), the console; a temporality preference of
// delta or lowmemory makes the histograms delta.
func TestMetricExportersFromEnvironment(t *testing.T) {
	for _, c := range []struct {
		env   vars
		n     int
		delta bool
	}{
		{vars{}, 1, false},
		{vars{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta"}, 1, true},
		{vars{"OTEL_METRICS_EXPORTER": "console,otlp", "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "lowmemory"}, 2, true},
		{vars{"OTEL_METRICS_EXPORTER": "none"}, 0, false},
	} {
		cfg, err := otelconfig.From(c.env.get)
		if err != nil {
			t.Fatalf("%v: %v", c.env, err)
		}
		m := cfg.Metrics
		for _, name := range m.Exporters {
			exp, err := metricExporter(context.Background(), name, m, true)
			if err != nil {
				t.Errorf("%v: %s: %v", c.env, name, err)
				continue
			}
			if got := exp.Temporality(sdkmetric.InstrumentKindHistogram); (got == metricdata.DeltaTemporality) != c.delta {
				t.Errorf("%v: %s: histograms %v", c.env, name, got)
			}
			exp.Shutdown(context.Background())
		}
		if len(m.Exporters) != c.n {
			t.Errorf("%v: exporters %v", c.env, m.Exporters)
		}
	}
}

// What recording one server span's duration costs the launcher: the figure its target
// bounds (≤ 1 µs a request), without the noise of a whole launcher under load.
func BenchmarkRecordServerSpan(b *testing.B) {
	m, err := newRequestMetrics(context.Background(), otelconfig.Metrics{ExemplarFilter: "trace_based"}, resource.Empty(), sdkmetric.NewManualReader())
	if err != nil {
		b.Fatal(err)
	}
	defer m.shutdown(context.Background())
	s := &Span{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, Kind: trace.SpanKindServer, Start: 1e9, End: 1e9 + 250e3, Attributes: []attribute.KeyValue{
		semconv.HTTPRequestMethodGet, semconv.URLPath("/items/7"), semconv.URLScheme("http"), semconv.HTTPRoute("/items/{id}"),
		semconv.NetworkProtocolVersion("1.1"), semconv.ServerAddress("127.0.0.1"), semconv.ServerPort(8080),
		semconv.ClientAddress("127.0.0.1"), semconv.ClientPort(50000), semconv.UserAgentOriginal("Go-http-client/1.1"),
		semconv.HTTPResponseStatusCode(200)}}
	b.ReportAllocs()
	for b.Loop() {
		m.record(s, true) // a sampled span: its IDs go with the measurement, for an exemplar
	}
}
