package telemetry

import (
	"context"
	"errors"
	"math/rand"
	"os"
	"testing"

	"go.opentelemetry.io/contrib/propagators/autoprop"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig"
)

// OTEL_PROPAGATORS as the contrib's autoprop (v0.72.0) reads it - the propagator an app
// instrumented by hand gets from it - and as the launcher does: whether W3C trace
// context is injected and extracted (Config.TraceContext), and whether W3C baggage is
// injected (Config.Baggage, which the launcher only reports). Where a row differs, why
// says why.
func TestPropagatorsMatchAutoprop(t *testing.T) {
	for _, c := range []struct {
		value            string // "-": unset
		traceContext, bg bool   // the launcher's, and autoprop's unless sdk
		sdk              *[2]bool
		why              string
	}{
		{value: "-", traceContext: true, bg: true},
		{value: "tracecontext", traceContext: true},
		{value: "baggage", bg: true},
		{value: "tracecontext,baggage", traceContext: true, bg: true},
		{value: "none"},
		{value: "tracecontext,none"},
		{value: "none,tracecontext"},
		{value: "b3"},
		{value: "b3,tracecontext", traceContext: true},
		{value: "TraceContext", traceContext: true, sdk: &[2]bool{true, true},
			why: "the specification's values are case-insensitive; autoprop knows lower case only, refuses the list and uses its default, tracecontext and baggage"},
		{value: "tracecontext, baggage", traceContext: true, bg: true, sdk: &[2]bool{true, false},
			why: "the launcher trims each name; autoprop does not know \" baggage\" and leaves it out"},
	} {
		t.Run(c.value, func(t *testing.T) {
			t.Setenv("OTEL_PROPAGATORS", c.value)
			if c.value == "-" {
				os.Unsetenv("OTEL_PROPAGATORS")
			}
			prop := autoprop.NewTextMapPropagator()
			sdkTC, sdkBg := propagates(t, prop)
			cfg, err := otelconfig.FromEnv()
			if err != nil {
				t.Fatal(err)
			}
			want := [2]bool{c.traceContext, c.bg}
			if c.sdk != nil {
				want = *c.sdk
			}
			if got := [2]bool{sdkTC, sdkBg}; got != want {
				t.Errorf("autoprop: trace context %v, baggage %v; want %v", sdkTC, sdkBg, want)
			}
			if cfg.TraceContext != c.traceContext || cfg.Baggage != c.bg {
				t.Errorf("the launcher: trace context %v, baggage %v; want %v, %v", cfg.TraceContext, cfg.Baggage, c.traceContext, c.bg)
			}
		})
	}
}

// propagates says whether prop injects and extracts a traceparent, and whether it
// injects baggage.
func propagates(t *testing.T, prop propagation.TextMapPropagator) (traceContext, bg bool) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{5}, SpanID: trace.SpanID{5}, TraceFlags: trace.FlagsSampled, Remote: true})
	member, err := baggage.NewMember("k", "v")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := baggage.New(member)
	ctx := baggage.ContextWithBaggage(trace.ContextWithRemoteSpanContext(context.Background(), sc), b)
	out := propagation.MapCarrier{}
	prop.Inject(ctx, out)
	in := propagation.MapCarrier{"traceparent": "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"}
	extracted := trace.SpanContextFromContext(prop.Extract(context.Background(), in))
	return out["traceparent"] != "" && extracted.TraceID() == sc.TraceID(), out["baggage"] != ""
}

// OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG as sdktrace's tracer provider reads
// them (NewTracerProvider with no sampler) and as the launcher's pipeline decides
// (otelconfig.FromEnv's Sampling): the same decision for every trace ID and parent, for
// every sampler the specification names, arguments invalid or absent, names in any
// case, and samplers neither has (the default, parentbased_always_on).
func TestSamplerFromEnvMatchesSDK(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for _, c := range [][2]string{
		{"", ""}, {"always_on", ""}, {"always_off", ""}, {"parentbased_always_on", ""}, {"parentbased_always_off", ""},
		{"traceidratio", "0.25"}, {"traceidratio", ""}, {"traceidratio", " 0.5 "}, {"traceidratio", "0"}, {"traceidratio", "1"},
		{"traceidratio", "abc"}, {"traceidratio", "-0.5"}, {"traceidratio", "1.5"}, {"traceidratio", "NaN"},
		{"parentbased_traceidratio", "0.25"}, {"parentbased_traceidratio", ""}, {"parentbased_traceidratio", "2"},
		{"parentbased_traceidratio", "ratio"}, {"always_on", "0.1"},
		{"Always_Off", ""}, {" parentbased_always_off ", ""}, {"TraceIdRatio", "0.5"},
		{"jaeger_remote", "endpoint=http://localhost:14250"}, {"parentbased_jaeger_remote", ""}, {"xray", ""},
	} {
		t.Run(c[0]+" "+c[1], func(t *testing.T) {
			t.Setenv("OTEL_TRACES_SAMPLER", c[0])
			t.Setenv("OTEL_TRACES_SAMPLER_ARG", c[1])
			cfg, err := otelconfig.FromEnv()
			if err != nil {
				t.Fatal(err)
			}
			ids := &nextTraceID{}
			tracer := sdktrace.NewTracerProvider(sdktrace.WithIDGenerator(ids)).Tracer("conformance")
			for i := range 600 {
				rng.Read(ids.id[:])
				span := &Span{TraceID: ids.id}
				ctx := context.Background()
				if parent := i % 3; parent > 0 {
					flags := trace.TraceFlags(0)
					if parent == 1 {
						flags = trace.FlagsSampled
					}
					span.Parent = trace.NewSpanContext(trace.SpanContextConfig{TraceID: ids.id, SpanID: trace.SpanID{1}, TraceFlags: flags, Remote: true})
					ctx = trace.ContextWithRemoteSpanContext(ctx, span.Parent)
				}
				_, s := tracer.Start(ctx, "s")
				if sdk, ours := s.SpanContext().IsSampled(), sampled(cfg.Sampling, span); sdk != ours {
					t.Fatalf("trace %s, parent %v: SDK sampled %v, the launcher %v (%+v)", ids.id, span.Parent, sdk, ours, cfg.Sampling)
				}
			}
		})
	}
}

// nextTraceID gives the tracer provider the trace ID the test chose.
type nextTraceID struct{ id trace.TraceID }

func (n *nextTraceID) NewIDs(context.Context) (trace.TraceID, trace.SpanID) {
	return n.id, trace.SpanID{2}
}

func (n *nextTraceID) NewSpanID(context.Context, trace.TraceID) trace.SpanID { return trace.SpanID{2} }

// OTEL_SDK_DISABLED is a boolean as the specification has them: only "true", in any
// case, is true, and then the launcher builds no pipeline. (The Go SDK v1.47 reads it
// nowhere - sdk/trace, sdk/metric, the OTLP exporters -: there is no reading of its to
// compare with.)
func TestSDKDisabledFromEnv(t *testing.T) {
	for value, disabled := range map[string]bool{"true": true, "TRUE": true, "True": true, "false": false, "1": false, "yes": false, "": false} {
		t.Run(value, func(t *testing.T) {
			t.Setenv("OTEL_SDK_DISABLED", value)
			t.Setenv("OTEL_TRACES_EXPORTER", "none")
			t.Setenv("OTEL_METRICS_EXPORTER", "none")
			cfg, err := otelconfig.FromEnv()
			if err != nil {
				t.Fatal(err)
			}
			p, err := New(context.Background(), App{Path: "/app"}, cfg)
			if cfg.Disabled != disabled || errors.Is(err, ErrDisabled) != disabled {
				t.Errorf("disabled %v, New: %v; want disabled %v", cfg.Disabled, err, disabled)
			}
			// The specification: a value other than true or false is warned about.
			if warned := len(cfg.Warnings) > 0; warned != (value == "1" || value == "yes") {
				t.Errorf("warnings %q", cfg.Warnings)
			}
			if p != nil {
				p.Shutdown(context.Background())
			}
		})
	}
}
