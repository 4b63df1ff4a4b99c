package telemetry

import (
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Span is one span as a probe saw it in the kernel: its IDs were chosen there, its
// times are CLOCK_MONOTONIC nanoseconds. The pipeline keeps nothing of a Span once
// Emit returns (it encodes it), so a decoder reuses one, and its Attributes' storage.
type Span struct {
	TraceID    trace.TraceID
	SpanID     trace.SpanID
	Parent     trace.SpanContext // remote parent; invalid for a root span
	Kind       trace.SpanKind
	Name       string
	Start, End uint64
	Attributes []attribute.KeyValue
	Status     codes.Code
	// StatusDescription says why, for an Error status (the SDK drops it otherwise).
	StatusDescription string
}
