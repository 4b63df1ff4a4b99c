package wire

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The HTTP/2 test of the app's own fields: each case is a connection on which the
// test's goroutine writes request header blocks made by x/net's hpack encoder, as Go's
// HTTP/2 client and gRPC make them - Huffman-coded values, fields added to the dynamic
// table, names then sent as indexes, a value sent again as one index - some with a
// traceparent and a tracestate of "the app's" among their fields (a proxy forwarding
// the caller's, from a small pool, so that values come again), each block filed for
// with a context of its own. The other end decodes the blocks with hpack's decoder, in
// one table: every block must decode (the tables in step), every other field as
// written, and the app's fields as a model written here from the design says - ours
// where the field is a literal the program may change, the app's where not, and for a
// value sent again as an index what the peer's table got for it - the counters agreeing.

// appField is one of the app's own fields in a generated block.
type appField struct {
	name, value string
	sensitive   bool // never indexed: a literal the encoder keeps out of its table
}

type ownBlock struct {
	stream     uint32
	fields     []hpack.HeaderField // as the app wrote them
	app        []int               // which of fields are the app's trace context
	oursTP     string
	oursTS     string
	multiFrame bool // HEADERS, then CONTINUATION: the app's fields are not looked for
	frames     [][]byte
}

// The app's traceparent values: forwarded ones come again; one is not a traceparent
// (too short to take ours in a field the encoder indexes).
var appTraceparents = []string{
	"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	"00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01",
	"00-4bf92f3577b34da6a3ce929d0e0e4736-53995c3f42cd8ad8-00",
	"garbage",
}

// hpackRep is a field representation as written (RFC 7541 6).
type hpackRep struct {
	indexed     bool // the whole field an index
	indexing    bool // a literal the decoder adds to its table
	nameLiteral bool // a literal whose name is a string, not an index
}

// reps reads the representations of a header block, one per field.
func reps(block []byte) ([]hpackRep, error) {
	readInt := func(b []byte, n int) (int, []byte, error) {
		if len(b) == 0 {
			return 0, nil, io.ErrUnexpectedEOF
		}
		mask := 1<<n - 1
		v := int(b[0]) & mask
		b = b[1:]
		if v < mask {
			return v, b, nil
		}
		for m := 0; ; m += 7 {
			if len(b) == 0 {
				return 0, nil, io.ErrUnexpectedEOF
			}
			c := b[0]
			b = b[1:]
			v += int(c&0x7f) << m
			if c&0x80 == 0 {
				return v, b, nil
			}
		}
	}
	skipString := func(b []byte) ([]byte, error) {
		n, b, err := readInt(b, 7)
		if err != nil || n > len(b) {
			return nil, io.ErrUnexpectedEOF
		}
		return b[n:], nil
	}
	var out []hpackRep
	for len(block) > 0 {
		c := block[0]
		var err error
		switch {
		case c&0x80 != 0:
			_, block, err = readInt(block, 7)
			out = append(out, hpackRep{indexed: true})
		case c&0xe0 == 0x20:
			_, block, err = readInt(block, 5)
		default:
			indexing := c&0xc0 == 0x40
			var idx int
			idx, block, err = readInt(block, map[bool]int{true: 6, false: 4}[indexing])
			if err == nil && idx == 0 {
				block, err = skipString(block)
			}
			if err == nil {
				block, err = skipString(block)
			}
			out = append(out, hpackRep{indexing: indexing, nameLiteral: idx == 0})
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func fileOwn(t *testing.T, w *Wire, g uint64, b *ownBlock) {
	t.Helper()
	var out outgoing
	copy(out.Traceparent[:], b.oursTP)
	out.TracestateLen = uint16(copy(out.Tracestate[:], b.oursTS))
	for _, i := range b.app {
		f := b.fields[i]
		switch f.Name {
		case "traceparent":
			out.App |= 1
			copy(out.AppTraceparent[:], f.Value)
			out.AppTraceparentLen = uint8(len(f.Value))
		case "tracestate":
			if out.App&2 == 0 {
				out.AppTracestateLen = uint16(len(f.Value))
				if f.Value == b.oursTS { // as the probes tell: the app forwards ours
					out.App |= 4
				}
			}
			out.App |= 2
		}
	}
	out.FiledNs = monotonicNow()
	if err := w.Map("outgoing_h2").Put(h2Stream{G: g, StreamID: b.stream}, out); err != nil {
		t.Fatal(err)
	}
}

// ownWant is what the model says of a connection's blocks.
type ownWant struct {
	blocks                                     [][]hpack.HeaderField
	inserted, replaced, tracestate, notFound   int
	unsafe, tsKept, split                      int
	literalTP, indexedTP, huffmanTS, literalTS int // what the cases exercised
}

func TestHTTP2OwnFieldsProperty(t *testing.T) {
	w, ln, gid, r, seed := propertySetup(t, 3)
	defer ln.Close()
	defer runtime.UnlockOSThread()
	cases := 300
	if testing.Short() {
		cases = 40
	}
	var total ownWant
	before, _ := w.Counts()
	spanSeq := 0
	for c := 0; c < cases; c++ {
		var encBuf bytes.Buffer
		enc := hpack.NewEncoder(&encBuf)
		var blocks []*ownBlock
		// The model's view of the peer's table: for each of the app's values the
		// encoder added, what the peer added in its place.
		peerHas := map[string]string{}
		tsChanged := false // a tracestate field the peer's table keeps got ours
		var want ownWant
		var buf bytes.Buffer
		buf.WriteString(http2.ClientPreface)
		fr := http2.NewFramer(&buf, nil)
		fr.WriteSettings()
		var bounds []int // where each write ends, in buf
		for i, n := 0, 1+r.IntN(12); i < n; i++ {
			b := &ownBlock{stream: uint32(1 + 2*i)}
			spanSeq++
			b.oursTP = fmt.Sprintf("00-%032x-%016x-01", 0x29000000+spanSeq, spanSeq)
			switch r.IntN(4) {
			case 0:
			case 1, 2:
				b.oursTS = randomTracestate(r, 1+r.IntN(3), 12)
			default:
				b.oursTS = randomTracestate(r, 1+r.IntN(8), 30)
			}
			b.fields = []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
				{Name: ":path", Value: fmt.Sprintf("/pkg.Service/M%d", r.IntN(3))}, {Name: ":authority", Value: "backend:8080"}}
			var extra []appField
			for k := r.IntN(4); k > 0; k-- {
				extra = append(extra, appField{name: fmt.Sprintf("x-h%d", r.IntN(4)), value: strings.Repeat(string(rune('a'+r.IntN(3))), 1+r.IntN(40))})
			}
			if r.IntN(10) < 7 {
				extra = append(extra, appField{name: "traceparent", value: appTraceparents[r.IntN(len(appTraceparents))], sensitive: r.IntN(6) == 0})
			}
			if r.IntN(2) == 0 {
				v := b.oursTS
				if v == "" || r.IntN(2) == 0 { // not ours: longer, shorter
					v = randomTracestate(r, 1+r.IntN(6), 20)
				}
				extra = append(extra, appField{name: "tracestate", value: v, sensitive: r.IntN(6) == 0})
			}
			r.Shuffle(len(extra), func(i, j int) { extra[i], extra[j] = extra[j], extra[i] })
			for _, f := range extra {
				if f.name == "traceparent" || f.name == "tracestate" {
					b.app = append(b.app, len(b.fields))
				}
				b.fields = append(b.fields, hpack.HeaderField{Name: f.name, Value: f.value, Sensitive: f.sensitive})
			}
			encBuf.Reset()
			for _, f := range b.fields {
				enc.WriteField(f)
			}
			block := bytes.Clone(encBuf.Bytes())
			rs, err := reps(block)
			if err != nil || len(rs) != len(b.fields) {
				t.Fatalf("case %d: %d representations for %d fields: %v", c, len(rs), len(b.fields), err)
			}
			b.multiFrame = len(b.app) > 0 && r.IntN(8) == 0
			last := buf.Len() // where the block's last frame begins
			if b.multiFrame {
				cut := 1 + r.IntN(len(block)-1)
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: b.stream, BlockFragment: block[:cut]})
				last = buf.Len()
				fr.WriteContinuation(b.stream, true, block[cut:])
			} else {
				p := http2.HeadersFrameParam{StreamID: b.stream, BlockFragment: block, EndHeaders: true, EndStream: r.IntN(2) == 0}
				if r.IntN(4) == 0 {
					p.PadLength = uint8(r.IntN(40))
				}
				if r.IntN(4) == 0 {
					p.Priority = http2.PriorityParam{Weight: uint8(r.IntN(256))}
				}
				fr.WriteHeaders(p)
			}
			// A block whose last frame a write splits goes as written; else whole.
			split := r.IntN(8) == 0
			if split {
				bounds = append(bounds, last+1+r.IntN(buf.Len()-last-1))
			}
			bounds = append(bounds, buf.Len())
			blocks = append(blocks, b)

			// The model.
			got := append([]hpack.HeaderField(nil), b.fields...)
			tpFound, tsFound := false, false
			tsGiven := false
			hasTP, hasTS, appTSOurs := false, false, false
			for _, i := range b.app {
				if b.fields[i].Name == "tracestate" && b.fields[i].Value == b.oursTS {
					appTSOurs = true
				}
			}
			for _, i := range b.app {
				f, rep := b.fields[i], rs[i]
				received := f.Value
				switch f.Name {
				case "traceparent":
					hasTP = true
					switch {
					case rep.indexed:
						if v, ok := peerHas[f.Value]; ok {
							received = v
						}
						want.indexedTP++
					case split || b.multiFrame:
					case rep.indexing && len(f.Value) < TraceparentLen:
						tpFound = true
						want.unsafe++
					default:
						tpFound = true
						received = b.oursTP
						want.replaced++
						want.literalTP++
					}
				case "tracestate":
					hasTS = true
					switch {
					case rep.indexed:
						if v, ok := peerHas[f.Value]; ok {
							received = v
						}
					case split || b.multiFrame:
					case f.Value == b.oursTS:
						tsFound = true // ours already
						want.huffmanTS++
					case !rep.nameLiteral: // the program finds it by its name only
					default: // its name a literal: the connection's first
						tsFound = true
						ours := b.oursTS
						if tsGiven {
							ours = ""
						}
						if rep.indexing && len(ours) > len(f.Value) {
							want.unsafe++
							break
						}
						received = ours
						tsGiven = true
						tsChanged = tsChanged || rep.indexing
						want.tracestate++
						want.literalTS++
					}
				}
				if !rep.indexed && rep.indexing {
					peerHas[f.Value] = received
				}
				got[i].Value = received
			}
			switch {
			case split:
				want.split++
			default:
				if hasTP && !tpFound {
					want.notFound++
				}
				if hasTS && !tsFound && !(appTSOurs && !tsChanged) {
					want.tsKept++
				}
				if !hasTP {
					got = append(got, hpack.HeaderField{Name: "traceparent", Value: b.oursTP})
					want.inserted++
				}
				if !hasTS && b.oursTS != "" {
					got = append(got, hpack.HeaderField{Name: "tracestate", Value: b.oursTS})
				}
			}
			want.blocks = append(want.blocks, got)
		}

		// Write, with each block's context filed just before its write.
		accepted := make(chan net.Conn, 1)
		go func() {
			conn, _ := ln.Accept()
			accepted <- conn
		}()
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		srv := <-accepted
		got := make(chan []byte, 1)
		go func() {
			b, _ := io.ReadAll(srv)
			srv.Close()
			got <- b
		}()
		all := buf.Bytes()
		for _, b := range blocks { // each under its stream: all at once
			fileOwn(t, w, gid, b)
		}
		from := 0
		for _, end := range bounds {
			if _, err := conn.Write(all[from:end]); err != nil {
				t.Fatal(err)
			}
			from = end
		}
		conn.Close()
		read := <-got

		// Decode what arrived, in one table, and compare.
		fail := func(format string, args ...any) {
			t.Fatalf("case %d (seed %d): %s", c, seed, fmt.Sprintf(format, args...))
		}
		if !bytes.HasPrefix(read, []byte(http2.ClientPreface)) {
			fail("no preface")
		}
		rd := http2.NewFramer(nil, bytes.NewReader(read[len(http2.ClientPreface):]))
		dec := hpack.NewDecoder(4096, nil)
		var fragment []byte
		bi := 0
		for {
			f, err := rd.ReadFrame()
			if err == io.EOF {
				break
			}
			if err != nil {
				fail("frame: %v", err)
			}
			var end bool
			switch f := f.(type) {
			case *http2.HeadersFrame:
				fragment, end = append(fragment, f.HeaderBlockFragment()...), f.HeadersEnded()
			case *http2.ContinuationFrame:
				fragment, end = append(fragment, f.HeaderBlockFragment()...), f.HeadersEnded()
			default:
				continue
			}
			if !end {
				continue
			}
			fields, err := dec.DecodeFull(fragment)
			if err != nil {
				fail("block %d: hpack: %v (the tables out of step)", bi, err)
			}
			fragment = fragment[:0]
			if bi >= len(want.blocks) {
				fail("more blocks than written")
			}
			if !sameFields(fields, want.blocks[bi]) {
				fail("block %d (stream %d, app's fields %v, ours %s %q):\n got %v\nwant %v", bi, blocks[bi].stream, blocks[bi].app, blocks[bi].oursTP, blocks[bi].oursTS, brief(fields), brief(want.blocks[bi]))
			}
			bi++
		}
		if bi != len(blocks) {
			fail("%d blocks read, %d written", bi, len(blocks))
		}
		total.inserted += want.inserted
		total.replaced += want.replaced
		total.tracestate += want.tracestate
		total.notFound += want.notFound
		total.unsafe += want.unsafe
		total.tsKept += want.tsKept
		total.split += want.split
		total.literalTP += want.literalTP
		total.indexedTP += want.indexedTP
		total.huffmanTS += want.huffmanTS
		total.literalTS += want.literalTS
		var k h2Stream
		for it := w.Map("outgoing_h2").Iterate(); it.Next(&k, new(outgoing)); {
			w.Map("outgoing_h2").Delete(k)
		}
	}
	after, _ := w.Counts()
	d := func(a, b uint64) int { return int(a - b) }
	t.Logf("%d connections: %d traceparents inserted; of the app's: %d replaced (literals), %d sent again as an index; tracestates: %d ours already, %d given ours (literal names); left: %d traceparents not found, %d that would grow in the table, %d tracestates, %d blocks split",
		cases, total.inserted, total.replaced, total.indexedTP, total.huffmanTS, total.tracestate, total.notFound, total.unsafe, total.tsKept, total.split)
	got := []int{d(after.H2Inserted, before.H2Inserted), d(after.H2Replaced, before.H2Replaced), d(after.H2Tracestate, before.H2Tracestate),
		d(after.H2NotFound, before.H2NotFound), d(after.H2Unsafe, before.H2Unsafe), d(after.H2TSKept, before.H2TSKept), d(after.H2Split, before.H2Split),
		d(after.H2Failed, before.H2Failed), d(after.H2TooLarge, before.H2TooLarge)}
	wantCounts := []int{total.inserted, total.replaced, total.tracestate, total.notFound, total.unsafe, total.tsKept, total.split, 0, 0}
	if fmt.Sprint(got) != fmt.Sprint(wantCounts) {
		t.Errorf("counters (inserted, replaced, tracestate, not found, unsafe, tracestate kept, split, failed, too large): %v, want %v", got, wantCounts)
	}
	if total.replaced == 0 || total.indexedTP == 0 || total.tracestate == 0 || total.huffmanTS == 0 || total.unsafe == 0 {
		t.Errorf("the cases did not exercise every path: %+v", total)
	}
}

// TraceparentLen is a version 00 traceparent's length.
const TraceparentLen = 55
