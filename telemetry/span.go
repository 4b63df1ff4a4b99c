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
	// Scope is the instrumentation scope of the library whose probe made the span;
	// nil for the launcher's own (LauncherScope).
	Scope      *Scope
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
	// EndReason is why the span ended where no probe saw it end, "" for a span whose
	// end a probe saw: it is exported as the attribute EndReasonKey, and the span is
	// kept out of the request duration metrics (its duration is not the request's).
	EndReason EndReason
	// NoMetrics keeps the span out of the request metrics: a span the app made itself
	// (the OpenTelemetry API's), whose request a probe's span already measures.
	NoMetrics bool
	// Events are what happened during the span (the OpenTelemetry API's AddEvent and
	// RecordError), in order; the probes that make them bound their number.
	Events []Event
	// Links are the span's links, in order; the probes that make them bound their
	// number.
	Links []Link
	// DroppedAttributes, DroppedEvents and DroppedLinks count what the probe that made
	// the span could not keep (its bounds on what it reads, its memory): the exporter
	// adds them to what the span limits drop.
	DroppedAttributes, DroppedEvents, DroppedLinks int
}

// Link is a span's link to another span (the OpenTelemetry API's WithLinks).
type Link struct {
	SpanContext       trace.SpanContext
	Attributes        []attribute.KeyValue
	DroppedAttributes int // by the probe
}

// Event is a span's event: its name, when (CLOCK_MONOTONIC ns), its attributes.
type Event struct {
	Name              string
	Time              uint64
	Attributes        []attribute.KeyValue
	DroppedAttributes int // by the probe
}

// EndReason says why a span was ended by the launcher rather than by its probe.
type EndReason string

const (
	// EndAppExit: the span was still open when the app exited (a watch stream, a long
	// poll, a handler that never returned): it ends when the launcher saw the app exit.
	EndAppExit EndReason = "app_exit"
	// EndDetach: the span was open when the launcher detached its probes from an app
	// that had not exited: it ends then.
	EndDetach EndReason = "launcher_detach"
)

// EndReasonKey is the attribute a span ended by the launcher carries, whose value is
// its EndReason: otel_go_launcher.span.end_reason = app_exit. Namespaced after the
// project, as the semantic conventions ask of attributes they do not define.
const EndReasonKey = attribute.Key("otel_go_launcher.span.end_reason")
