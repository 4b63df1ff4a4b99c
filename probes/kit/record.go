package kit

import (
	"encoding/binary"
	"unsafe"

	"go.opentelemetry.io/otel/trace"
)

// RecordKind is a ring buffer record's first word: which of its library's events it
// is, as the C program numbers them; 0 for a record too short to say.
func RecordKind(raw []byte) uint32 {
	if len(raw) < 4 {
		return 0
	}
	return binary.NativeEndian.Uint32(raw)
}

// RecordAs is a ring buffer record as the C struct it holds (T, bpf2go's type), or
// nil if the record is too short for one. The record is 8-byte aligned and valid only
// during the Decode call.
func RecordAs[T any](raw []byte) *T {
	var zero T
	if len(raw) < int(unsafe.Sizeof(zero)) {
		return nil
	}
	return (*T)(unsafe.Pointer(&raw[0]))
}

// RecordPrefixAs is RecordAs for a record the C program cut short (a text's unused
// bytes left out): one shorter than T is copied into buf, the rest of buf zeroed. nil
// for a record too short to hold T's fixed part, min bytes.
func RecordPrefixAs[T any](raw []byte, buf *T, min int) *T {
	size := int(unsafe.Sizeof(*buf))
	if len(raw) >= size {
		return (*T)(unsafe.Pointer(&raw[0]))
	}
	if len(raw) < min {
		return nil
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(buf)), size)
	clear(b[copy(b, raw):])
	return buf
}

// ClientParent is the parent of a client span, as the C programs record it: the trace
// ID, the parent's span ID and its flags (start_client_span, bpf/include/client.h);
// invalid when the span had none.
func ClientParent(hasParent uint8, traceID [16]uint8, parentSpanID [8]uint8, flags uint8) trace.SpanContext {
	if hasParent == 0 {
		return trace.SpanContext{}
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: parentSpanID, TraceFlags: trace.TraceFlags(flags)})
}
