package telemetry

import (
	"context"
	"encoding/binary"
	"math/rand"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

func TestSamplingFromEnv(t *testing.T) {
	for _, c := range []struct {
		sampler, arg string
		want         Sampling
	}{
		{"", "", DefaultSampling},
		{"parentbased_always_on", "", DefaultSampling},
		{"always_on", "", Sampling{Root: AlwaysOn, Ratio: 1}},
		{"always_off", "", Sampling{Root: AlwaysOff}},
		{"parentbased_always_off", "", Sampling{Root: AlwaysOff, ParentBased: true, Ratio: 1}},
		{"traceidratio", "0.25", Sampling{Root: TraceIDRatio, Ratio: 0.25}},
		{"parentbased_traceidratio", "", Sampling{Root: TraceIDRatio, ParentBased: true, Ratio: 1}},
		{"parentbased_traceidratio", "2", Sampling{Root: TraceIDRatio, ParentBased: true, Ratio: 1}}, // warned
		{"jaeger_remote", "", DefaultSampling},                                                       // warned
	} {
		e := &env{get: vars{"OTEL_TRACES_SAMPLER": c.sampler, "OTEL_TRACES_SAMPLER_ARG": c.arg}.get}
		if got := e.sampling(); got != c.want {
			t.Errorf("%s %s: %+v, want %+v", c.sampler, c.arg, got, c.want)
		}
	}
}

// kernelDecision is the rule the probes apply in the kernel (bpf/include/trace.h,
// sample()), written out again: the pipeline's decision, and the SDK's sampler of the
// same name, must agree with it on every trace ID and parent.
func kernelDecision(s Sampling, id trace.TraceID, hasParent, parentSampled bool) bool {
	if hasParent && s.ParentBased {
		return parentSampled
	}
	switch s.Root {
	case AlwaysOff:
		return false
	case TraceIDRatio:
		return binary.BigEndian.Uint64(id[8:])>>1 < s.RatioBound()
	}
	return true
}

// sdkSampler is the SDK's sampler of the same name.
func sdkSampler(s Sampling) sdktrace.Sampler {
	var root sdktrace.Sampler
	switch s.Root {
	case AlwaysOff:
		root = sdktrace.NeverSample()
	case TraceIDRatio:
		root = sdktrace.TraceIDRatioBased(s.Ratio)
	default:
		root = sdktrace.AlwaysSample()
	}
	if s.ParentBased {
		return sdktrace.ParentBased(root)
	}
	return root
}

func TestSamplingAgreesWithKernelAndSDK(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, s := range []Sampling{DefaultSampling, {Root: AlwaysOff}, {Root: TraceIDRatio, Ratio: 0.3}, {Root: TraceIDRatio, ParentBased: true, Ratio: 0.7},
		{Root: TraceIDRatio, Ratio: 0}, {Root: TraceIDRatio, Ratio: 1}} {
		sampler := sdkSampler(s)
		for i := 0; i < 2000; i++ {
			var id trace.TraceID
			rng.Read(id[:])
			hasParent, parentSampled := i%3 != 0, i%2 == 0
			ctx := context.Background()
			span := &Span{TraceID: id}
			if hasParent {
				flags := trace.TraceFlags(0)
				if parentSampled {
					flags = trace.FlagsSampled
				}
				span.Parent = trace.NewSpanContext(trace.SpanContextConfig{TraceID: id, SpanID: trace.SpanID{1}, TraceFlags: flags, Remote: true})
				ctx = trace.ContextWithRemoteSpanContext(ctx, span.Parent)
			}
			sdk := sampler.ShouldSample(sdktrace.SamplingParameters{ParentContext: ctx, TraceID: id}).Decision == sdktrace.RecordAndSample
			k := kernelDecision(s, id, hasParent, parentSampled)
			if ours := s.sampled(span); sdk != k || ours != k {
				t.Fatalf("%+v, trace %s, parent %v sampled %v: SDK %v, kernel %v, pipeline %v", s, id, hasParent, parentSampled, sdk, k, ours)
			}
		}
	}
}

// OTEL_PROPAGATORS, names in any case: a list without tracecontext turns it off, as
// the SDK's, and says so unless it is "none".
func TestPropagatorsFromEnv(t *testing.T) {
	for _, c := range []struct {
		value            string
		traceContext, bg bool
		warned           bool
	}{
		{"", true, true, false}, {"tracecontext,baggage", true, true, false}, {"TraceContext, Baggage", true, true, false},
		{"tracecontext", true, false, false}, {"none", false, false, false}, {"tracecontext,none", false, false, false},
		{"baggage", false, true, true}, {"b3,tracecontext", true, false, true}, {"b3", false, false, true},
	} {
		e := &env{get: vars{"OTEL_PROPAGATORS": c.value}.get}
		tc, bg := e.propagators()
		if tc != c.traceContext || bg != c.bg || (len(e.warnings) > 0) != c.warned {
			t.Errorf("OTEL_PROPAGATORS=%q: tracecontext %v, baggage %v, warnings %q", c.value, tc, bg, e.warnings)
		}
	}
}
