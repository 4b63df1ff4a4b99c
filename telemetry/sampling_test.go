package telemetry

import (
	"context"
	"encoding/binary"
	"math/rand"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig"
)

// kernelDecision is the rule the probes apply in the kernel (bpf/include/trace.h,
// sample()), written out again: the pipeline's decision, and the SDK's sampler of the
// same name, must agree with it on every trace ID and parent.
func kernelDecision(s otelconfig.Sampling, id trace.TraceID, hasParent, parentSampled bool) bool {
	if hasParent && s.ParentBased {
		return parentSampled
	}
	switch s.Root {
	case otelconfig.AlwaysOff:
		return false
	case otelconfig.TraceIDRatio:
		return binary.BigEndian.Uint64(id[8:])>>1 < s.RatioBound()
	}
	return true
}

// sdkSampler is the SDK's sampler of the same name.
func sdkSampler(s otelconfig.Sampling) sdktrace.Sampler {
	var root sdktrace.Sampler
	switch s.Root {
	case otelconfig.AlwaysOff:
		root = sdktrace.NeverSample()
	case otelconfig.TraceIDRatio:
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
	for _, s := range []otelconfig.Sampling{otelconfig.DefaultSampling, {Root: otelconfig.AlwaysOff}, {Root: otelconfig.TraceIDRatio, Ratio: 0.3}, {Root: otelconfig.TraceIDRatio, ParentBased: true, Ratio: 0.7},
		{Root: otelconfig.TraceIDRatio, Ratio: 0}, {Root: otelconfig.TraceIDRatio, Ratio: 1}} {
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
			if ours := sampled(s, span); sdk != k || ours != k {
				t.Fatalf("%+v, trace %s, parent %v sampled %v: SDK %v, kernel %v, pipeline %v", s, id, hasParent, parentSampled, sdk, k, ours)
			}
		}
	}
}
