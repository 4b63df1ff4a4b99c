package telemetry

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig"
)

// limitVariables are the span limits' variables.
var limitVariables = []string{"OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
	"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "OTEL_ATTRIBUTE_COUNT_LIMIT", "OTEL_SPAN_EVENT_COUNT_LIMIT",
	"OTEL_SPAN_LINK_COUNT_LIMIT", "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT"}

// attributeLimits are the limits with length and count on attributes, the defaults on
// events and links.
func attributeLimits(length, count int) otelconfig.Limits {
	return otelconfig.Limits{AttributeValueLength: length, AttributeCount: count, EventCount: 128, LinkCount: 128,
		EventAttributeCount: 128, LinkAttributeCount: 128}
}

// The span limits from the environment cut and drop a span's attributes, events and
// links as the SDK's do for the same variables: the same OTLP bytes, attributes and
// dropped counts, for spans of every shape (testSpans: an invalid attribute, an end
// reason), one of 140 attributes, one of 140 events and 140 links with 130 attributes
// each, and values of every kind cut - strings of several characters a byte, a
// valid U+FFFD, bytes that are not UTF-8, string slices, bytes, slices, maps. The
// span's variable wins over the generic one; a value that is not an integer is the
// default, a negative one no limit, both said.
func TestAttributeLimitsMatchSDK(t *testing.T) {
	for _, c := range []struct {
		env  vars
		want otelconfig.Limits
		warn string // in the configuration's warnings
	}{
		{vars{}, attributeLimits(-1, 128), ""},
		{vars{"OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "5"}, attributeLimits(5, 128), ""},
		{vars{"OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT": "3", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "10"}, attributeLimits(3, 128), ""},
		{vars{"OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "0"}, attributeLimits(0, 128), ""},
		{vars{"OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT": "1"}, attributeLimits(1, 128), ""},
		{vars{"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "2", "OTEL_ATTRIBUTE_COUNT_LIMIT": "5"}, attributeLimits(-1, 2), ""},
		{vars{"OTEL_ATTRIBUTE_COUNT_LIMIT": "3", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "4"}, attributeLimits(4, 3), ""},
		{vars{"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "0"}, attributeLimits(-1, 0), ""},
		{vars{"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "1"}, attributeLimits(-1, 1), ""},
		{vars{"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "-1", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "-7"}, attributeLimits(-1, -1),
			"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT=-1 is negative: no limit"},
		{vars{"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "many", "OTEL_ATTRIBUTE_COUNT_LIMIT": "2"}, attributeLimits(-1, 128),
			`OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT="many" is not an integer: using 128`},
		{vars{"OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT": " 4", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "2"}, attributeLimits(-1, 128),
			`OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT=" 4" is not an integer: using no limit`},
		{vars{"OTEL_SPAN_EVENT_COUNT_LIMIT": "3", "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT": "2", "OTEL_SPAN_LINK_COUNT_LIMIT": "5",
			"OTEL_LINK_ATTRIBUTE_COUNT_LIMIT": "1"}, otelconfig.Limits{AttributeValueLength: -1, AttributeCount: 128,
			EventCount: 3, LinkCount: 5, EventAttributeCount: 2, LinkAttributeCount: 1}, ""},
		{vars{"OTEL_SPAN_EVENT_COUNT_LIMIT": "0", "OTEL_SPAN_LINK_COUNT_LIMIT": "0"}, otelconfig.Limits{AttributeValueLength: -1,
			AttributeCount: 128, EventAttributeCount: 128, LinkAttributeCount: 128}, ""},
		{vars{"OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT": "0", "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT": "-1", "OTEL_SPAN_EVENT_COUNT_LIMIT": "-2"},
			otelconfig.Limits{AttributeValueLength: -1, AttributeCount: 128, EventCount: -1, LinkCount: 128, LinkAttributeCount: -1},
			"OTEL_SPAN_EVENT_COUNT_LIMIT=-2 is negative: no limit"},
		// The generic variable is the span's attributes', not an event's or a link's.
		{vars{"OTEL_ATTRIBUTE_COUNT_LIMIT": "2", "OTEL_SPAN_LINK_COUNT_LIMIT": "x"}, otelconfig.Limits{AttributeValueLength: -1,
			AttributeCount: 2, EventCount: 128, LinkCount: 128, EventAttributeCount: 128, LinkAttributeCount: 128},
			`OTEL_SPAN_LINK_COUNT_LIMIT="x" is not an integer: using 128`},
	} {
		t.Run(fmt.Sprint(c.env), func(t *testing.T) {
			for _, name := range limitVariables {
				t.Setenv(name, c.env[name])
			}
			cfg, err := otelconfig.FromEnv()
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Limits != c.want {
				t.Errorf("limits %+v, want %+v", cfg.Limits, c.want)
			}
			said := strings.Join(cfg.Warnings, "\n")
			if c.warn == "" && strings.Contains(said, "LIMIT") || c.warn != "" && !strings.Contains(said, c.warn) {
				t.Errorf("warnings %q, want %q", cfg.Warnings, c.warn)
			}
			spans := limitSpans(cfg.Limits.AttributeValueLength)
			sdk := sdkRequests(t, spans)
			enc := newEncoder(resourceForTests(t), testClock)
			enc.limits = cfg.Limits
			for i, s := range spans {
				flags := trace.FlagsSampled | s.Parent.TraceFlags() // as Emit keeps the parent's
				var b batch
				b.add(scopedSpan{scopeOf(s), enc.appendSpan(nil, s, flags)})
				got := enc.request(nil, &b)
				if c.want.EventCount == 0 || c.want.LinkCount == 0 {
					got = withoutDroppedCounts(t, got, s, c.want)
				}
				if !bytes.Equal(got, sdk[i]) {
					t.Errorf("span %d (%s): not the SDK's\n%s", i, s.Name, requestDiff(got, sdk[i]))
				}
			}
		})
	}
}

// withoutDroppedCounts is req, a span's request, without the counts of the events and
// links a zero limit drops - all of them -, once checked: the SDK (v1.47.0) leaves its
// count out when it keeps none (recordingSpan.snapshot), which the proto's "0: none
// dropped" would misreport.
func withoutDroppedCounts(t *testing.T, req []byte, s *Span, limits otelconfig.Limits) []byte {
	t.Helper()
	var r coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(req, &r); err != nil {
		t.Fatal(err)
	}
	span := r.ResourceSpans[0].ScopeSpans[0].Spans[0]
	if limits.EventCount == 0 {
		if int(span.DroppedEventsCount) != len(s.Events) {
			t.Errorf("%s: %d events dropped, want all %d", s.Name, span.DroppedEventsCount, len(s.Events))
		}
		span.DroppedEventsCount = 0
	}
	if limits.LinkCount == 0 {
		if int(span.DroppedLinksCount) != len(s.Links) {
			t.Errorf("%s: %d links dropped, want all %d", s.Name, span.DroppedLinksCount, len(s.Links))
		}
		span.DroppedLinksCount = 0
	}
	b, err := proto.Marshal(&r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// limitSpans are testSpans and spans whose attributes the limits cut: values only
// valid UTF-8 once cut where length may cut them (the SDK's exporter cannot marshal
// the others).
func limitSpans(length int) []*Span {
	spans := testSpans()
	now := monoNow()
	many := &Span{Scope: testScopes[0], TraceID: trace.TraceID{3}, SpanID: trace.SpanID{3}, Kind: trace.SpanKindServer, Name: "many",
		Start: now, End: now + 1, EndReason: EndDetach}
	for i := range 140 {
		many.Attributes = append(many.Attributes, attribute.Int(fmt.Sprintf("a%03d", i), i))
	}
	values := &Span{Scope: testScopes[1], TraceID: trace.TraceID{4}, SpanID: trace.SpanID{4}, Kind: trace.SpanKindClient, Name: "values",
		Start: now, End: now + 1, Attributes: []attribute.KeyValue{
			attribute.String("ascii", "SELECT * FROM users WHERE id = ?"),
			attribute.String("short", "ab"),
			attribute.String("utf8", "héllo wörld, 日本語のテキスト"),
			attribute.String("emoji", "🙂🙃🙂🙃🙂🙃"),
			attribute.String("fffd", "\uFFFDa\uFFFDbcdefgh"),
			attribute.StringSlice("slice", []string{"first element", "é", "", "日本語のテキスト"}),
			attribute.Int("int", 7),
			attribute.Float64Slice("floats", []float64{1.5}),
			{Key: "bytes", Value: attribute.ByteSliceValue([]byte("bytes of a value"))},
			{Key: "nested", Value: attribute.SliceValue(attribute.StringValue("nested string"), attribute.Int64Value(3))},
			{Key: "map", Value: attribute.MapValue(attribute.String("inner", "inner value"), attribute.Bool("b", true))},
		}}
	if length >= 0 && length <= 5 {
		values.Attributes = append(values.Attributes,
			attribute.String("broken", "ab\xffcdefgh"), attribute.String("broken-late", "abcdefg\xff\xfe"))
	}
	// Events and links past every default limit, each with attributes past theirs
	// (and an invalid one among the first).
	crowded := &Span{Scope: testScopes[0], TraceID: trace.TraceID{5}, SpanID: trace.SpanID{5}, Kind: trace.SpanKindInternal,
		Name: "crowded", Start: now, End: now + 200}
	var attrs []attribute.KeyValue
	for i := range 130 {
		attrs = append(attrs, attribute.Int(fmt.Sprintf("e%03d", i), i))
	}
	attrs[1] = attribute.KeyValue{Key: "invalid"}
	for i := range 140 {
		crowded.Events = append(crowded.Events, Event{Name: fmt.Sprintf("event %d", i), Time: now + uint64(i), Attributes: attrs[:i%4*43]})
		crowded.Links = append(crowded.Links, Link{SpanContext: trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: trace.TraceID{6, byte(i)}, SpanID: trace.SpanID{7, byte(i)}, TraceFlags: trace.FlagsSampled}), Attributes: attrs[:i%4*43]})
	}
	return append(spans, many, values, crowded)
}

var testClock = NewClock()

func resourceForTests(t *testing.T) *resource.Resource {
	t.Helper()
	res, err := appResource(context.Background(), App{Path: "/srv/app", PID: 42}, envResource(t))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// sdkRequests are the requests the SDK exports for spans, one a span, with the span
// limits it reads from the environment.
func sdkRequests(t *testing.T, spans []*Span) [][]byte {
	t.Helper()
	ctx := context.Background()
	client := &capturingClient{}
	exp, err := otlptrace.New(ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithResource(resourceForTests(t)), sdktrace.WithIDGenerator(spanIDs{}), sdktrace.WithSyncer(exp))
	endSDKSpans(ctx, tp, spans, testClock)
	tp.Shutdown(ctx)
	reqs := marshalRequests(t, client.requests)
	if len(reqs) != len(spans) {
		t.Fatalf("the SDK exported %d spans of %d", len(reqs), len(spans))
	}
	return reqs
}

// The pipeline applies the configuration's limits.
func TestPipelineAppliesLimits(t *testing.T) {
	cfg, err := otelconfig.From(vars{"OTEL_METRICS_EXPORTER": "none", "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "1", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "3"}.get)
	if err != nil {
		t.Fatal(err)
	}
	mem := &memSender{}
	p, err := newPipeline(context.Background(), App{Path: "/app"}, cfg, []namedSender{{"memory", mem}})
	if err != nil {
		t.Fatal(err)
	}
	p.Emit(&Span{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, Name: "s", Attributes: []attribute.KeyValue{
		attribute.String("url.path", "/items/7"), attribute.Int("http.response.status_code", 200)}})
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := mem.spans()
	if len(spans) != 1 || len(spans[0].Attributes) != 1 || spans[0].Attributes[0].Value.GetStringValue() != "/it" || spans[0].DroppedAttributesCount != 1 {
		t.Errorf("spans %v", spans)
	}
}
