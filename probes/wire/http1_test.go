package wire

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"testing"
)

// The HTTP/1 property test drives the socket programs attached to this test's own
// cgroup, as the app's: its goroutine files a trace context (as net/http's probe files
// it) and writes a random request head, with the app's own traceparent and tracestate
// lines or without, in random splits, to a loopback connection. The other end reads the
// bytes: every line of the head must be as written but for ours - an inserted
// traceparent (and tracestate) when the app wrote none, our values in the app's lines
// when it did (the tracestate by the rule of a model written here from the design), and
// the app's lines that the writes split left as they were - the body byte for byte, and
// the counters agreeing.

const (
	ourTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	appTraceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" // as forwarded
)

// h1Line is a header line of a generated head.
type h1Line struct {
	name, ows, value string
	kind             byte // 'p' traceparent, 's' tracestate, 0 another
}

type h1Case struct {
	method  string
	lines   []h1Line
	body    []byte
	ours    string // our tracestate ("": none)
	head    []byte
	wantApp byte // OUTGOING_APP_* bits
}

func fileHTTP1(t *testing.T, w *Wire, g uint64, c *h1Case) {
	t.Helper()
	var out outgoing
	copy(out.Traceparent[:], ourTraceparent)
	out.MethodLen = uint8(copy(out.Method[:], c.method))
	out.App = c.wantApp
	out.TracestateLen = uint16(copy(out.Tracestate[:], c.ours))
	out.FiledNs = monotonicNow()
	if err := w.Map("outgoing_http1").Put(g, out); err != nil {
		t.Fatal(err)
	}
}

// randomTracestate is a well-formed list of n members, as the server probes keep one.
func randomTracestate(r *rand.Rand, n, valueMax int) string {
	var members []string
	for i := 0; i < n; i++ {
		members = append(members, fmt.Sprintf("k%d@v%d=%s", i, r.IntN(9), strings.Repeat(string(rune('a'+r.IntN(26))), 1+r.IntN(valueMax))))
	}
	s := strings.Join(members, ",")
	if len(s) > 512 {
		s = s[:strings.LastIndexByte(s[:512], ',')]
	}
	return s
}

func randomCase(r *rand.Rand) *h1Case {
	c := &h1Case{method: []string{"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}[r.IntN(6)]}
	switch r.IntN(4) {
	case 0:
	case 1, 2:
		c.ours = randomTracestate(r, 1+r.IntN(4), 20)
	default:
		c.ours = randomTracestate(r, 1+r.IntN(32), 60)
	}
	lines := []h1Line{{name: "Host", ows: " ", value: "backend:8080"}, {name: "User-Agent", ows: " ", value: "Go-http-client/1.1"}}
	for i := r.IntN(8); i > 0; i-- {
		name := []string{"Accept", "X-Forwarded-For", "Content-Type", "Traceparentx", "X-Traceparent", "Tracestatez", "Trace", "T", "Tracestat", "X-Long"}[r.IntN(10)]
		n := r.IntN(60)
		if name == "X-Long" {
			n = r.IntN(3000)
		}
		lines = append(lines, h1Line{name: name, ows: " ", value: strings.Repeat(string(rune('a'+r.IntN(26))), n)})
	}
	caseOf := func(name string) string {
		switch r.IntN(4) {
		case 0:
			return strings.ToLower(name)
		case 1:
			return strings.ToUpper(name)
		case 2:
			return name[:5] + strings.ToUpper(name[5:6]) + name[6:]
		}
		return name
	}
	ows := func() string { return []string{" ", " ", " ", "", "  ", "\t"}[r.IntN(6)] }
	for i := []int{0, 1, 1, 1, 2}[r.IntN(5)]; i > 0; i-- {
		v := appTraceparent
		if r.IntN(4) == 0 { // not a version 00 value: shorter, longer, empty
			v = strings.Repeat("f", r.IntN(90))
		}
		lines = append(lines, h1Line{name: caseOf("Traceparent"), ows: ows(), value: v, kind: 'p'})
		c.wantApp |= 1
	}
	for i := []int{0, 1, 1, 2}[r.IntN(4)]; i > 0; i-- {
		var v string
		switch k := r.IntN(6); {
		case k < 2 && c.ours != "": // forwarded as kept: ours, or its members in two lines
			v = c.ours
			if at := strings.IndexByte(c.ours, ','); at > 0 && r.IntN(2) == 0 {
				v = c.ours[:at]
				if i > 1 {
					lines = append(lines, h1Line{name: caseOf("Tracestate"), ows: ows(), value: v, kind: 's'})
					v, i = c.ours[at+1:], i-1
				}
			}
		case k == 2 && len(c.ours) > 2: // the same length, other bytes
			v = strings.ToUpper(c.ours[:1]) + c.ours[1:]
		default: // a forwarded one we would have cut or changed, or the app's own
			v = randomTracestate(r, r.IntN(40), 30)
			if r.IntN(3) == 0 {
				v = strings.ReplaceAll(v, ",", " , ")
			}
		}
		lines = append(lines, h1Line{name: caseOf("Tracestate"), ows: ows(), value: v, kind: 's'})
		c.wantApp |= 2
	}
	r.Shuffle(len(lines)-2, func(i, j int) { lines[i+2], lines[j+2] = lines[j+2], lines[i+2] })
	c.lines = lines
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s /pkg/items?id=%d HTTP/1.1\r\n", c.method, r.IntN(1000))
	for _, l := range lines {
		fmt.Fprintf(&b, "%s:%s%s\r\n", l.name, l.ows, l.value)
	}
	b.WriteString("\r\n")
	c.head = b.Bytes()
	if r.IntN(2) == 0 { // a body that looks like header lines: never touched
		c.body = []byte(fmt.Sprintf("traceparent: %s\r\ntracestate: a=b\r\n\r\n", appTraceparent))
		for i := r.IntN(3000); i > 0; i-- {
			c.body = append(c.body, byte(r.Uint32()))
		}
	}
	return c
}

// splits cuts the case's bytes into writes: the first holds the request line; cuts
// fall anywhere, and often near the app's lines: in their names, values, line ends.
func (c *h1Case) splits(r *rand.Rand) []int {
	total := len(c.head) + len(c.body)
	first := bytes.Index(c.head, []byte("\r\n")) + 2 + 16
	var near []int
	off := bytes.Index(c.head, []byte("\r\n")) + 2
	for _, l := range c.lines {
		n := len(l.name) + 1 + len(l.ows) + len(l.value) + 2
		if l.kind != 0 {
			near = append(near, off+r.IntN(14), off+n-2, off+n-1, off+n, off+12+r.IntN(max(1, n-12)))
		}
		off += n
	}
	near = append(near, len(c.head)-2, len(c.head)-1, len(c.head))
	cuts := map[int]bool{}
	for i := r.IntN(6); i > 0; i-- {
		at := 1 + r.IntN(total-1)
		if len(near) > 0 && r.IntN(3) > 0 {
			at = near[r.IntN(len(near))]
		}
		if at >= first && at < total {
			cuts[at] = true
		}
	}
	var writes []int
	last := 0
	for at := first; at < total; at++ {
		if cuts[at] {
			writes = append(writes, at-last)
			last = at
		}
	}
	return append(writes, total-last)
}

// h1Want is what the model says of a case written in those writes.
type h1Want struct {
	lines                                     []h1Line // the header lines that arrive, values trimmed
	inserted, replaced, tracestate, splitLeft int
}

func (c *h1Case) model(writes []int) h1Want {
	writeOf := func(off int) int {
		for i, end := 0, 0; i < len(writes); i++ {
			end += writes[i]
			if off < end {
				return i
			}
		}
		return len(writes)
	}
	var w h1Want
	if c.wantApp&1 == 0 {
		w.inserted = 1
		w.lines = append(w.lines, h1Line{name: "traceparent", value: ourTraceparent})
	}
	if c.wantApp&2 == 0 && c.ours != "" {
		w.lines = append(w.lines, h1Line{name: "tracestate", value: c.ours})
	}
	off := bytes.Index(c.head, []byte("\r\n")) + 2
	matched, done := 0, false
	for _, l := range c.lines {
		n := len(l.name) + 1 + len(l.ows) + len(l.value) + 2
		got := l
		// The name is known where its 12th byte is; the line is replaced if its end
		// ('\n') comes in the same write, else left as written.
		split := l.kind != 0 && writeOf(off+11) != writeOf(off+n-1)
		switch {
		case l.kind == 0:
		case split:
			w.splitLeft++
		case l.kind == 'p':
			got.value = ourTraceparent
			w.replaced++
		case l.kind == 's':
			v := l.value
			if !done && matched < len(c.ours) && len(v) > 0 && len(v) <= len(c.ours)-matched && c.ours[matched:matched+len(v)] == v &&
				(matched+len(v) == len(c.ours) || c.ours[matched+len(v)] == ',') {
				if matched+len(v) == len(c.ours) {
					matched = len(c.ours)
				} else {
					matched += len(v) + 1
				}
				break // the app's lines say what ours does so far: kept
			}
			got.value = ""
			if !done {
				got.value = c.ours[matched:]
			}
			done = true
			w.tracestate++
		}
		got.ows = ""
		w.lines = append(w.lines, got)
		off += n
	}
	return w
}

// parseHead splits a head into its request line and header lines (values trimmed of
// optional whitespace), and returns the rest.
func parseHead(b []byte) (string, []h1Line, []byte, error) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return "", nil, nil, fmt.Errorf("no end of head in %q", b)
	}
	rows := strings.Split(string(b[:end]), "\r\n")
	var lines []h1Line
	for _, row := range rows[1:] {
		name, value, ok := strings.Cut(row, ":")
		if !ok {
			return "", nil, nil, fmt.Errorf("line %q", row)
		}
		lines = append(lines, h1Line{name: name, value: strings.Trim(value, " \t")})
	}
	return rows[0], lines, b[end+4:], nil
}

func TestHTTP1ReplacementProperty(t *testing.T) {
	w, ln, gid, r, seed := propertySetup(t, 2)
	defer ln.Close()
	defer runtime.UnlockOSThread()
	cases := 2000
	if testing.Short() {
		cases = 200
	}
	var want h1Want
	before, _ := w.Counts()
	for i := 0; i < cases; i++ {
		c := randomCase(r)
		writes := c.splits(r)
		m := c.model(writes)

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
		if srv == nil {
			t.Fatal("accept failed")
		}
		got := make(chan []byte, 1)
		go func() {
			b, _ := io.ReadAll(srv)
			srv.Close()
			got <- b
		}()
		fileHTTP1(t, w, gid, c)
		all := append(append([]byte(nil), c.head...), c.body...)
		for off, n := 0, 0; n < len(writes); n++ {
			if _, err := conn.Write(all[off : off+writes[n]]); err != nil {
				t.Fatal(err)
			}
			off += writes[n]
		}
		conn.Close()
		b := <-got
		line, lines, body, err := parseHead(b)
		fail := func(format string, args ...any) {
			t.Fatalf("case %d (seed %d): %s\nwritten (writes %v):\n%q\nread:\n%q", i, seed, fmt.Sprintf(format, args...), writes, c.head, b)
		}
		if err != nil {
			fail("%v", err)
		}
		if want := string(c.head[:bytes.Index(c.head, []byte("\r\n"))]); line != want {
			fail("request line %q, want %q", line, want)
		}
		if len(lines) != len(m.lines) {
			fail("%d header lines, want %d: %v", len(lines), len(m.lines), m.lines)
		}
		for j := range lines {
			if lines[j].name != m.lines[j].name || lines[j].value != m.lines[j].value {
				fail("line %d: %s: %q, want %s: %q", j, lines[j].name, lines[j].value, m.lines[j].name, m.lines[j].value)
			}
		}
		if !bytes.Equal(body, c.body) {
			fail("the body changed")
		}
		want.inserted += m.inserted
		want.replaced += m.replaced
		want.tracestate += m.tracestate
		want.splitLeft += m.splitLeft
	}
	after, _ := w.Counts()
	d := func(a, b uint64) int { return int(a - b) }
	t.Logf("%d requests: %d traceparent lines inserted, %d of the app's replaced, %d of its tracestate lines given ours, %d lines split across writes left",
		cases, want.inserted, want.replaced, want.tracestate, want.splitLeft)
	if d(after.HTTP1Inserted, before.HTTP1Inserted) != want.inserted || d(after.HTTP1Replaced, before.HTTP1Replaced) != want.replaced ||
		d(after.HTTP1Tracestate, before.HTTP1Tracestate) != want.tracestate || d(after.HTTP1Split, before.HTTP1Split) != want.splitLeft ||
		after.HTTP1Missed != before.HTTP1Missed {
		t.Errorf("counters: inserted %d, replaced %d, tracestate %d, split %d, missed %d; want %d, %d, %d, %d, 0",
			d(after.HTTP1Inserted, before.HTTP1Inserted), d(after.HTTP1Replaced, before.HTTP1Replaced), d(after.HTTP1Tracestate, before.HTTP1Tracestate),
			d(after.HTTP1Split, before.HTTP1Split), d(after.HTTP1Missed, before.HTTP1Missed), want.inserted, want.replaced, want.tracestate, want.splitLeft)
	}
}
