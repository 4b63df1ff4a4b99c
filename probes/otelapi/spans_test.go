package otelapi

import (
	"encoding/binary"
	"fmt"
	"math"
	"testing"
	"time"
	"unsafe"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// record makes a record of kind for span key.
func record(kind uint32, key uint64, text string) *otelapiApiEvent {
	ev := &otelapiApiEvent{Kind: kind, Key: key}
	ev.TextLen = uint32(copy(ev.Text[:], text))
	ev.TextFull = uint32(len(text))
	return ev
}

func attr(ev *otelapiApiEvent, typ uint8, key string, numeric uint64, value string) *otelapiApiAttr {
	a := &ev.Attrs[ev.AttrsRead]
	a.Type = typ
	a.KeyLen = uint8(copy(a.Key[:], key))
	a.Numeric = numeric
	a.ValueLen = uint16(copy(a.Value[:], value))
	ev.AttrsRead++
	ev.AttrsTotal++
	return a
}

// A span assembled from its records, as the C program sends them: its tracer's scope,
// kind, name, parent, attributes (a key set again keeps its place, takes the new
// value), SetName, the SDK's status rules, RecordError's exception attributes, End.
func TestAssembly(t *testing.T) {
	a := newAssembly(4)
	var out telemetry.Span
	names := map[uint64]string{0x50: "*errors.errorString"}
	apply := func(ev *otelapiApiEvent) bool { return a.apply(ev, &out, func(x uint64) string { return names[x] }) }

	tr := record(eventTracer, 0x10, "example.com/shop")
	tr.Attrs[0].ValueLen = uint16(copy(tr.Attrs[0].Value[:], "1.2.3"))
	tr.Attrs[1].ValueLen = uint16(copy(tr.Attrs[1].Value[:], "https://opentelemetry.io/schemas/1.26.0"))
	tr.AttrsRead = 2
	apply(tr)

	st := record(eventStart, 0x1000, "load-order")
	st.Tracer, st.SpanKind, st.HasParent, st.Flags, st.TimeNs = 0x10, uint8(trace.SpanKindClient), 1, 1, 100
	st.Sc.TraceId = [16]uint8{1}
	st.Sc.SpanId = [8]uint8{2}
	st.ParentSpanId = [8]uint8{3}
	attr(st, typeString, "order.id", 0, "42")
	attr(st, typeInt64, "order.items", uint64(3), "")
	attr(st, typeFloat64, "order.total", math.Float64bits(9.5), "")
	attr(st, typeBool, "order.paid", 1, "")
	// Slices as the C program sends them: the array's bytes, or a string slice's
	// elements in their slots, their lengths in numeric's bytes.
	attr(st, typeInt64Slice, "order.sizes", 0, "\x01\x00\x00\x00\x00\x00\x00\x00\xfe\xff\xff\xff\xff\xff\xff\xff")
	attr(st, typeFloat64Slice, "order.weights", 0, string(binary.LittleEndian.AppendUint64(nil, math.Float64bits(0.25))))
	attr(st, typeBoolSlice, "order.flags", 0, "\x01\x00")
	tags := attr(st, typeStringSlice, "order.tags", 2|5<<8|3<<16, "")
	copy(tags.Value[:], "gift")
	copy(tags.Value[stringSlot:], "rush\xe6")
	copy(tags.Value[2*stringSlot:], "日本") // cut in a character at 3 bytes
	tags.ValueLen = 3
	attr(st, typeByteSlice, "order.blob", 0, "\x00\xff")
	attr(st, 10, "order.mixed", 0, "")       // a SLICE of Values: not read
	st.AttrsTotal = uint32(st.AttrsRead) + 2 // two beyond the C program's bound
	if apply(st) {
		t.Fatal("a span ended at its start")
	}
	set := record(eventAttributes, 0x1000, "")
	attr(set, typeInt64, "order.items", uint64(4), "")
	attr(set, typeString, "customer", 0, "ada")
	apply(set)
	apply(record(eventName, 0x1000, "load-order 7"))
	status := record(eventStatus, 0x1000, "stock low")
	status.Code = uint32(codes.Error)
	apply(status)
	unset := record(eventStatus, 0x1000, "")
	unset.Code = uint32(codes.Unset) // changes nothing
	apply(unset)
	failed := record(eventError, 0x1000, "stock low")
	failed.ErrorType = 0x50
	apply(failed)
	event := record(eventEvent, 0x1000, "validated")
	event.TimeNs = 200
	attr(event, typeBool, "valid", 1, "")
	event.AttrsTotal = 20
	apply(event)
	link := record(eventLink, 0x1000, "")
	link.Links[0] = otelapiApiLink{TraceId: [16]uint8{9}, SpanId: [8]uint8{8}, Flags: 1, Remote: 1}
	link.LinksRead, link.LinksTotal = 1, 1
	attr(link, typeString, "link.kind", 0, "follows")
	apply(link)
	apply(record(eventAttributes, 0x2000, "")) // no such span: dropped
	end := record(eventEnd, 0x1000, "")
	end.TimeNs = 250
	if !apply(end) {
		t.Fatal("End made no span")
	}

	if out.Scope.Name != "example.com/shop" || out.Scope.Version != "1.2.3" || out.Scope.SchemaURL != "https://opentelemetry.io/schemas/1.26.0" {
		t.Errorf("scope %+v", out.Scope)
	}
	if out.Name != "load-order 7" || out.Kind != trace.SpanKindClient || out.Start != 100 || out.End != 250 {
		t.Errorf("span %q kind %v %d-%d", out.Name, out.Kind, out.Start, out.End)
	}
	if out.TraceID != [16]byte{1} || out.SpanID != [8]byte{2} || out.Parent.SpanID() != [8]byte{3} || !out.Parent.IsSampled() {
		t.Errorf("IDs %v %v, parent %v", out.TraceID, out.SpanID, out.Parent)
	}
	want := []attribute.KeyValue{attribute.String("order.id", "42"), attribute.Int64("order.items", 4),
		attribute.Float64("order.total", 9.5), attribute.Bool("order.paid", true),
		attribute.Int64Slice("order.sizes", []int64{1, -2}), attribute.Float64Slice("order.weights", []float64{0.25}),
		attribute.BoolSlice("order.flags", []bool{true, false}), attribute.StringSlice("order.tags", []string{"gi", "rush", "日"}),
		{Key: "order.blob", Value: attribute.ByteSliceValue([]byte{0, 0xff})}, attribute.String("customer", "ada")}
	if fmt.Sprint(out.Attributes) != fmt.Sprint(want) {
		t.Errorf("attributes\n%v\nwant\n%v", out.Attributes, want)
	}
	if out.DroppedAttributes != 3 { // order.mixed, and two never read
		t.Errorf("%d attributes dropped, want 3", out.DroppedAttributes)
	}
	wantLink := telemetry.Link{SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: [16]byte{9}, SpanID: [8]byte{8},
		TraceFlags: trace.FlagsSampled, Remote: true}), Attributes: []attribute.KeyValue{attribute.String("link.kind", "follows")}}
	if fmt.Sprint(out.Links) != fmt.Sprint([]telemetry.Link{wantLink}) {
		t.Errorf("links %+v, want AddLink's %+v", out.Links, wantLink)
	}
	// RecordError: an "exception" event, as the SDK's.
	events := []telemetry.Event{
		{Name: "exception", Attributes: []attribute.KeyValue{attribute.String("exception.type", "*errors.errorString"),
			attribute.String("exception.message", "stock low")}},
		{Name: "validated", Time: 200, Attributes: []attribute.KeyValue{attribute.Bool("valid", true)}, DroppedAttributes: 19},
	}
	if fmt.Sprint(out.Events) != fmt.Sprint(events) {
		t.Errorf("events\n%v\nwant\n%v", out.Events, events)
	}
	if !out.NoMetrics {
		t.Error("an API span counts in the request metrics")
	}
	if out.Status != codes.Error || out.StatusDescription != "stock low" {
		t.Errorf("status %v %q", out.Status, out.StatusDescription)
	}
	if len(a.pending) != 0 {
		t.Errorf("%d spans left", len(a.pending))
	}
}

// Spans never ended are bounded: the oldest leave, counted; the rest end at exit,
// marked; a span whose key the app reuses is replaced. A record of a tracer never seen
// gives the probe's own scope.
func TestAssemblyBounded(t *testing.T) {
	a := newAssembly(4)
	var out telemetry.Span
	for key := uint64(1); key <= 6; key++ {
		a.apply(record(eventStart, key, fmt.Sprint("span ", key)), &out, nil)
	}
	a.apply(record(eventStart, 6, "again"), &out, nil)
	if a.Evicted != 3 || len(a.pending) != 4 {
		t.Errorf("%d evicted, %d pending; want 3, 4", a.Evicted, len(a.pending))
	}
	var ended []string
	n := a.endAll(1000, telemetry.EndAppExit, func(s *telemetry.Span) {
		if s.EndReason != telemetry.EndAppExit || s.End != 1000 || s.Scope != scope {
			t.Errorf("%s: end %d %q, scope %v", s.Name, s.End, s.EndReason, s.Scope)
		}
		ended = append(ended, s.Name)
	})
	if n != 4 || len(ended) != 4 {
		t.Errorf("%d ended: %v", n, ended)
	}
}

// Status as the SDK sets it: Ok is final; a description only for Error.
func TestSetStatus(t *testing.T) {
	var s telemetry.Span
	setStatus(&s, codes.Ok, "fine")
	if s.Status != codes.Ok || s.StatusDescription != "" {
		t.Errorf("%v %q", s.Status, s.StatusDescription)
	}
	setStatus(&s, codes.Error, "late")
	if s.Status != codes.Ok {
		t.Errorf("Ok changed to %v", s.Status)
	}
}

// time.Time's words, read as package time reads them, with and without a monotonic
// reading.
func TestGoTime(t *testing.T) {
	for _, tm := range []time.Time{time.Now(), time.Now().Round(0), time.Date(2026, 12, 7, 1, 2, 3, 456789, time.UTC)} {
		words := (*[2]uint64)(unsafe.Pointer(&tm))
		got, ok := goTime(words[0], int64(words[1]))
		if !ok || got != tm.UnixNano() {
			t.Errorf("%v: %d %v, want %d", tm, got, ok, tm.UnixNano())
		}
	}
}

// The sweep: a registration older than the bound whose context no longer holds its span
// is returned once, and forgotten; the span stays pending for its End; one that holds
// it, or is younger, stays.
func TestStale(t *testing.T) {
	a := newAssembly(16)
	var out telemetry.Span
	for key := uint64(1); key <= 3; key++ {
		ev := record(eventStart, key, "s")
		ev.Ctx, ev.Alias = key*0x100, key*0x1000
		a.apply(ev, &out, nil)
	}
	ev := record(eventStart, 4, "no alias")
	ev.Ctx = 0x400
	a.apply(ev, &out, nil)
	a.registered[3] = registration{ctx: 0x300, holds: 0x3000, since: time.Now().Add(time.Hour)} // young
	memory := map[uint64]uint64{0x100: 0x1000, 0x200: 0xdead, 0x300: 0xdead, 0x400: 4}
	holds := func(r registration) bool { return memory[r.ctx] == r.holds }
	gone := a.stale(time.Now().Add(time.Minute), holds)
	if len(gone) != 1 || gone[0].ctx != 0x200 {
		t.Fatalf("stale: %+v, want the context 0x200's", gone)
	}
	if again := a.stale(time.Now().Add(time.Minute), holds); len(again) != 0 {
		t.Errorf("stale again: %+v", again)
	}
	if a.pending[2] == nil || len(a.registered) != 3 {
		t.Errorf("span 2 pending %v, %d registrations left", a.pending[2] != nil, len(a.registered))
	}
}

// Events (and links) past the bound: at least the latest kept, the others counted,
// whatever the number added.
func TestAppendLatest(t *testing.T) {
	var all []int
	dropped := 0
	for i := range 10 {
		var n int
		all, n = appendLatest(all, i, 3)
		dropped += n
	}
	// 6 reached at i=5: the latest 3 kept (3 4 5); again at i=8 (6 7 8); then 9.
	if fmt.Sprint(all) != "[6 7 8 9]" || dropped != 6 {
		t.Errorf("kept %v, %d dropped; want [6 7 8 9], 6", all, dropped)
	}
}
