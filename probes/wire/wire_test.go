package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"golang.org/x/sys/unix"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
	"github.com/otel-go-launcher/otel-go-launcher/probes/kit"
)

// The property test drives the socket programs attached to this test's own cgroup, as
// the app's: its goroutine writes random valid HTTP/2 frame sequences, in random
// splits, to a loopback connection, with a trace context filed (as the probes file it)
// for some of its header blocks; the other end reads them with x/net's Framer and hpack
// decoder. Every frame must arrive as written - type, flags, stream, payload - but for
// the header blocks filed for, which must decode to the same fields plus exactly one
// traceparent (and the tracestate filed), unless the frame could not grow, which the
// counters must say.

const (
	testTraceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	testTracestate  = "vendor=opaque,other=t61rcWkgMzE"
)

// testTracestateLong is as long as a kept tracestate may be (TRACESTATE_MAX): its
// HPACK length takes three bytes.
var testTracestateLong = func() string {
	var members []string
	for i := 0; len(strings.Join(members, ",")) < 512-40; i++ {
		members = append(members, fmt.Sprintf("k%02d=%s", i, strings.Repeat(string(rune('a'+i%26)), 30)))
	}
	s := strings.Join(members, ",")
	return s + ",last=" + strings.Repeat("z", 512-len(s)-6)
}()

func attachToSelf(t *testing.T) *Wire {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.Require(t, runtime.GOARCH == "amd64", "the property test reads its goroutine's g with amd64 assembly (currentG)")
	shared := kit.NewShared()
	t.Cleanup(func() { shared.Close() })
	w, err := Attach(os.Getpid(), shared)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	if err := w.Enable(); err != nil {
		t.Fatal(err)
	}
	return w
}

// outgoing is struct outgoing (bpf/include/outgoing.h).
type outgoing = wireOutgoing

type h2Stream struct {
	G        uint64
	StreamID uint32
	_        uint32
}

func monotonicNow() uint64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

func file(t *testing.T, w *Wire, g uint64, stream uint32, tracestate string) {
	t.Helper()
	var out outgoing
	copy(out.Traceparent[:], testTraceparent)
	out.TracestateLen = uint16(copy(out.Tracestate[:], tracestate))
	out.FiledNs = monotonicNow()
	if err := w.Map("outgoing_h2").Put(h2Stream{G: g, StreamID: stream}, out); err != nil {
		t.Fatal(err)
	}
}

// A frame as the test wrote it, and for a header block's last frame, the block.
type sentFrame struct {
	typ     http2.FrameType
	flags   http2.Flags
	stream  uint32
	payload []byte // but for header block frames
	block   *sentBlock
}

type sentBlock struct {
	fields     []hpack.HeaderField
	filed      bool
	tracestate string
}

// generator makes a random valid sequence of client frames.
type generator struct {
	r      *rand.Rand
	enc    *hpack.Encoder
	encBuf bytes.Buffer
	next   uint32 // next client stream
	open   []uint32
}

func (g *generator) fields(big bool) []hpack.HeaderField {
	fs := []hpack.HeaderField{
		{Name: ":method", Value: []string{"GET", "POST"}[g.r.IntN(2)]},
		{Name: ":scheme", Value: "http"},
		{Name: ":path", Value: fmt.Sprintf("/pkg.Service/Method%d", g.r.IntN(5))},
		{Name: ":authority", Value: "backend:8080"},
	}
	if big { // one frame near the largest a peer must take: the insertion may not fit
		return append(fs, hpack.HeaderField{Name: "x-big", Value: strings.Repeat("{", 16250+g.r.IntN(110))}) // no shorter in Huffman code
	}
	for i := g.r.IntN(8); i > 0; i-- {
		name := fmt.Sprintf("x-h%d", g.r.IntN(20))
		n := g.r.IntN(60)
		if g.r.IntN(10) == 0 {
			n = g.r.IntN(3000)
		}
		fs = append(fs, hpack.HeaderField{Name: name, Value: strings.Repeat(string(rune('a'+g.r.IntN(26))), n), Sensitive: g.r.IntN(8) == 0})
	}
	return fs
}

func (g *generator) encode(fs []hpack.HeaderField) []byte {
	g.encBuf.Reset()
	for _, f := range fs {
		g.enc.WriteField(f)
	}
	return bytes.Clone(g.encBuf.Bytes())
}

// sequence writes n random frames with fr and returns them.
func (g *generator) sequence(t *testing.T, fr *http2.Framer, n int, w *Wire, gid uint64) []sentFrame {
	var sent []sentFrame
	raw := func(typ http2.FrameType, flags http2.Flags, stream uint32, payload []byte) {
		if err := fr.WriteRawFrame(typ, flags, stream, payload); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, sentFrame{typ: typ, flags: flags, stream: stream, payload: payload})
	}
	firstBlock := true
	for i := 0; i < n; i++ {
		switch k := g.r.IntN(10); {
		case k < 4: // a request's header block
			sid := g.next
			g.next += 2
			g.open = append(g.open, sid)
			b := &sentBlock{fields: g.fields(g.r.IntN(12) == 0)}
			switch f := g.r.IntN(4); {
			case f < 2 && os.Getenv("WIRE_NOFILE") == "":
				b.filed = true
				switch g.r.IntN(4) {
				case 0, 1:
					b.tracestate = testTracestate
				case 2:
					b.tracestate = testTracestateLong
				}
				if f == 1 && firstBlock { // as net/http files it: the goroutine's next block
					file(t, w, gid, 0, b.tracestate)
				} else {
					file(t, w, gid, sid, b.tracestate)
				}
			}
			firstBlock = false
			block := g.encode(b.fields)
			big := len(block) > 16200
			// Split into HEADERS and CONTINUATIONs, each under 16384 bytes.
			var chunks [][]byte
			for len(block) > 0 {
				n := min(len(block), 1+g.r.IntN(16384))
				if big || g.r.IntN(3) > 0 {
					n = min(len(block), 16384)
				}
				chunks, block = append(chunks, block[:n]), block[n:]
			}
			endStream := g.r.IntN(2) == 0
			for ci, c := range chunks {
				last := ci == len(chunks)-1
				if ci == 0 {
					p := http2.HeadersFrameParam{StreamID: sid, BlockFragment: c, EndStream: endStream, EndHeaders: last}
					if !big && g.r.IntN(4) == 0 && len(c) < 16384-256 {
						p.PadLength = uint8(g.r.IntN(256))
					}
					if !big && g.r.IntN(4) == 0 && len(c)+int(p.PadLength)+6 <= 16384 {
						p.Priority = http2.PriorityParam{StreamDep: 0, Weight: uint8(g.r.IntN(256)), Exclusive: g.r.IntN(2) == 0}
					}
					if err := fr.WriteHeaders(p); err != nil {
						t.Fatal(err)
					}
					fl := http2.Flags(0)
					if endStream {
						fl |= http2.FlagHeadersEndStream
					}
					if last {
						fl |= http2.FlagHeadersEndHeaders
					}
					if p.PadLength != 0 {
						fl |= http2.FlagHeadersPadded
					}
					if !p.Priority.IsZero() {
						fl |= http2.FlagHeadersPriority
					}
					sent = append(sent, sentFrame{typ: http2.FrameHeaders, flags: fl, stream: sid})
				} else {
					if err := fr.WriteContinuation(sid, last, c); err != nil {
						t.Fatal(err)
					}
					fl := http2.Flags(0)
					if last {
						fl = http2.FlagContinuationEndHeaders
					}
					sent = append(sent, sentFrame{typ: http2.FrameContinuation, flags: fl, stream: sid})
				}
				if last {
					sent[len(sent)-1].block = b
				}
			}
		case k < 7 && len(g.open) > 0: // data
			sid := g.open[g.r.IntN(len(g.open))]
			n := g.r.IntN(64)
			if g.r.IntN(4) == 0 {
				n = g.r.IntN(16385)
			}
			payload := make([]byte, n)
			for j := range payload {
				payload[j] = byte(g.r.Uint32())
			}
			raw(http2.FrameData, http2.Flags(g.r.IntN(2)), sid, payload) // END_STREAM or not
		case k == 7:
			raw(http2.FrameWindowUpdate, 0, 0, binary.BigEndian.AppendUint32(nil, uint32(1+g.r.IntN(1<<20))))
		case k == 8:
			raw(http2.FramePing, 0, 0, binary.BigEndian.AppendUint64(nil, g.r.Uint64()))
		default: // a frame type the program does not know, on a stream that looks like a request's
			payload := make([]byte, g.r.IntN(100))
			raw(http2.FrameType(0x20+g.r.IntN(16)), http2.Flags(g.r.IntN(256)), uint32(1+2*g.r.IntN(50)), payload)
		}
	}
	return sent
}

// writeSplit writes b to c in random pieces: some a few bytes, splitting frame headers.
func writeSplit(r *rand.Rand, c net.Conn, b []byte) ([]int, error) {
	var splits []int
	for len(b) > 0 {
		var n int
		switch r.IntN(4) {
		case 0:
			n = 1 + r.IntN(12)
		case 1:
			n = 1 + r.IntN(200)
		case 2:
			n = 1 + r.IntN(20000)
		default:
			n = len(b)
		}
		n = min(n, len(b))
		if _, err := c.Write(b[:n]); err != nil {
			return splits, err
		}
		splits = append(splits, n)
		b = b[n:]
	}
	return splits, nil
}

type readFrame struct {
	typ    http2.FrameType
	flags  http2.Flags
	stream uint32
	data   []byte // payload (header block frames: the fragment)
	length uint32 // the frame header's
}

// readAll reads frames until EOF: the raw view (header, payload) of each.
func readAll(r io.Reader) ([]readFrame, error) {
	var frames []readFrame
	fr := http2.NewFramer(nil, r)
	fr.SetMaxReadFrameSize(1 << 24)
	for {
		f, err := fr.ReadFrame()
		if errors.Is(err, io.EOF) {
			return frames, nil
		}
		if err != nil {
			return frames, fmt.Errorf("frame %d: %w", len(frames), err)
		}
		h := f.Header()
		rf := readFrame{typ: h.Type, flags: h.Flags, stream: h.StreamID, length: h.Length}
		switch f := f.(type) {
		case *http2.HeadersFrame:
			rf.data = bytes.Clone(f.HeaderBlockFragment())
		case *http2.ContinuationFrame:
			rf.data = bytes.Clone(f.HeaderBlockFragment())
		case *http2.DataFrame:
			rf.data = bytes.Clone(f.Data())
		case *http2.WindowUpdateFrame:
			rf.data = binary.BigEndian.AppendUint32(nil, f.Increment)
		case *http2.PingFrame:
			rf.data = bytes.Clone(f.Data[:])
		case *http2.SettingsFrame:
		case *http2.UnknownFrame:
			rf.data = bytes.Clone(f.Payload())
		default:
			return frames, fmt.Errorf("frame %d: unexpected %T", len(frames), f)
		}
		frames = append(frames, rf)
	}
}

// propertySetup sets a property test up: the socket programs attached to this
// process, a listener, the test's goroutine locked to its thread (the context is filed
// for the writing goroutine, gid) until the caller unlocks it, and a random source of
// its own stream, seeded from WIRE_SEED or the clock (logged, to repeat a failure).
func propertySetup(t *testing.T, stream uint64) (w *Wire, ln net.Listener, gid uint64, r *rand.Rand, seed uint64) {
	t.Helper()
	w = attachToSelf(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	runtime.LockOSThread()
	seed = uint64(time.Now().UnixNano())
	if s := os.Getenv("WIRE_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d (WIRE_SEED=%d to repeat)", seed, seed)
	return w, ln, uint64(currentG()), rand.New(rand.NewPCG(seed, stream)), seed
}

func TestHTTP2InsertionProperty(t *testing.T) {
	w, ln, gid, r, seed := propertySetup(t, 1)
	defer ln.Close()
	defer runtime.UnlockOSThread()
	cases := 1000
	if testing.Short() {
		cases = 100
	}
	var filed, tooLarge, unchanged int
	before, _ := w.Counts()
	for c := 0; c < cases; c++ {
		accepted := make(chan net.Conn, 1)
		go func() {
			conn, err := ln.Accept()
			if err != nil {
				accepted <- nil
				return
			}
			accepted <- conn
		}()
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		srv := <-accepted
		if srv == nil {
			t.Fatal("accept failed")
		}
		type result struct {
			frames []readFrame
			err    error
		}
		got := make(chan result, 1)
		go func() {
			defer srv.Close()
			preface := make([]byte, len(http2.ClientPreface))
			if _, err := io.ReadFull(srv, preface); err != nil || string(preface) != http2.ClientPreface {
				got <- result{nil, fmt.Errorf("preface %q: %v", preface, err)}
				return
			}
			frames, err := readAll(srv)
			got <- result{frames, err}
		}()

		var buf bytes.Buffer
		gen := &generator{r: r, next: 1}
		gen.enc = hpack.NewEncoder(&gen.encBuf)
		fr := http2.NewFramer(&buf, nil)
		buf.WriteString(http2.ClientPreface)
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
		sent := []sentFrame{{typ: http2.FrameSettings, payload: nil}}
		sent = append(sent, gen.sequence(t, fr, 1+r.IntN(40), w, gid)...)
		splits, err := writeSplit(r, conn, buf.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
		res := <-got
		if res.err != nil {
			written, _ := readAll(bytes.NewReader(buf.Bytes()[len(http2.ClientPreface):]))
			t.Fatalf("case %d: the reader: %v\nwrites %v\nframes written %v\nframes read %v", c, res.err, splits, layout(written), layout(res.frames))
		}
		written, err := readAll(bytes.NewReader(buf.Bytes()[len(http2.ClientPreface):]))
		if err != nil {
			t.Fatal(err)
		}
		whole, headerSplit := wholeFrames(written, splits)
		f, l, u := compare(t, c, sent[1:], res.frames, whole, headerSplit)
		filed += f
		tooLarge += l
		unchanged += u
		if t.Failed() {
			now, _ := w.Counts()
			t.Logf("writes %v\nframes (as read, after the 24-byte preface) %v", splits, layout(res.frames))
			t.Fatalf("case %d failed (seed %d); counters before %+v, now %+v", c, seed, before, now)
		}
		// Whatever was filed and not taken must not linger for the next case.
		var k h2Stream
		for it := w.Map("outgoing_h2").Iterate(); it.Next(&k, new(outgoing)); {
			w.Map("outgoing_h2").Delete(k)
		}
	}
	after, _ := w.Counts()
	inserted := after.H2Inserted - before.H2Inserted
	split := after.H2Split - before.H2Split
	t.Logf("%d cases: %d header blocks filed for: %d got the context; %d too large, %d in several writes (left as they were)", cases, filed, inserted, tooLarge, split)
	if int(inserted) != filed-tooLarge-unchanged || int(after.H2TooLarge-before.H2TooLarge) != tooLarge || int(split) != unchanged {
		t.Errorf("counters: %d inserted, %d too large, %d split; the frames read say %d, %d, %d", inserted, after.H2TooLarge-before.H2TooLarge, split, filed-tooLarge-unchanged, tooLarge, unchanged)
	}
	if after.H2Failed != before.H2Failed || after.H2Late != before.H2Late {
		t.Errorf("counters: failed %d, late %d", after.H2Failed-before.H2Failed, after.H2Late-before.H2Late)
	}
}

// wholeFrames says, of each frame written, whether it was certainly in one message as
// the kernel saw it: within one write of at most 16 KiB (a larger write may reach the
// program in several messages); and whether its header was split across writes (the
// program then reads it after its length went out, and counts it split whatever its
// size).
func wholeFrames(frames []readFrame, splits []int) (whole, headerSplit []bool) {
	whole, headerSplit = make([]bool, len(frames)), make([]bool, len(frames))
	var bounds [][2]int // of each write, as offsets after the preface
	pos := -len(http2.ClientPreface)
	for _, n := range splits {
		bounds = append(bounds, [2]int{pos, pos + n})
		pos += n
	}
	off := 0
	for i, f := range frames {
		end := off + 9 + int(f.length)
		for _, b := range bounds {
			if off >= b[0] && end <= b[1] && b[1]-b[0] <= 16384 {
				whole[i] = true
			}
			if off < b[1] && off+9 > b[1] { // its header ends in a later write
				headerSplit[i] = true
			}
		}
		off = end
	}
	return whole, headerSplit
}

// compare checks the frames read against those written (the SETTINGS frame aside),
// and returns how many blocks were filed for and how many of those could not grow.
func compare(t *testing.T, c int, sent []sentFrame, got []readFrame, whole, headerSplit []bool) (filed, tooLarge, unchanged int) {
	t.Helper()
	if len(got) != len(sent)+1 {
		t.Errorf("case %d: %d frames read, %d written", c, len(got), len(sent)+1)
		return
	}
	got, whole, headerSplit = got[1:], whole[1:], headerSplit[1:] // SETTINGS
	dec := hpack.NewDecoder(65536, nil)
	dec.SetMaxStringLength(1 << 20)
	var fragment []byte
	for i, s := range sent {
		g := got[i]
		if g.typ != s.typ || g.flags != s.flags || g.stream != s.stream {
			t.Errorf("case %d frame %d: read %v flags %#x stream %d, wrote %v flags %#x stream %d", c, i, g.typ, g.flags, g.stream, s.typ, s.flags, s.stream)
			return
		}
		if s.typ != http2.FrameHeaders && s.typ != http2.FrameContinuation {
			if !bytes.Equal(g.data, s.payload) {
				t.Errorf("case %d frame %d (%v): payload changed (%d bytes read, %d written)", c, i, s.typ, len(g.data), len(s.payload))
			}
			continue
		}
		fragment = append(fragment, g.data...)
		if s.block == nil {
			continue
		}
		var fields []hpack.HeaderField
		dec.SetEmitFunc(func(f hpack.HeaderField) { fields = append(fields, f) })
		if _, err := dec.Write(fragment); err != nil {
			t.Errorf("case %d frame %d: hpack: %v", c, i, err)
			return
		}
		if err := dec.Close(); err != nil {
			t.Errorf("case %d frame %d: hpack: %v", c, i, err)
			return
		}
		fragment = fragment[:0]
		want := s.block.fields
		b := s.block
		if b.filed {
			filed++
			extra := []hpack.HeaderField{{Name: "traceparent", Value: testTraceparent}}
			if b.tracestate != "" {
				extra = append(extra, hpack.HeaderField{Name: "tracestate", Value: b.tracestate})
			}
			// The frame as written was the one read less what was inserted.
			frameLen := int(g.length)
			if len(fields) > len(want) {
				for _, f := range fields[len(want):] {
					frameLen -= 2 + len(f.Name) + hpackIntLen(len(f.Value)) + len(f.Value)
				}
			}
			growBy := 0
			for _, f := range extra {
				growBy += 2 + len(f.Name) + hpackIntLen(len(f.Value)) + len(f.Value)
			}
			switch {
			case headerSplit[i] && len(fields) == len(want):
				unchanged++
				extra = nil
			case frameLen+69 > 16384:
				tooLarge++
				extra = nil
			case len(fields) == len(want) && !whole[i]: // in several writes: may go as it was
				unchanged++
				extra = nil
			case frameLen+growBy > 16384:
				extra = extra[:1] // the traceparent without the tracestate
			}
			want = append(append([]hpack.HeaderField(nil), want...), extra...)
		}
		if !sameFields(fields, want) {
			t.Errorf("case %d frame %d (stream %d, filed %v): fields\n got %v\nwant %v", c, i, s.stream, b.filed, brief(fields), brief(want))
		}
	}
	return filed, tooLarge, unchanged
}

// layout lists frames by offset (after the preface), type, length, flags, stream.
func layout(frames []readFrame) string {
	var parts []string
	off := 0
	for _, f := range frames {
		parts = append(parts, fmt.Sprintf("%d:%v/%d/%#x/s%d", off, f.typ, f.length, f.flags, f.stream))
		off += 9 + int(f.length)
	}
	return strings.Join(parts, " ")
}

func hpackIntLen(n int) int {
	if n < 127 {
		return 1
	}
	n -= 127
	l := 2
	for n >= 128 {
		n >>= 7
		l++
	}
	return l
}

func sameFields(a, b []hpack.HeaderField) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Value != b[i].Value {
			return false
		}
	}
	return true
}

func brief(fs []hpack.HeaderField) string {
	var parts []string
	for _, f := range fs {
		v := f.Value
		if len(v) > 20 {
			v = fmt.Sprintf("%s…(%d)", v[:8], len(v))
		}
		parts = append(parts, f.Name+"="+v)
	}
	return strings.Join(parts, " ")
}
