package kit

import (
	"errors"
	"fmt"
	"reflect"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// InFlight is a map of a library's BPF object that holds its spans in flight: begun by
// one of its probes, not ended yet. A span still there when the launcher detaches -
// the app exited during a watch stream, a long poll, a handler that never returned -
// would otherwise never be exported, and the server on the other side of its call
// would point at a parent that never arrives: EndInFlight ends it then.
type InFlight struct {
	Map  string // the map: "client_streams"
	Spec string // the spec its spans are of, for the count said at exit: "grpc.client"
	// Span fills span from one of the map's values - the C struct the map holds,
	// 8-byte aligned, valid only during the call - as the library's Decode does from
	// a record, or returns false for an entry that is no span (state a probe drops
	// without making one). The kit then sets its end and marks it. It runs in the
	// goroutine that detaches, maybe while Run still decodes: it must not use the
	// buffers Decode does.
	Span func(value []byte, span *telemetry.Span) bool
}

// EndInFlight ends the spans still in flight in the object's maps (ObjectSpec.InFlight)
// at end (CLOCK_MONOTONIC nanoseconds; a span begun later ends as it began), marks each
// with why, and emits it; it returns how many it ended, by spec. Each map is read once,
// at most as many entries as it holds. Call it once the probes are detached (the app
// gone): a span a probe still ends could be emitted twice.
func (o *Object) EndInFlight(end uint64, why telemetry.EndReason, emit func(*telemetry.Span)) (map[string]int, error) {
	ended := map[string]int{}
	var errs []error
	var span telemetry.Span
	finished := func(s *telemetry.Span) {
		o.finish(s)
		emit(s)
	}
	for _, f := range o.spec.InFlight {
		m := o.objs.Map(f.Map)
		if m == nil {
			continue // not made: none of the programs loaded for the app uses it
		}
		n, err := EndSpansIn(m, f, end, why, &span, finished)
		if n > 0 {
			ended[f.Spec] += n
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return ended, errorf(o.spec.Library.SpecNames(), StageDetach, errors.Join(errs...))
}

// EndSpansIn ends the spans in flight in m, as f says (EndInFlight), with span as the
// scratch each is made in, and returns how many it emitted.
func EndSpansIn(m *ebpf.Map, f InFlight, end uint64, why telemetry.EndReason, span *telemetry.Span, emit func(*telemetry.Span)) (int, error) {
	n := 0
	each := func(value []byte) {
		if !f.Span(value, span) {
			return
		}
		span.End = max(end, span.Start)
		span.EndReason = why
		emit(span)
		n++
	}
	err := readBatches(m, each)
	if errors.Is(err, errNoBatch) {
		err = readEach(m, each)
	}
	if err != nil {
		return n, fmt.Errorf("read the spans in flight in %s: %w", f.Map, err)
	}
	return n, nil
}

// A batch read takes at first a few entries - most maps hold none or a few at exit, and
// a full batch's buffer is ~1.5 MB to allocate - then up to inFlightBatch at a time: a
// full map of the probes' (16,384 entries) in 17 system calls.
const (
	inFlightFirstBatch = 32
	inFlightBatch      = 1024
)

// errNoBatch: a map cannot be read in batches, and nothing was read of it yet.
var errNoBatch = errors.New("no batch reads")

// readBatches calls each with every value m holds, read a batch at a time, or fails
// with errNoBatch before reading any: for a value whose size is not a multiple of 8
// (the values are read in place, 8-byte aligned), a kernel before 5.6, a batch the
// kernel refuses (a hash bucket of more entries than a batch holds).
func readBatches(m *ebpf.Map, each func(value []byte)) error {
	keySize, valueSize := int(m.KeySize()), int(m.ValueSize())
	if keySize == 0 || valueSize == 0 || valueSize%8 != 0 {
		return errNoBatch
	}
	var cursor ebpf.MapBatchCursor
	count := min(inFlightFirstBatch, int(m.MaxEntries()))
	keys, values, raw := batchBuffers(keySize, valueSize, count)
	read := 0
	// Bounded: a hash map holds at most MaxEntries, and no program changes it now.
	for batch := 0; read <= int(m.MaxEntries()); batch++ {
		if batch == 1 {
			count = min(inFlightBatch, int(m.MaxEntries()))
			keys, values, raw = batchBuffers(keySize, valueSize, count)
		}
		n, err := m.BatchLookup(&cursor, keys, values, nil)
		if batch == 0 && err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return errNoBatch
		}
		for i := range min(n, count) {
			each(raw[i*valueSize : (i+1)*valueSize])
		}
		read += max(n, 1)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// batchBuffers are buffers for a batch read of count entries: the batch API takes
// slices of elements of the map's key and value sizes, and the values' are laid over
// 8-byte words (raw), which the library reads as its C structs.
func batchBuffers(keySize, valueSize, count int) (keys, values any, raw []byte) {
	bytes := reflect.TypeFor[byte]()
	keys = reflect.MakeSlice(reflect.SliceOf(reflect.ArrayOf(keySize, bytes)), count, count).Interface()
	words := make([]uint64, count*valueSize/8)
	values = reflect.NewAt(reflect.ArrayOf(count, reflect.ArrayOf(valueSize, bytes)), unsafe.Pointer(&words[0])).Elem().Slice(0, count).Interface()
	return keys, values, unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8)
}

// readEach calls each with every value m holds, read one at a time.
func readEach(m *ebpf.Map, each func(value []byte)) error {
	keySize, valueSize := int(m.KeySize()), int(m.ValueSize())
	if keySize == 0 || valueSize == 0 {
		return nil
	}
	words := make([]uint64, (valueSize+7)/8)
	value := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), valueSize)
	key, next := make([]byte, keySize), make([]byte, keySize)
	var at any // nil: the first key
	for range m.MaxEntries() + 1 {
		if err := m.NextKey(at, next); errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		} else if err != nil {
			return err
		}
		key, next = next, key
		at = key
		if err := m.Lookup(key, value); errors.Is(err, ebpf.ErrKeyNotExist) {
			continue
		} else if err != nil {
			return err
		}
		each(value)
	}
	return nil
}
