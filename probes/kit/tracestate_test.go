package kit

import (
	"encoding/binary"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"go.opentelemetry.io/otel/trace"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// tsRecord is a RecordTraceState record of the span id, as the kernel writes it.
func tsRecord(id trace.SpanID, value string) []byte {
	raw := make([]byte, tsRecordValue+512)
	binary.NativeEndian.PutUint32(raw, RecordTraceState)
	binary.NativeEndian.PutUint16(raw[tsRecordLen:], uint16(len(value)))
	copy(raw[tsRecordSpanID:], id[:])
	copy(raw[tsRecordValue:], value)
	return raw
}

// A client span gets the tracestate filed for it, once; a span under another of the
// same object still in flight gets that one's; a span with no parent, or with none
// filed, gets none; a remote parent's tracestate is the span's own (a server's) and is
// left as it is.
func TestTraceStates(t *testing.T) {
	var ts traceStates
	tid := trace.TraceID{1}
	server := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled})
	ts.file(tsRecord(trace.SpanID{2}, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"))
	ts.file(tsRecord(trace.SpanID{3}, "bad value"))          // not a list: never the kernel's
	ts.file(tsRecord(trace.SpanID{4}, "")[:tsRecordValue-1]) // cut short

	client := &telemetry.Span{TraceID: tid, SpanID: trace.SpanID{2}, Parent: server}
	nested := &telemetry.Span{TraceID: tid, SpanID: trace.SpanID{5},
		Parent: trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})}
	ts.give(nested) // ends first, under the client span still in flight
	ts.give(client)
	for _, s := range []*telemetry.Span{client, nested} {
		if got := s.Parent.TraceState().String(); got != "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7" {
			t.Errorf("span %s: tracestate %q", s.SpanID, got)
		}
		if s.Parent.TraceFlags() != trace.FlagsSampled || s.Parent.TraceID() != tid {
			t.Errorf("span %s: parent %v changed", s.SpanID, s.Parent)
		}
	}
	again := &telemetry.Span{TraceID: tid, SpanID: trace.SpanID{2}, Parent: server}
	other := &telemetry.Span{TraceID: tid, SpanID: trace.SpanID{3}, Parent: server}
	root := &telemetry.Span{TraceID: tid, SpanID: trace.SpanID{6}}
	for _, s := range []*telemetry.Span{again, other, root} {
		ts.give(s)
		if s.Parent.TraceState().Len() != 0 {
			t.Errorf("span %s: tracestate %q", s.SpanID, s.Parent.TraceState())
		}
	}
	if len(ts.byID) != 0 {
		t.Errorf("kept %d", len(ts.byID))
	}

	// Filed for spans that never come, they are forgotten at the bound.
	for i := range maxTraceStates + 1 {
		var id trace.SpanID
		binary.BigEndian.PutUint64(id[:], uint64(i+100))
		ts.file(tsRecord(id, "k=v"))
	}
	if len(ts.byID) > maxTraceStates {
		t.Errorf("kept %d", len(ts.byID))
	}
}

// The record's layout the kit reads is the C struct's, in every client library's
// object (the generated files, both architectures).
func TestTraceStateRecordLayout(t *testing.T) {
	objects, _ := filepath.Glob("../*/*_bpfel.o")
	found := 0
	for _, path := range objects {
		spec, err := ebpf.LoadCollectionSpec(path)
		if err != nil {
			t.Fatal(err)
		}
		var rec *btf.Struct
		if err := spec.Types.TypeByName("tracestate_record", &rec); err != nil {
			continue // not a client library's
		}
		found++
		offsets := map[string]uint32{}
		for _, m := range rec.Members {
			offsets[m.Name] = m.Offset.Bytes()
		}
		if offsets["kind"] != 0 || offsets["len"] != tsRecordLen || offsets["span_id"] != tsRecordSpanID || offsets["tracestate"] != tsRecordValue || rec.Size != tsRecordValue+512 {
			t.Errorf("%s: tracestate_record %v, %d bytes", path, offsets, rec.Size)
		}
	}
	if found < 8 { // net/http, grpc, database/sql, go-redis; amd64 and arm64
		t.Errorf("tracestate_record in %d objects of %v", found, objects)
	}
}
