package kit

import (
	"encoding/binary"
	"unsafe"
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
