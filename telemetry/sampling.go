package telemetry

import (
	"encoding/binary"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig"
)

// sampled is the decision for s, the kernel's and the SDK's: a parent's flag, or the
// root sampler's (TraceIDRatio as the SDK computes it, see RatioBound).
func sampled(s otelconfig.Sampling, sp *Span) bool {
	if s.ParentBased && sp.Parent.IsValid() {
		return sp.Parent.IsSampled()
	}
	switch s.Root {
	case otelconfig.AlwaysOff:
		return false
	case otelconfig.TraceIDRatio:
		return binary.BigEndian.Uint64(sp.TraceID[8:16])>>1 < s.RatioBound()
	}
	return true
}
