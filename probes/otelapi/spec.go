// Package otelapi bridges the OpenTelemetry API of apps that configure no SDK: each
// span the app starts through go.opentelemetry.io/otel's global tracer becomes a span
// of ours - its name, kind, tracer's scope, attributes, status, error, name changes and
// end, as the app sets them - read from the app, never written to it. Its parent is
// the span its context carries (the request's server span, another API span); the
// calls the app makes with the context it returns (an HTTP call, a query) are its
// children. This file declares what the probe needs from a target binary.
package otelapi

import (
	"regexp"

	"github.com/otel-go-launcher/otel-go-launcher/offsets"
)

// Module is the instrumented module, and the oldest release supported: the first
// whose global tracer starts its spans in newSpan, kept out of line for probes.
const (
	Module     = "go.opentelemetry.io/otel"
	MinVersion = "v1.33.0"
)

// Functions the probe attaches to: the global tracer's newSpan, called only while no
// SDK is set (an app that sets one starts its spans there: nothing to bridge), and the
// methods of the span it returns, as the trace.Span interface reaches them: the
// compiler's pointer-receiver wrappers of nonRecordingSpan's value methods.
const (
	symNewSpan       = "go.opentelemetry.io/otel/internal/global.(*tracer).newSpan"
	symSpanEnd       = "go.opentelemetry.io/otel/internal/global.(*nonRecordingSpan).End"
	symSetAttributes = "go.opentelemetry.io/otel/internal/global.(*nonRecordingSpan).SetAttributes"
	symSetStatus     = "go.opentelemetry.io/otel/internal/global.(*nonRecordingSpan).SetStatus"
	symSetName       = "go.opentelemetry.io/otel/internal/global.(*nonRecordingSpan).SetName"
	symRecordError   = "go.opentelemetry.io/otel/internal/global.(*nonRecordingSpan).RecordError"
	symAddEvent      = "go.opentelemetry.io/otel/internal/global.(*nonRecordingSpan).AddEvent"
	symAddLink       = "go.opentelemetry.io/otel/internal/global.(*nonRecordingSpan).AddLink"
	specName         = "otelapi"
)

// Fields the program reads: the tracer's name and options (its scope), an
// attribute.KeyValue's parts (and, below, the span a context returned holds - its other
// data word - and the message of the commonest errors).
var (
	tracerName    = offsets.FieldRef{Struct: "go.opentelemetry.io/otel/internal/global.tracer", Field: "name"}
	tracerOpts    = offsets.FieldRef{Struct: "go.opentelemetry.io/otel/internal/global.tracer", Field: "opts"}
	keyValueValue = offsets.FieldRef{Struct: "go.opentelemetry.io/otel/attribute.KeyValue", Field: "Value"}
	valueType     = offsets.FieldRef{Struct: "go.opentelemetry.io/otel/attribute.Value", Field: "vtype"}
	valueNumeric  = offsets.FieldRef{Struct: "go.opentelemetry.io/otel/attribute.Value", Field: "numeric"}
	valueString   = offsets.FieldRef{Struct: "go.opentelemetry.io/otel/attribute.Value", Field: "stringly"}
	valueSlice    = offsets.FieldRef{Struct: "go.opentelemetry.io/otel/attribute.Value", Field: "slice"}
)

// Fields the program reads that the probe measures itself from the binary's type
// information (offsets.TypeInfoFieldOffsets: these types are converted to interfaces,
// stripped or not), by the C variable each sets. Not in the spec: the standard
// library's, whose fields there the offsets database would hold for every Go release;
// go.opentelemetry.io/otel/trace's, another module than the spec's, which the offsets
// tracker would measure as a module of its own.
var selfMeasured = map[offsets.FieldRef]string{
	{Struct: "context.valueCtx", Field: "val"}: "valuectx_val_off",  // the span, for the alias
	{Struct: "errors.errorString", Field: "s"}: "errorstring_s_off", // an error's message
	{Struct: "fmt.wrapError", Field: "msg"}:    "wraperror_msg_off",
	// WithLinks' links: each one's span context, and its size (Attributes is last).
	{Struct: "go.opentelemetry.io/otel/trace.Link", Field: "SpanContext"}:       "link_sc_off",
	{Struct: "go.opentelemetry.io/otel/trace.Link", Field: "Attributes"}:        "link_attrs_off",
	{Struct: "go.opentelemetry.io/otel/trace.SpanContext", Field: "traceID"}:    "sc_traceid_off",
	{Struct: "go.opentelemetry.io/otel/trace.SpanContext", Field: "spanID"}:     "sc_spanid_off",
	{Struct: "go.opentelemetry.io/otel/trace.SpanContext", Field: "traceFlags"}: "sc_flags_off",
	{Struct: "go.opentelemetry.io/otel/trace.SpanContext", Field: "remote"}:     "sc_remote_off",
}

// Types whose descriptors the program compares an interface's type word with: the
// context newSpan returns, and the errors whose message it reads (pointer types), and
// the start options that are no closures (ItabTypeAddrs' names).
const (
	valueCtxType    = "context.valueCtx"
	errorStringType = "errors.errorString"
	wrapErrorType   = "fmt.wrapError"
	attributeOption = "trace.attributeOption"
	timestampOption = "trace.timestampOption"
)

// Options that are closures, by their code's name wherever the compiler put it:
// trace.WithSpanKind's closure is "go.opentelemetry.io/otel/trace.WithSpanKind.func1",
// or "main.main.func1.WithSpanKind.1" where it was inlined.
var (
	kindOption    = regexp.MustCompile(`(^|\.)WithSpanKind\.(func)?[0-9]+$`)
	versionOption = regexp.MustCompile(`(^|\.)WithInstrumentationVersion\.(func)?[0-9]+$`)
	schemaOption  = regexp.MustCompile(`(^|\.)WithSchemaURL\.(func)?[0-9]+$`)
	newRootOption = regexp.MustCompile(`(^|\.)WithNewRoot\.(func)?[0-9]+$`)
	linksOption   = regexp.MustCompile(`(^|\.)WithLinks\.(func)?[0-9]+$`)
	closures      = regexp.MustCompile(`(^|\.)(WithSpanKind|WithNewRoot|WithLinks|WithInstrumentationVersion|WithSchemaURL)\.(func)?[0-9]+$`)
)

// trackerProgram reaches the functions and types the probe reads: the offsets tracker
// builds it with each otel release (it never runs).
const trackerProgram = `package main

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

func main() {
	tracer := otel.Tracer("t", trace.WithInstrumentationVersion("1"), trace.WithSchemaURL("s"))
	_, span := tracer.Start(context.Background(), "s", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("k", "v")))
	span.SetAttributes(attribute.Int("n", 1))
	span.SetStatus(codes.Error, "e")
	span.SetName("n")
	span.RecordError(errors.New("e"))
	span.RecordError(fmt.Errorf("w: %w", errors.New("e")))
	span.AddEvent("e")
	span.AddLink(trace.Link{SpanContext: span.SpanContext(), Attributes: []attribute.KeyValue{attribute.StringSlice("l", []string{"v"})}})
	span.End()
}
`

// Spec: newSpan's entry and RETs, and the span's methods' entries: three hits for a
// span started and ended, one per further call.
var Spec = offsets.Spec{
	Name:       specName,
	Module:     Module,
	MinVersion: MinVersion,
	Functions: []offsets.FuncSpec{
		{Symbols: []string{symNewSpan}, Returns: true},
		// The span's methods are the compiler's wrappers, with no stack check: their
		// probes go after the frame's set-up (FramedEntry), not on the first
		// instruction, where the overlapped start's hold goes.
		{Symbols: []string{symSpanEnd}, FramedEntry: true},
		{Symbols: []string{symSetAttributes}, Optional: true, FramedEntry: true},
		{Symbols: []string{symSetStatus}, Optional: true, FramedEntry: true},
		{Symbols: []string{symSetName}, Optional: true, FramedEntry: true},
		{Symbols: []string{symRecordError}, Optional: true, FramedEntry: true},
		{Symbols: []string{symAddEvent}, Optional: true, FramedEntry: true},
		{Symbols: []string{symAddLink}, Optional: true, FramedEntry: true},
	},
	Fields: []offsets.FieldSpec{
		{FieldRef: tracerName, Optional: true}, {FieldRef: tracerOpts, Optional: true},
		{FieldRef: keyValueValue, Optional: true}, {FieldRef: valueType, Optional: true},
		{FieldRef: valueNumeric, Optional: true}, {FieldRef: valueString, Optional: true},
		{FieldRef: valueSlice, Optional: true},
	},
	Program: trackerProgram,
}

// Specs are this package's probes.
var Specs = []offsets.Spec{Spec}
