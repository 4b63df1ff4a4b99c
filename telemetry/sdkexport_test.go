//go:build sdkexporter

package telemetry

import (
	"bytes"
	"context"
	"reflect"
	"sort"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig"
)

// A snapshot is exported by the SDK as the bytes our encoder writes for the same span:
// IDs, parent, trace state, flags, kind, times, attributes, status, resource, scope.
func TestSnapshotIsOurEncoding(t *testing.T) {
	ctx := context.Background()
	res, err := appResource(ctx, App{Path: "/srv/app", PID: 42, GoVersion: "go1.26.8"}, envResource(t))
	if err != nil {
		t.Fatal(err)
	}
	clock := NewClock()
	enc := newEncoder(res, clock)
	client := &capturingClient{}
	exp, err := otlptrace.New(ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	q := sdkQueue{res: res, clock: clock}
	for i, s := range testSpans() {
		flags := spanFlags(s)
		if err := exp.ExportSpans(ctx, []sdktrace.ReadOnlySpan{q.snapshot(s, flags)}); err != nil {
			t.Fatal(err)
		}
		sdk, _ := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: client.requests[i]})
		var b batch
		b.add(scopedSpan{scopeOf(s), enc.appendSpan(nil, s, flags)})
		ours := enc.request(nil, &b)
		if !bytes.Equal(sdk, ours) {
			t.Errorf("span %d (%s): the snapshot exports as\n%x\nnot as ours\n%x", i, s.Name, sdk, ours)
		}
	}
}

// spanFlags are the flags Emit gives s.
func spanFlags(s *Span) trace.TraceFlags {
	if s.Parent.IsValid() {
		return trace.FlagsSampled | s.Parent.TraceFlags()
	}
	return trace.FlagsSampled
}

// Built with -tags sdkexporter, New exports through the SDK's exporter, over gRPC and
// http/protobuf: the receiver gets what our exporter sends it.
func TestSDKExporterToReceiver(t *testing.T) {
	for _, protocol := range []string{"grpc", "http/protobuf"} {
		t.Run(protocol, func(t *testing.T) {
			spans := testSpans()
			got := exportThrough(t, spans, protocol, true)
			want := exportThrough(t, spans, protocol, false)
			if len(got) != len(spans) || len(want) != len(spans) {
				t.Fatalf("the SDK's exporter delivered %d spans, ours %d, of %d", len(got), len(want), len(spans))
			}
			// Each pipeline measures its own clock offset: times agree to a few µs.
			for i := range got {
				if d := got[i].Start.Sub(want[i].Start).Abs(); d > time.Millisecond || got[i].End.Sub(got[i].Start) != want[i].End.Sub(want[i].Start) {
					t.Errorf("span %s: %v to %v, ours %v to %v", got[i].Name, got[i].Start, got[i].End, want[i].Start, want[i].End)
				}
				got[i].Start, got[i].End, want[i].Start, want[i].End = time.Time{}, time.Time{}, time.Time{}, time.Time{}
				for j := range min(len(got[i].Events), len(want[i].Events)) {
					if d := got[i].Events[j].Time.Sub(want[i].Events[j].Time).Abs(); d > time.Millisecond {
						t.Errorf("span %s: event %s at %v, ours at %v", got[i].Name, got[i].Events[j].Name, got[i].Events[j].Time, want[i].Events[j].Time)
					}
					got[i].Events[j].Time, want[i].Events[j].Time = time.Time{}, time.Time{}
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("the SDK's exporter delivered\n%+v\nours\n%+v", got, want)
			}
		})
	}
}

// exportThrough emits the spans into a pipeline exporting to a new receiver, the SDK's
// or ours, and returns what arrived, in span ID order.
func exportThrough(t *testing.T, spans []*Span, protocol string, sdk bool) []testenv.Span {
	r := testenv.StartReceiver(t)
	p := receiverPipeline(t, r, protocol, sdk)
	for _, s := range spans {
		p.Emit(s)
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); len(st) != 1 || st[0].Exported != uint64(len(spans)) {
		t.Errorf("stats %+v, want %d exported", st, len(spans))
	}
	got := r.Spans()
	sort.Slice(got, func(i, j int) bool { return got[i].SpanID < got[j].SpanID })
	return got
}

// receiverPipeline is a pipeline exporting to r over protocol: the SDK's exporter (New,
// in this build) or ours (newPipeline).
func receiverPipeline(t testing.TB, r *testenv.Receiver, protocol string, sdk bool) *Pipeline {
	endpoint := r.Endpoint
	if protocol != "grpc" {
		var err error
		if endpoint, err = r.StartHTTP(); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := otelconfig.From(vars{"OTEL_METRICS_EXPORTER": "none", "OTEL_EXPORTER_OTLP_PROTOCOL": protocol, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}.get)
	if err != nil {
		t.Fatal(err)
	}
	ctx, app := context.Background(), App{Path: "/srv/app", PID: 42}
	var p *Pipeline
	if sdk {
		p, err = New(ctx, app, cfg)
		if err == nil && (p.sdk == nil || len(p.queues) != 0) {
			t.Fatalf("New built %d queues of ours and SDK exporter %v: want the SDK's alone", len(p.queues), p.sdk)
		}
	} else {
		var ss []namedSender
		if ss, err = senders(cfg); err == nil {
			p, err = newPipeline(ctx, app, cfg, ss)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The exporters alone, a /hello server span at a time, a batch flushed and received
// every 512 (the receiver decoding it in the same process: the same work for both),
// for go test -tags sdkexporter -run x -bench Export ./telemetry; the bench's exporter
// section weighs them in the launcher.
func BenchmarkExportOurs(b *testing.B) { benchmarkExport(b, false) }
func BenchmarkExportSDK(b *testing.B)  { benchmarkExport(b, true) }

func benchmarkExport(b *testing.B, sdk bool) {
	r := testenv.StartReceiver(b)
	r.CountOnly()
	p := receiverPipeline(b, r, "grpc", sdk)
	now := monoNow()
	span := &Span{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, Kind: trace.SpanKindServer, Name: "GET", Start: now, End: now + 50_000,
		Attributes: []attribute.KeyValue{attribute.String("http.request.method", "GET"), attribute.String("url.path", "/hello"),
			attribute.String("url.scheme", "http"), attribute.Int("http.response.status_code", 200), attribute.String("server.address", "127.0.0.1"),
			attribute.Int("server.port", 8080), attribute.String("network.protocol.version", "1.1"), attribute.String("network.peer.address", "127.0.0.1"),
			attribute.Int("network.peer.port", 40000), attribute.String("user_agent.original", "Go-http-client/1.1")}}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		span.SpanID[1] = byte(i)
		p.Emit(span)
		if i%512 == 511 {
			p.ForceFlush(context.Background())
		}
	}
	if err := p.Shutdown(context.Background()); err != nil {
		b.Fatal(err)
	}
	if st := p.Stats()[0]; st.Dropped+st.Failed > 0 {
		b.Fatalf("%+v: the benchmark lost spans", st)
	}
}
