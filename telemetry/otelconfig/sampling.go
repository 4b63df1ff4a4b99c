package otelconfig

import (
	"strconv"
	"strings"
)

// Sampling is the sampler OTEL_TRACES_SAMPLER[_ARG] choose. The probes decide it in
// the kernel, where the sampled flag of an outgoing traceparent must be known before
// the request leaves; the pipeline's SDK sampler is built from the same value, so that
// both always decide alike.
type Sampling struct {
	Root        SamplingRoot // for spans without a parent; for all when !ParentBased
	ParentBased bool         // a parent's sampled flag decides for its children
	Ratio       float64      // TraceIDRatio's fraction, in [0, 1]
}

// SamplingRoot is the sampler for spans without a parent.
type SamplingRoot int

const (
	AlwaysOn SamplingRoot = iota
	AlwaysOff
	TraceIDRatio
)

// DefaultSampling is parentbased_always_on, the specification's default.
var DefaultSampling = Sampling{Root: AlwaysOn, ParentBased: true, Ratio: 1}

// sampling reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG. As the specification
// asks, a value it does not support is warned about and replaced by the default, not
// fatal.
func (e *env) sampling() Sampling {
	name := strings.ToLower(strings.TrimSpace(e.get("OTEL_TRACES_SAMPLER")))
	s := DefaultSampling
	switch name {
	case "", "parentbased_always_on":
	case "always_on":
		s.ParentBased = false
	case "always_off":
		s = Sampling{Root: AlwaysOff}
	case "parentbased_always_off":
		s.Root = AlwaysOff
	case "traceidratio", "parentbased_traceidratio":
		s = Sampling{Root: TraceIDRatio, ParentBased: name != "traceidratio", Ratio: e.samplerRatio()}
	default:
		e.warn("OTEL_TRACES_SAMPLER=%s is not supported (always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio): using parentbased_always_on", name)
	}
	return s
}

func (e *env) samplerRatio() float64 {
	arg := strings.TrimSpace(e.get("OTEL_TRACES_SAMPLER_ARG"))
	if arg == "" {
		return 1
	}
	r, err := strconv.ParseFloat(arg, 64)
	if err != nil || r < 0 || r > 1 {
		e.warn("OTEL_TRACES_SAMPLER_ARG=%s: want a ratio from 0 to 1: using 1", arg)
		return 1
	}
	return r
}

// RatioBound is TraceIDRatio's threshold as the SDK computes it: a trace is sampled when
// the last 8 bytes of its ID, big-endian and shifted right by one, are below it.
func (s Sampling) RatioBound() uint64 {
	if s.Ratio >= 1 {
		return 1 << 63
	}
	return uint64(s.Ratio * (1 << 63))
}

// propagators reads OTEL_PROPAGATORS (names in any case): whether it asks for W3C
// trace context (the default), by which incoming traceparents are joined and outgoing
// requests carry one, and for W3C baggage (in the default too). The launcher carries
// no baggage itself: an app's own baggage header passes untouched, which doctor and the
// README say. A list without tracecontext turns it off, as it does the SDK's
// propagation; that is said, unless the list has "none", which asks for exactly that.
func (e *env) propagators() (traceContext, baggage bool) {
	v := strings.TrimSpace(e.get("OTEL_PROPAGATORS"))
	if v == "" {
		return true, true
	}
	none := false
	var unsupported []string
	for _, p := range strings.Split(v, ",") {
		switch p = strings.ToLower(strings.TrimSpace(p)); p {
		case "tracecontext":
			traceContext = true
		case "baggage":
			baggage = true
		case "none":
			none = true
		case "":
		default:
			unsupported = append(unsupported, p)
		}
	}
	if len(unsupported) > 0 {
		e.warn("OTEL_PROPAGATORS=%s: %s not supported (tracecontext, baggage, none): left out", v, strings.Join(unsupported, ", "))
	}
	if none {
		// As the SDK's autoprop: "none" anywhere in the list means no propagator.
		return false, false
	}
	if !traceContext {
		e.warn("OTEL_PROPAGATORS=%s has no tracecontext: incoming traceparents are not joined and outgoing requests get none; add tracecontext to the list to join traces across services", v)
	}
	return traceContext, baggage
}
