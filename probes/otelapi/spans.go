package otelapi

import (
	"encoding/binary"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
	"unsafe"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sys/unix"

	"github.com/otel-go-launcher/otel-go-launcher/probes/kit"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// Record kinds (the C program's EVENT_*).
const (
	eventTracer     = 1
	eventStart      = 2
	eventAttributes = 3
	eventStatus     = 4
	eventName       = 5
	eventError      = 6
	eventEvent      = 7
	eventEnd        = 8
	eventLink       = 9
)

// attribute.Type values the C program reads (their numbers in every release).
const (
	typeBool         = 1
	typeInt64        = 2
	typeFloat64      = 3
	typeString       = 4
	typeBoolSlice    = 5
	typeInt64Slice   = 6
	typeFloat64Slice = 7
	typeStringSlice  = 8
	typeByteSlice    = 9
)

// stringsMax and stringSlot are the C program's STRINGS_MAX and STRING_SLOT: a string
// slice's elements read, each in its slot of the value.
const (
	stringsMax = 4
	stringSlot = 128 / stringsMax
)

// Bounds of the spans assembled in userspace: spans started and not yet ended (a span
// never ended leaves, the oldest first, counted: as the C program's map, 16384), and
// the attributes, events and links one keeps (the latest events and links, the others
// counted as dropped) - the exporter applies the configured limits to these, as the
// SDK does (OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT, OTEL_SPAN_EVENT_COUNT_LIMIT,
// OTEL_SPAN_LINK_COUNT_LIMIT, 128 each by default).
const (
	maxPending    = 16384
	maxAttributes = 1024
	maxEvents     = 1024
	maxLinks      = 1024
)

// assembly holds the spans being assembled from their records, by key (the span's
// data word in the app), and the scopes of the tracers seen.
type assembly struct {
	mu      sync.Mutex // decode, and EndInFlight at exit
	max     int
	pending map[uint64]*telemetry.Span
	order   []uint64 // keys by start, for evicting the oldest
	scopes  map[uint64]*telemetry.Scope
	// registered are the contexts the pending spans are registered for (their
	// children's parent), by span key: the sweep checks they still hold the span.
	registered map[uint64]registration
	// tracerOf is each pending span's tracer: its scope is taken at the span's end,
	// the latest its tracer's records gave (a position-independent app's first
	// spans may come before the addresses its options are told apart by).
	tracerOf map[uint64]uint64
	// Evicted counts the spans never ended that left for newer ones.
	Evicted int
	// swept counts the registrations the sweep removed.
	swept atomic.Int64
}

// registration is the context a span returned, registered in inflight_contexts.
type registration struct {
	ctx    uint64 // the *context.valueCtx
	holds  uint64 // the data word of the span it holds in val: the span's alias, or key
	spanID [8]byte
	since  time.Time
}

func newAssembly(max int) *assembly {
	return &assembly{max: max, pending: map[uint64]*telemetry.Span{}, scopes: map[uint64]*telemetry.Scope{},
		registered: map[uint64]registration{}, tracerOf: map[uint64]uint64{}}
}

// decode handles one record; it fills span, and returns true, when a span ended.
func (p *Probe) decode(raw []byte, span *telemetry.Span) bool {
	ev := kit.RecordPrefixAs(raw, &p.event, int(unsafe.Offsetof(p.event.Attrs)))
	if ev == nil {
		return false
	}
	return p.spans.apply(ev, span, p.typeNames.NameAtLink)
}

// apply handles one record (decode), typeName naming an error's dynamic type.
func (a *assembly) apply(ev *otelapiApiEvent, out *telemetry.Span, typeName func(uint64) string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ev.Kind == eventTracer {
		a.scopes[ev.Key] = tracerScope(ev)
		return false
	}
	if ev.Kind == eventStart {
		a.start(ev)
		return false
	}
	s := a.pending[ev.Key]
	if s == nil {
		return false // started before a record was lost, or evicted
	}
	switch ev.Kind {
	case eventAttributes:
		var dropped int
		s.Attributes, dropped = setAttributes(s.Attributes, ev)
		s.DroppedAttributes += dropped
	case eventStatus:
		setStatus(s, codes.Code(ev.Code), text(ev))
	case eventName:
		if name := text(ev); name != "" {
			s.Name = name
		}
	case eventError:
		// As the SDK records an error: an "exception" event, its type and message.
		var attrs []attribute.KeyValue
		if t := typeName(ev.ErrorType); t != "" {
			attrs = append(attrs, semconv.ExceptionType(t))
		}
		if msg := text(ev); msg != "" {
			attrs = append(attrs, semconv.ExceptionMessage(msg))
		}
		addEvent(s, telemetry.Event{Name: semconv.ExceptionEventName, Time: ev.TimeNs, Attributes: attrs})
	case eventEvent:
		e := telemetry.Event{Name: text(ev), Time: eventTime(ev)}
		e.Attributes, e.DroppedAttributes = setAttributes(nil, ev)
		addEvent(s, e)
	case eventLink:
		for _, l := range links(ev) {
			l.Attributes, l.DroppedAttributes = setAttributes(nil, ev)
			addLink(s, l)
		}
	case eventEnd:
		if sc := a.scopes[a.tracerOf[ev.Key]]; sc != nil {
			s.Scope = sc
		}
		*out = *s
		out.End = max(eventTime(ev), s.Start)
		a.remove(ev.Key)
		return true
	}
	return false
}

// start begins the span of a START record.
func (a *assembly) start(ev *otelapiApiEvent) {
	if _, ok := a.pending[ev.Key]; ok {
		// The app's memory of a span never ended now holds a new one.
		a.remove(ev.Key)
		a.Evicted++
	}
	for len(a.pending) >= a.max && len(a.order) > 0 {
		oldest := a.order[0]
		a.order = a.order[1:]
		if _, ok := a.pending[oldest]; ok {
			a.remove(oldest)
			a.Evicted++
		}
	}
	sc := a.scopes[ev.Tracer]
	if sc == nil {
		sc = scope
	}
	s := &telemetry.Span{
		Scope:   sc,
		TraceID: ev.Sc.TraceId,
		SpanID:  ev.Sc.SpanId,
		Kind:    spanKind(ev.SpanKind),
		Name:    text(ev),
		Start:   eventTime(ev),
		Parent:  kit.ClientParent(ev.HasParent, ev.Sc.TraceId, ev.ParentSpanId, ev.Flags),
		// The app's names, whatever their attributes say: an otelhttp server span, an
		// API span around a call, measure a request a probe's span already does.
		NoMetrics: true,
	}
	s.Attributes, s.DroppedAttributes = setAttributes(nil, ev)
	s.Links = links(ev)
	s.DroppedLinks = int(ev.LinksTotal) - int(ev.LinksRead)
	a.pending[ev.Key] = s
	a.tracerOf[ev.Key] = ev.Tracer
	if ev.Ctx != 0 {
		holds := ev.Alias
		if holds == 0 {
			holds = ev.Key
		}
		a.registered[ev.Key] = registration{ctx: ev.Ctx, holds: holds, spanID: ev.Sc.SpanId, since: time.Now()}
	}
	a.order = append(a.order, ev.Key)
	if len(a.order) > 2*a.max { // keys of spans ended since: compact
		kept := a.order[:0]
		for _, k := range a.order {
			if _, ok := a.pending[k]; ok {
				kept = append(kept, k)
			}
		}
		a.order = kept
	}
}

func (a *assembly) remove(key uint64) {
	delete(a.pending, key)
	delete(a.registered, key)
	delete(a.tracerOf, key)
}

// stale returns, and forgets, the registrations older than before whose context no
// longer holds their span (holds reads the word it should be): the app dropped the
// context of a span not yet ended - never, perhaps - and the memory now holds another
// value, maybe another context, which would find the span as its parent. The span
// itself stays pending, for its End.
func (a *assembly) stale(before time.Time, holds func(r registration) bool) []registration {
	a.mu.Lock()
	var old []registration
	for _, r := range a.registered {
		if r.since.Before(before) {
			old = append(old, r)
		}
	}
	a.mu.Unlock()
	// Read without the lock: decode goes on meanwhile.
	var gone []registration
	for _, r := range old {
		if !holds(r) {
			gone = append(gone, r)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	isGone := map[registration]bool{}
	for _, g := range gone {
		isGone[g] = true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for key, r := range a.registered {
		if isGone[r] {
			delete(a.registered, key)
		}
	}
	return gone
}

// endAll ends every span still assembled at end, marked with why (EndInFlight).
func (a *assembly) endAll(end uint64, why telemetry.EndReason, emit func(*telemetry.Span)) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for key, s := range a.pending {
		s.End = max(end, s.Start)
		s.EndReason = why
		emit(s)
		delete(a.pending, key)
		n++
	}
	a.order = nil
	clear(a.registered)
	clear(a.tracerOf)
	return n
}

// links are the record's links (WithLinks at the start), those with a valid span
// context: the API drops the others.
func links(ev *otelapiApiEvent) []telemetry.Link {
	var out []telemetry.Link
	for i := range min(int(ev.LinksRead), len(ev.Links)) {
		l := &ev.Links[i]
		sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: l.TraceId, SpanID: l.SpanId,
			TraceFlags: trace.TraceFlags(l.Flags), Remote: l.Remote != 0})
		if sc.IsValid() {
			out = append(out, telemetry.Link{SpanContext: sc})
		}
	}
	return out
}

// addEvent adds ev to s, keeping at least the latest maxEvents (the exporter keeps the
// latest of those its limit allows, as the SDK's evicted queue does); the oldest leave
// in one go when twice as many have come, counted: no copy per event.
func addEvent(s *telemetry.Span, ev telemetry.Event) {
	var dropped int
	s.Events, dropped = appendLatest(s.Events, ev, maxEvents)
	s.DroppedEvents += dropped
}

// addLink adds l to s, as addEvent an event.
func addLink(s *telemetry.Span, l telemetry.Link) {
	var dropped int
	s.Links, dropped = appendLatest(s.Links, l, maxLinks)
	s.DroppedLinks += dropped
}

// appendLatest appends v to all and, once all holds 2×keep, keeps its latest keep,
// returning how many it left out.
func appendLatest[T any](all []T, v T, keep int) ([]T, int) {
	all = append(all, v)
	if len(all) < 2*keep {
		return all, 0
	}
	n := copy(all, all[len(all)-keep:])
	clear(all[n:])
	return all[:n], len(all) - n
}

// eventTime is when the record says its call happened: the time a WithTimestamp
// option gave, else when the probe ran (CLOCK_MONOTONIC ns).
func eventTime(ev *otelapiApiEvent) uint64 {
	if ev.HasTime == 0 {
		return ev.TimeNs
	}
	unixNs, ok := goTime(ev.TimeWall, ev.TimeExt)
	if !ok {
		return ev.TimeNs
	}
	// The same instant on CLOCK_MONOTONIC: now on both clocks, apart as the app's.
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) != nil {
		return ev.TimeNs
	}
	mono := ts.Nano() + (unixNs - time.Now().UnixNano())
	if mono <= 0 {
		return ev.TimeNs
	}
	return uint64(mono)
}

// goTime is the Unix time in ns of a time.Time's wall and ext words, read as package
// time reads them (its layout since Go 1.9): with the monotonic bit, wall holds
// seconds since 1885 and the nanoseconds; without, ext holds seconds since year 1.
func goTime(wall uint64, ext int64) (int64, bool) {
	const (
		hasMonotonic   = 1 << 63
		nsecMask       = 1<<30 - 1
		nsecShift      = 30
		secondsPerDay  = 86400
		wallToInternal = (1884*365 + 1884/4 - 1884/100 + 1884/400) * secondsPerDay
		unixToInternal = (1969*365 + 1969/4 - 1969/100 + 1969/400) * secondsPerDay
	)
	sec := ext
	if wall&hasMonotonic != 0 {
		sec = wallToInternal + int64(wall<<1>>(nsecShift+1))
	}
	unixSec := sec - unixToInternal
	if unixSec <= 0 || unixSec > math.MaxInt64/int64(time.Second)-1 {
		return 0, false // before 1970, or beyond int64 nanoseconds: not a span's time
	}
	return unixSec*1e9 + int64(wall&nsecMask), true
}

// spanKind is the trace.SpanKind the app gave (WithSpanKind), internal by default as
// the SDK's: an out-of-range value is internal too.
func spanKind(k uint8) trace.SpanKind {
	if k < uint8(trace.SpanKindInternal) || k > uint8(trace.SpanKindConsumer) {
		return trace.SpanKindInternal
	}
	return trace.SpanKind(k)
}

// setStatus sets the status as the SDK does: Ok is final, Unset changes nothing, and
// a description is kept for Error only.
func setStatus(s *telemetry.Span, code codes.Code, description string) {
	if s.Status == codes.Ok || code == codes.Unset || code > codes.Ok {
		return
	}
	s.Status = code
	s.StatusDescription = ""
	if code == codes.Error {
		s.StatusDescription = description
	}
}

// text is the record's text, if valid UTF-8 (a string cut in a character is cut
// before it).
func text(ev *otelapiApiEvent) string {
	return validPrefix(ev.Text[:min(int(ev.TextLen), len(ev.Text))])
}

// tracerScope is the scope of a TRACER record's tracer: its name, version and schema
// URL.
func tracerScope(ev *otelapiApiEvent) *telemetry.Scope {
	value := func(i int) string {
		a := &ev.Attrs[i]
		return string(a.Value[:min(int(a.ValueLen), len(a.Value))])
	}
	return telemetry.NewScopeOf(text(ev), value(0), value(1))
}

// setAttributes sets the record's attributes on attrs, as the SDK's SetAttributes
// does: a key set again takes the new value, in its first place; an invalid one is
// dropped. It returns how many were dropped: those, a type not read, those past the C
// program's bounds or maxAttributes.
func setAttributes(attrs []attribute.KeyValue, ev *otelapiApiEvent) ([]attribute.KeyValue, int) {
	n := min(int(ev.AttrsRead), len(ev.Attrs))
	dropped := max(0, int(ev.AttrsTotal)-n)
	kvs := make([]attribute.KeyValue, 0, n)
	for i := range n {
		if kv, ok := keyValue(&ev.Attrs[i]); ok {
			kvs = append(kvs, kv)
		} else {
			dropped++
		}
	}
	attrs, over := setKeyValues(attrs, kvs...)
	return attrs, dropped + over
}

func setKeyValues(attrs []attribute.KeyValue, kvs ...attribute.KeyValue) ([]attribute.KeyValue, int) {
	over := 0
next:
	for _, kv := range kvs {
		for i := range attrs {
			if attrs[i].Key == kv.Key {
				attrs[i] = kv
				continue next
			}
		}
		if len(attrs) < maxAttributes {
			attrs = append(attrs, kv)
		} else {
			over++
		}
	}
	return attrs, over
}

// keyValue is an attribute of a record: every type but SLICE and MAP (slices of
// Values), strings and slices cut at the C program's bounds.
func keyValue(a *otelapiApiAttr) (attribute.KeyValue, bool) {
	key := a.Key[:min(int(a.KeyLen), len(a.Key))]
	if len(key) == 0 || !utf8.Valid(key) {
		return attribute.KeyValue{}, false
	}
	k := attribute.Key(string(key))
	v := a.Value[:min(int(a.ValueLen), len(a.Value))]
	switch a.Type {
	case typeBool:
		return k.Bool(a.Numeric != 0), true
	case typeInt64:
		return k.Int64(int64(a.Numeric)), true
	case typeFloat64:
		return k.Float64(math.Float64frombits(a.Numeric)), true
	case typeString:
		return k.String(validPrefix(v)), true
	case typeByteSlice:
		return attribute.KeyValue{Key: k, Value: attribute.ByteSliceValue(slices.Clone(v))}, true
	case typeBoolSlice:
		bools := make([]bool, len(v))
		for i, b := range v {
			bools[i] = b != 0
		}
		return k.BoolSlice(bools), true
	case typeInt64Slice:
		ints := make([]int64, len(v)/8)
		for i := range ints {
			ints[i] = int64(binary.LittleEndian.Uint64(v[8*i:]))
		}
		return k.Int64Slice(ints), true
	case typeFloat64Slice:
		floats := make([]float64, len(v)/8)
		for i := range floats {
			floats[i] = math.Float64frombits(binary.LittleEndian.Uint64(v[8*i:]))
		}
		return k.Float64Slice(floats), true
	case typeStringSlice:
		// ValueLen elements, each in its slot, its length a byte of Numeric.
		strs := make([]string, min(int(a.ValueLen), stringsMax))
		for i := range strs {
			n := min(int(a.Numeric>>(8*i)&0xff), stringSlot)
			strs[i] = validPrefix(a.Value[i*stringSlot : i*stringSlot+n])
		}
		return k.StringSlice(strs), true
	}
	return attribute.KeyValue{}, false
}

// validPrefix is b up to where it stops being valid UTF-8: a string the C program cut
// in a character is cut before it.
func validPrefix(b []byte) string {
	for len(b) > 0 && !utf8.Valid(b) {
		b = b[:len(b)-1]
	}
	return string(b)
}
