package kit

import (
	"encoding/binary"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"go.opentelemetry.io/otel/attribute"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// testEntry is a map value as a library's C program might hold it: its span's state,
// then its own.
type testEntry struct {
	Start  uint64
	SpanID [8]byte
	Skip   uint8 // state that is no span
	_      [7]byte
	Pad    [1400]byte // about a server span's size with its tracestate
}

// Every span left in an in-flight map is emitted once, as the library reads it, with
// the end and the reason given; a span begun after that end ends as it began; entries
// the library says are no span are left out; a full map (as large as the probes' maps
// get) is read in one pass. Needs a real BPF map: root.
func TestEndSpansIn(t *testing.T) {
	testenv.RequireRoot(t)
	const entries = 16384
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 8, ValueSize: uint32(unsafe.Sizeof(testEntry{})), MaxEntries: entries,
		Flags: 1 /* BPF_F_NO_PREALLOC, as the probes' */})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	f := InFlight{Map: "test", Spec: "test.client", Span: func(value []byte, span *telemetry.Span) bool {
		e := RecordAs[testEntry](value)
		if e == nil || e.Skip != 0 {
			return false
		}
		attrs := span.Attributes[:0]
		*span = telemetry.Span{SpanID: e.SpanID, Start: e.Start, End: 1} // End: what the probe had, 0 or stale
		span.Attributes = append(attrs, attribute.Int("n", int(binary.LittleEndian.Uint64(e.SpanID[:]))))
		return true
	}}
	const end = 1_000_000
	fill := func(n int) map[uint64]testEntry {
		want := map[uint64]testEntry{}
		for i := range n {
			e := testEntry{Start: end - 10, Skip: uint8(i % 7 / 6)} // one in seven is no span
			if i%5 == 0 {
				e.Start = end + 10 // begun after the end given
			}
			binary.LittleEndian.PutUint64(e.SpanID[:], uint64(i))
			if err := m.Put(uint64(i)*4096, &e); err != nil { // a pointer: copied, not encoded
				t.Fatal(err)
			}
			if e.Skip == 0 {
				want[uint64(i)] = e
			}
		}
		return want
	}
	// EndSpansIn reads in batches; readEach, where the kernel has none, one by one.
	oneByOne := func(m *ebpf.Map, f InFlight, end uint64, why telemetry.EndReason, span *telemetry.Span, emit func(*telemetry.Span)) (int, error) {
		n := 0
		err := readEach(m, func(value []byte) {
			if f.Span(value, span) {
				span.End, span.EndReason = max(end, span.Start), why
				emit(span)
				n++
			}
		})
		return n, err
	}
	check := func(n int, read func(*ebpf.Map, InFlight, uint64, telemetry.EndReason, *telemetry.Span, func(*telemetry.Span)) (int, error)) time.Duration {
		t.Helper()
		want := fill(n)
		got := map[uint64]bool{}
		var span telemetry.Span
		start := time.Now()
		emitted, err := read(m, f, end, telemetry.EndAppExit, &span, func(s *telemetry.Span) {
			id := binary.LittleEndian.Uint64(s.SpanID[:])
			w, ok := want[id]
			switch {
			case !ok:
				t.Errorf("span %d emitted: no span, or not in the map", id)
			case got[id]:
				t.Errorf("span %d emitted twice", id)
			case s.EndReason != telemetry.EndAppExit:
				t.Errorf("span %d: end reason %q", id, s.EndReason)
			case s.End != max(end, w.Start):
				t.Errorf("span %d begun at %d: ends at %d", id, w.Start, s.End)
			case len(s.Attributes) != 1 || s.Attributes[0].Value.AsInt64() != int64(id):
				t.Errorf("span %d: attributes %v", id, s.Attributes)
			}
			got[id] = true
		})
		took := time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		if emitted != len(want) || len(got) != len(want) {
			t.Errorf("%d entries: %d spans emitted (%d distinct), want %d", n, emitted, len(got), len(want))
		}
		return took
	}
	for _, r := range []struct {
		name string
		read func(*ebpf.Map, InFlight, uint64, telemetry.EndReason, *telemetry.Span, func(*telemetry.Span)) (int, error)
	}{{"in batches", EndSpansIn}, {"one by one", oneByOne}} {
		if took := check(0, r.read); took > 10*time.Millisecond {
			t.Errorf("%s: an empty map took %v", r.name, took)
		}
		check(3, r.read)
		took := check(entries, r.read)
		t.Logf("%s: a full map (%d entries of %d bytes) read in %v", r.name, entries, m.ValueSize(), took)
		for i := range uint64(entries) {
			m.Delete(i * 4096) // empty for the next
		}
	}
}
