package kit

import (
	"encoding/binary"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/trace"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// RecordTraceState is the kind of the record a client probe outputs when it begins a
// sampled span whose parent has a tracestate (RECORD_TRACESTATE, bpf/include/client.h):
// the span's ID and the parent's tracestate, which the span carries, as the SDK gives a
// span its parent's. The kit reads it in every object's ring buffer, before the
// library's Decode; libraries number their own records from 1.
const RecordTraceState = 0x74730000

// The record's layout (struct tracestate_record).
const (
	tsRecordLen    = 4  // __u16
	tsRecordSpanID = 8  // __u8[8]
	tsRecordValue  = 16 // __u8[TRACESTATE_MAX]
)

// maxTraceStates bounds the tracestates kept for spans not arrived: a span whose
// record was filed and which never came (the ring buffer was full for it, its probe
// dropped it) is forgotten when the bound is reached, with all those kept then.
const maxTraceStates = 16384

// traceStates are the tracestates of spans begun and not arrived, by span ID, from
// the records of one object's ring buffer: filed by Run, taken by the span behind
// its record, or by EndInFlight at the app's exit.
type traceStates struct {
	mu   sync.Mutex
	byID map[trace.SpanID]trace.TraceState
	// filed is len(byID), read without the lock: most apps' requests carry no
	// tracestate, and give runs for every span.
	filed atomic.Int32
}

// file keeps the tracestate of a RecordTraceState record. The kernel sends only a
// well-formed list (tracestate.h): one that does not parse is a record not ours,
// dropped.
func (t *traceStates) file(raw []byte) {
	if len(raw) < tsRecordValue {
		return
	}
	n := int(binary.NativeEndian.Uint16(raw[tsRecordLen:]))
	if tsRecordValue+n > len(raw) {
		return
	}
	ts, err := trace.ParseTraceState(string(raw[tsRecordValue : tsRecordValue+n]))
	if err != nil || ts.Len() == 0 {
		return
	}
	id := trace.SpanID(raw[tsRecordSpanID:tsRecordValue])
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byID == nil || len(t.byID) >= maxTraceStates {
		t.byID = map[trace.SpanID]trace.TraceState{}
	}
	t.byID[id] = ts
	t.filed.Store(int32(len(t.byID)))
}

// give gives span the tracestate filed for it, if any: its parent's. A span whose
// parent is a span of the same object still in flight (a Redis command under the
// one that opened its connection) gets its parent's, as the SDK would.
func (t *traceStates) give(span *telemetry.Span) {
	if !span.Parent.IsValid() || t.filed.Load() == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	ts, ok := t.byID[span.SpanID]
	if ok {
		delete(t.byID, span.SpanID)
		t.filed.Store(int32(len(t.byID)))
	} else if !span.Parent.IsRemote() {
		ts, ok = t.byID[span.Parent.SpanID()]
	}
	if ok {
		span.Parent = span.Parent.WithTraceState(ts)
	}
}
