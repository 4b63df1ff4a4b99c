package telemetry

import (
	"math"
	"strings"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig"
)

// The launcher writes OTLP protobuf itself, from the probes' spans to the bytes of an
// ExportTraceServiceRequest, with no span object or proto message in between: the
// SDK's way (a span, a ReadOnlySpan, a tracepb.Span, proto.Marshal) cost 20 µs of
// CPU a span (docs/benchmarks.md). The output is the SDK exporter's, byte for byte,
// for the same spans (TestEncodingMatchesSDK); the field numbers are those of
// opentelemetry/proto/trace/v1/trace.proto and common/v1/common.proto.
const (
	// ExportTraceServiceRequest, ResourceSpans, ScopeSpans
	fieldResourceSpans protowire.Number = 1
	fieldResource      protowire.Number = 1
	fieldScopeSpans    protowire.Number = 2
	fieldRSSchemaURL   protowire.Number = 3
	fieldScope         protowire.Number = 1
	fieldSpans         protowire.Number = 2
	fieldSSSchemaURL   protowire.Number = 3 // ScopeSpans.schema_url
	fieldResourceAttrs protowire.Number = 1 // Resource.attributes
	fieldScopeName     protowire.Number = 1 // InstrumentationScope.name
	fieldScopeVersion  protowire.Number = 2
	fieldKeyValueKey   protowire.Number = 1
	fieldKeyValueValue protowire.Number = 2
	fieldArrayValues   protowire.Number = 1 // ArrayValue.values, KeyValueList.values
	fieldStatusMessage protowire.Number = 2
	fieldStatusCode    protowire.Number = 3
	fieldTraceID       protowire.Number = 1 // Span
	fieldSpanID        protowire.Number = 2
	fieldTraceState    protowire.Number = 3
	fieldParentSpanID  protowire.Number = 4
	fieldName          protowire.Number = 5
	fieldKind          protowire.Number = 6
	fieldStartTime     protowire.Number = 7
	fieldEndTime       protowire.Number = 8
	fieldAttributes    protowire.Number = 9
	fieldDroppedAttrs  protowire.Number = 10
	fieldEvents        protowire.Number = 11 // Span.events
	fieldEventTime     protowire.Number = 1  // Span.Event.time_unix_nano
	fieldEventName     protowire.Number = 2
	fieldEventAttrs    protowire.Number = 3
	fieldEventDropped  protowire.Number = 4
	fieldDroppedEvents protowire.Number = 12
	fieldLinks         protowire.Number = 13 // Span.links
	fieldLinkTraceID   protowire.Number = 1  // Span.Link.trace_id
	fieldLinkSpanID    protowire.Number = 2
	fieldLinkAttrs     protowire.Number = 4
	fieldLinkDropped   protowire.Number = 5
	fieldLinkFlags     protowire.Number = 6
	fieldDroppedLinks  protowire.Number = 14
	fieldStatus        protowire.Number = 15
	fieldFlags         protowire.Number = 16
	anyString          protowire.Number = 1 // AnyValue's oneof
	anyBool            protowire.Number = 2
	anyInt             protowire.Number = 3
	anyDouble          protowire.Number = 4
	anyArray           protowire.Number = 5
	anyKvlist          protowire.Number = 6
	anyBytes           protowire.Number = 7
	flagHasIsRemote    uint32           = 0x100 // SpanFlags: whether the parent is remote is known
	flagIsRemote       uint32           = 0x200
)

// encoder writes the spans of one app (its resource).
type encoder struct {
	clock  *Clock
	limits otelconfig.Limits // on each span's attributes; none unless the pipeline sets them
	// resource is ResourceSpans.resource, a whole field; tail is
	// ResourceSpans.schema_url, after the scope spans.
	resource, tail []byte
}

func newEncoder(res *resource.Resource, clock *Clock) *encoder {
	e := &encoder{clock: clock, limits: otelconfig.NoLimits}
	var body []byte
	for it := res.Iter(); it.Next(); {
		body = appendKeyValue(body, fieldResourceAttrs, it.Attribute())
	}
	e.resource = protowire.AppendTag(nil, fieldResource, protowire.BytesType)
	e.resource = protowire.AppendBytes(e.resource, body)
	e.tail = appendStringField(nil, fieldRSSchemaURL, res.SchemaURL())
	return e
}

// batch is the encoded spans of one export, by scope.
type batch struct {
	scopes []scopeSpans // the scopes of its spans, in the order their first span came
	spans  int
}

// scopeSpans are the spans of one scope, as ScopeSpans.spans fields.
type scopeSpans struct {
	scope *Scope
	spans []byte
}

// scopeBytes is the room a batch's first scope starts with: the spans of the
// commonest app, of one or two libraries, grow little.
const scopeBytes = 16 << 10

// add appends an encoded span of its scope's. A batch holds a few scopes: a scan
// finds the span's, as fast as a map's lookup would be.
func (b *batch) add(s scopedSpan) {
	scope, span := s.scope, s.span
	b.spans++
	for i := range b.scopes {
		if s := &b.scopes[i]; s.scope == scope {
			s.spans = append(s.spans, span...)
			return
		}
	}
	if n := len(b.scopes); n < cap(b.scopes) { // a buffer a reset kept
		b.scopes = b.scopes[:n+1]
		s := &b.scopes[n]
		s.scope, s.spans = scope, append(s.spans[:0], span...)
		return
	}
	b.scopes = append(b.scopes, scopeSpans{scope, append(make([]byte, 0, max(scopeBytes, len(span))), span...)})
}

func (b *batch) len() int { return b.spans }

// reset empties b, keeping its buffers for the next batch.
func (b *batch) reset() {
	for i := range b.scopes {
		b.scopes[i].scope = nil
	}
	b.scopes, b.spans = b.scopes[:0], 0
}

// request appends the ExportTraceServiceRequest of batch b to dst: one ResourceSpans,
// and in it one ScopeSpans per scope, in the order of the scopes' first spans, as the
// SDK's exporter groups them.
func (e *encoder) request(dst []byte, b *batch) []byte {
	resourceSpans := len(e.resource) + len(e.tail)
	for _, s := range b.scopes {
		n := len(s.scope.head) + len(s.spans) + len(s.scope.tail)
		resourceSpans += 1 + protowire.SizeVarint(uint64(n)) + n
	}
	dst = protowire.AppendTag(dst, fieldResourceSpans, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(resourceSpans))
	dst = append(dst, e.resource...)
	for _, s := range b.scopes {
		dst = protowire.AppendTag(dst, fieldScopeSpans, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(len(s.scope.head)+len(s.spans)+len(s.scope.tail)))
		dst = append(dst, s.scope.head...)
		dst = append(dst, s.spans...)
		dst = append(dst, s.scope.tail...)
	}
	return append(dst, e.tail...)
}

// appendSpan appends s as a ScopeSpans.spans field. flags are its trace flags (the
// sampled bit set).
func (e *encoder) appendSpan(b []byte, s *Span, flags trace.TraceFlags) []byte {
	b, mark := beginMessage(b, fieldSpans)
	b = appendBytesField(b, fieldTraceID, s.TraceID[:])
	b = appendBytesField(b, fieldSpanID, s.SpanID[:])
	spanFlags := uint32(flags) | flagHasIsRemote
	if s.Parent.IsValid() {
		if ts := s.Parent.TraceState(); ts.Len() > 0 {
			b = appendStringField(b, fieldTraceState, ts.String())
		}
		id := s.Parent.SpanID()
		b = appendBytesField(b, fieldParentSpanID, id[:])
		if s.Parent.IsRemote() {
			spanFlags |= flagIsRemote
		}
	}
	b = appendStringField(b, fieldName, s.Name)
	b = protowire.AppendTag(b, fieldKind, protowire.VarintType)
	b = protowire.AppendVarint(b, spanKind(s.Kind))
	b = appendFixed64Field(b, fieldStartTime, e.unixNano(s.Start))
	b = appendFixed64Field(b, fieldEndTime, e.unixNano(s.End))
	// The probes give each key once (their tests say so), as the SDK would keep it. As
	// the SDK's span limits: an invalid attribute is dropped; past the count limit, the
	// others are, the reason's too; a value is cut to the length limit.
	dropped, kept, count, length := uint64(s.DroppedAttributes), 0, e.limits.AttributeCount, e.limits.AttributeValueLength
	for _, kv := range s.Attributes {
		if !kv.Valid() || count >= 0 && kept >= count {
			dropped++
			continue
		}
		kept++
		b = appendLimitedKeyValue(b, fieldAttributes, kv, length)
	}
	if s.EndReason != "" {
		if count >= 0 && kept >= count {
			dropped++
		} else {
			b = appendLimitedKeyValue(b, fieldAttributes, EndReasonKey.String(string(s.EndReason)), length)
		}
	}
	b = appendCount(b, fieldDroppedAttrs, int(dropped))
	// As the SDK's evicted queues: the latest events and links are kept, the others
	// counted. It cuts the span's attribute values only, not its events' and links'.
	events, droppedEvents := latest(s.Events, e.limits.EventCount)
	for _, ev := range events {
		b = e.appendEvent(b, &ev, e.limits.EventAttributeCount)
	}
	b = appendCount(b, fieldDroppedEvents, droppedEvents+s.DroppedEvents)
	links, droppedLinks := latest(s.Links, e.limits.LinkCount)
	for _, l := range links {
		b = appendLink(b, &l, e.limits.LinkAttributeCount)
	}
	b = appendCount(b, fieldDroppedLinks, droppedLinks+s.DroppedLinks)
	b, status := beginMessage(b, fieldStatus)
	switch s.Status {
	case codes.Error: // the SDK keeps a description only for an error
		b = appendStringField(b, fieldStatusMessage, s.StatusDescription)
		b = protowire.AppendTag(b, fieldStatusCode, protowire.VarintType)
		b = protowire.AppendVarint(b, 2) // STATUS_CODE_ERROR
	case codes.Ok:
		b = protowire.AppendTag(b, fieldStatusCode, protowire.VarintType)
		b = protowire.AppendVarint(b, 1) // STATUS_CODE_OK
	}
	b = endMessage(b, status)
	b = protowire.AppendTag(b, fieldFlags, protowire.Fixed32Type)
	b = protowire.AppendFixed32(b, spanFlags)
	return endMessage(b, mark)
}

// appendEvent appends ev as a Span.events field: its first count attributes (all for a
// negative count), the others counted, as the SDK's (appendAttributes).
func (e *encoder) appendEvent(b []byte, ev *Event, count int) []byte {
	b, mark := beginMessage(b, fieldEvents)
	b = appendFixed64Field(b, fieldEventTime, e.unixNano(ev.Time))
	b = appendStringField(b, fieldEventName, ev.Name)
	b, dropped := appendAttributes(b, fieldEventAttrs, ev.Attributes, count)
	b = appendCount(b, fieldEventDropped, dropped+ev.DroppedAttributes)
	return endMessage(b, mark)
}

// appendLink appends l as a Span.links field, as the SDK's exporter writes it: its IDs,
// first count attributes (the others counted) and flags (the sampled bit, and
// whether the linked span is remote) - not its tracestate, which the SDK's exporter
// leaves out.
func appendLink(b []byte, l *Link, count int) []byte {
	b, mark := beginMessage(b, fieldLinks)
	tid, sid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
	b = appendBytesField(b, fieldLinkTraceID, tid[:])
	b = appendBytesField(b, fieldLinkSpanID, sid[:])
	b, dropped := appendAttributes(b, fieldLinkAttrs, l.Attributes, count)
	b = appendCount(b, fieldLinkDropped, dropped+l.DroppedAttributes)
	flags := uint32(l.SpanContext.TraceFlags()) | flagHasIsRemote
	if l.SpanContext.IsRemote() {
		flags |= flagIsRemote
	}
	b = protowire.AppendTag(b, fieldLinkFlags, protowire.Fixed32Type)
	b = protowire.AppendFixed32(b, flags)
	return endMessage(b, mark)
}

// appendAttributes appends an event's or a link's attributes: the first count (all
// for a negative count), those beyond dropped as the SDK drops them before its
// exporter sees them; an invalid one among those kept is left out by the exporter,
// not counted.
func appendAttributes(b []byte, num protowire.Number, attrs []attribute.KeyValue, count int) ([]byte, int) {
	dropped := 0
	if count >= 0 && len(attrs) > count {
		dropped = len(attrs) - count
		attrs = attrs[:count]
	}
	for _, kv := range attrs {
		if kv.Valid() {
			b = appendLimitedKeyValue(b, num, kv, -1)
		}
	}
	return b, dropped
}

// latest are the last limit of all (all of them for a negative limit), and how many
// were left out.
func latest[T any](all []T, limit int) ([]T, int) {
	if limit < 0 || len(all) <= limit {
		return all, 0
	}
	return all[len(all)-limit:], len(all) - limit
}

// appendCount appends a dropped count, if any (proto3 leaves out a zero).
func appendCount(b []byte, num protowire.Number, n int) []byte {
	if n <= 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(n))
}

func (e *encoder) unixNano(mono uint64) uint64 {
	return uint64(max(0, e.clock.Wall(mono).UnixNano()))
}

// spanKind is the proto enum's value, the same numbering (internal 1 to consumer 5);
// none is internal, as the SDK makes it.
func spanKind(k trace.SpanKind) uint64 {
	if k >= trace.SpanKindInternal && k <= trace.SpanKindConsumer {
		return uint64(k)
	}
	return uint64(trace.SpanKindInternal)
}

func appendKeyValue(b []byte, num protowire.Number, kv attribute.KeyValue) []byte {
	return appendLimitedKeyValue(b, num, kv, -1)
}

// appendLimitedKeyValue writes kv, its value cut to limit (truncated) unless negative.
func appendLimitedKeyValue(b []byte, num protowire.Number, kv attribute.KeyValue, limit int) []byte {
	b, mark := beginMessage(b, num)
	b = appendStringField(b, fieldKeyValueKey, string(kv.Key))
	b = appendAnyValue(b, fieldKeyValueValue, kv.Value, limit)
	return endMessage(b, mark)
}

// appendAnyValue writes v as the SDK's exporter converts it, its strings cut to limit
// characters and its bytes to limit bytes (truncated) unless limit is negative, as the
// SDK's span limits cut them, in slices and maps too.
func appendAnyValue(b []byte, num protowire.Number, v attribute.Value, limit int) []byte {
	b, mark := beginMessage(b, num)
	switch v.Type() {
	case attribute.STRING:
		b = protowire.AppendTag(b, anyString, protowire.BytesType)
		b = protowire.AppendString(b, truncated(v.AsString(), limit))
	case attribute.INT64:
		b = protowire.AppendTag(b, anyInt, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(v.AsInt64()))
	case attribute.BOOL:
		b = protowire.AppendTag(b, anyBool, protowire.VarintType)
		b = protowire.AppendVarint(b, protowire.EncodeBool(v.AsBool()))
	case attribute.FLOAT64:
		b = protowire.AppendTag(b, anyDouble, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(v.AsFloat64()))
	case attribute.BYTESLICE:
		bs := v.AsByteSlice()
		if limit >= 0 && len(bs) > limit {
			bs = bs[:limit]
		}
		b = protowire.AppendTag(b, anyBytes, protowire.BytesType)
		b = protowire.AppendBytes(b, bs)
	case attribute.STRINGSLICE:
		b = appendArray(b, v.AsStringSlice(), attribute.StringValue, limit)
	case attribute.INT64SLICE:
		b = appendArray(b, v.AsInt64Slice(), attribute.Int64Value, limit)
	case attribute.BOOLSLICE:
		b = appendArray(b, v.AsBoolSlice(), attribute.BoolValue, limit)
	case attribute.FLOAT64SLICE:
		b = appendArray(b, v.AsFloat64Slice(), attribute.Float64Value, limit)
	case attribute.SLICE:
		b = appendArray(b, v.AsSlice(), func(v attribute.Value) attribute.Value { return v }, limit)
	case attribute.MAP:
		b, list := beginMessage(b, anyKvlist)
		for _, kv := range v.AsMap() {
			b = appendLimitedKeyValue(b, fieldArrayValues, kv, limit)
		}
		return endMessage(endMessage(b, list), mark)
	case attribute.EMPTY: // an AnyValue with no value
	default: // as the SDK's exporter says a type it does not know
		b = protowire.AppendTag(b, anyString, protowire.BytesType)
		b = protowire.AppendString(b, "INVALID")
	}
	return endMessage(b, mark)
}

func appendArray[T any](b []byte, vs []T, value func(T) attribute.Value, limit int) []byte {
	b, mark := beginMessage(b, anyArray)
	for _, v := range vs {
		b = appendAnyValue(b, fieldArrayValues, value(v), limit)
	}
	return endMessage(b, mark)
}

// truncated is s cut to limit characters as the SDK's span limits cut a value: one of
// at most limit bytes is left as it is (it cannot hold more characters); a longer one
// keeps its first limit characters, and loses its bytes that are not UTF-8 on the way
// (a cut must not split a character, nor count a broken one). A negative limit is none.
func truncated(s string, limit int) string {
	if limit < 0 || len(s) <= limit {
		return s
	}
	chars := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return validPrefix(s, i, chars, limit)
		}
		if chars == limit {
			return s[:i]
		}
		chars++
		i += size
	}
	return s
}

// validPrefix is truncated's slow path, for s with a byte that is not UTF-8 at i: s[:i]
// (chars characters), then the characters after it up to limit, without such bytes.
func validPrefix(s string, i, chars, limit int) string {
	var out strings.Builder
	out.Grow(len(s) - 1)
	out.WriteString(s[:i])
	for i < len(s) && chars < limit {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r != utf8.RuneError || size > 1 {
			out.WriteString(s[i : i+size])
			chars++
		}
		i += size
	}
	return out.String()
}

// beginMessage starts an embedded message field whose length is not known yet:
// endMessage writes it. One byte is kept for it, enough for most attributes; a longer
// message is moved up to make room.
func beginMessage(b []byte, num protowire.Number) ([]byte, int) {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return append(b, 0), len(b)
}

const binaryVarintMax = 5 // a length below 4 GiB

func endMessage(b []byte, mark int) []byte {
	n := len(b) - mark - 1
	if n < 0x80 {
		b[mark] = byte(n)
		return b
	}
	size := protowire.SizeVarint(uint64(n))
	var room [binaryVarintMax]byte
	b = append(b, room[:size-1]...)
	copy(b[mark+size:], b[mark+1:mark+1+n])
	protowire.AppendVarint(b[mark:mark], uint64(n))
	return b
}

func appendStringField(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b // proto3: a zero value is not written
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytesField(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendFixed64Field(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, v)
}
