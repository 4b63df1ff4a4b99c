package tracestatetest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"go.opentelemetry.io/otel/trace"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// The tracestate check of the server probes (bpf/include/tracestate.h), on the kernel:
// named hostile values, and random ones against a model written from the W3C rules
// with OpenTelemetry's own member check. Whatever it keeps must parse with
// trace.ParseTraceState to the same string: the span (which the launcher makes with
// that) and the wire (which gets the bytes) then agree.

const (
	keptMax  = 512  // TRACESTATE_MAX
	readMax  = 4096 // TRACESTATE_READ_MAX
	fieldMax = 8    // TRACESTATE_FIELDS
)

type checker struct {
	coll *ebpf.Collection
}

func newChecker(t testing.TB) *checker {
	t.Helper()
	testenv.RequireRoot(t)
	spec, err := loadCheck()
	if err != nil {
		t.Fatal(err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(coll.Close)
	return &checker{coll: coll}
}

// run checks the tracestate made of fields, each a header field's value, with program
// prog: "take" (fields as the gRPC probe finds them), "take_values" (an http.Header's
// []string, as net/http's finds them). It returns what is kept ("" for nothing).
func (c *checker) run(t testing.TB, prog string, fields []string) string {
	t.Helper()
	var tc checkTsCase
	// The check reads the strings in this process, as the probes read the app's.
	values := make([]string, len(fields))
	for i, f := range fields {
		values[i] = strings.Clone(f)
	}
	if prog == "take_values" {
		if len(values) > 0 {
			tc.Values.Ptr = uint64(uintptr(unsafe.Pointer(unsafe.SliceData(values))))
		}
		tc.Values.Len, tc.Values.Cap = int64(len(values)), int64(cap(values))
	} else {
		tc.S.Fields = uint32(len(values))
		for i, v := range values {
			if i < len(tc.S.Field) {
				tc.S.Field[i].Ptr = uint64(uintptr(unsafe.Pointer(unsafe.StringData(v))))
				tc.S.Field[i].Len = int64(len(v))
			}
		}
	}
	m := c.coll.Maps["cases"]
	if err := m.Put(uint32(0), &tc); err != nil {
		t.Fatal(err)
	}
	if _, err := c.coll.Programs[prog].Run(&ebpf.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	runtime.KeepAlive(values)
	if err := m.Lookup(uint32(0), &tc); err != nil {
		t.Fatal(err)
	}
	if tc.Len > keptMax {
		t.Fatalf("kept %d bytes", tc.Len)
	}
	return string(tc.Out[:tc.Len])
}

// check runs fields through both programs and holds what is kept to want, and to
// OpenTelemetry's parser.
func (c *checker) check(t *testing.T, name string, fields []string, want string) {
	t.Helper()
	for _, prog := range []string{"take", "take_values"} {
		got := c.run(t, prog, fields)
		if got != want {
			t.Errorf("%s (%s): kept %q\nwant %q", name, prog, got, want)
		}
		if ts, err := trace.ParseTraceState(got); err != nil || ts.String() != got {
			t.Errorf("%s (%s): kept %q, which OpenTelemetry reads as %q (%v)", name, prog, got, ts.String(), err)
		}
	}
}

// members lists members f(1)...f(n), but those f makes "".
func members(n int, f func(i int) string) string {
	var m []string
	for i := 1; i <= n; i++ {
		if s := f(i); s != "" {
			m = append(m, s)
		}
	}
	return strings.Join(m, ",")
}

// kv is a member of length 4 + n: "p01=vvv...".
func kv(p string, n int) func(i int) string {
	return func(i int) string { return fmt.Sprintf("%s%02d=%s", p, i, strings.Repeat("v", n)) }
}

// but is f without member skip.
func but(f func(i int) string, skip int) func(i int) string {
	return func(i int) string {
		if i == skip {
			return ""
		}
		return f(i)
	}
}

var (
	plain      = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
	exactly512 = "a=" + strings.Repeat("x", 254) + ",b=" + strings.Repeat("y", 253)
	// 11 members of 44 and one of 204 in fourth place: 699 bytes, 494 without it.
	longInside = members(12, func(i int) string {
		if i == 4 {
			return "big=" + strings.Repeat("B", 200)
		}
		return kv("k", 40)(i)
	})
	shortOnly = members(30, kv("key", 20))                                              // 30 of 26: 809 bytes; 19 fit (512)
	most      = members(32, kv("k", 123))                                               // 32 of 127: 4095 bytes; 4 fit (511)
	fortyOf   = members(40, func(i int) string { return fmt.Sprintf("k%d=v%d", i, i) }) // over the 32-member limit
)

// Hostile and odd values, and what must be kept of each.
var fixtures = []struct {
	name   string
	fields []string
	want   string
}{
	{"plain", []string{plain}, plain},
	{"multi-tenant key", []string{"fw529a3039@dt=d0ZTVn0,1a@b=x"}, "fw529a3039@dt=d0ZTVn0,1a@b=x"},
	{"key characters", []string{"a_-*/9=v"}, "a_-*/9=v"},
	{"value characters", []string{"k= !\"#$%&'()*+-./09:;<>?@AZ[\\]^_`az{|}~"}, "k= !\"#$%&'()*+-./09:;<>?@AZ[\\]^_`az{|}~"},
	{"whitespace and empty members", []string{" \t,, a=1 \t, ,\t b=2\t,"}, "a=1,b=2"},
	{"empty", []string{""}, ""},
	{"only whitespace", []string{" \t "}, ""},
	{"two fields", []string{"a=1", "b=2"}, "a=1,b=2"},
	{"two fields, one empty", []string{"a=1", "", "b=2"}, "a=1,b=2"},
	{"eight fields", []string{"a=1", "b=2", "c=3", "d=4", "e=5", "f=6", "g=7", "h=8"}, "a=1,b=2,c=3,d=4,e=5,f=6,g=7,h=8"},
	{"32 members", []string{members(32, kv("k", 1))}, members(32, kv("k", 1))},
	{"key of 256", []string{"k" + strings.Repeat("x", 255) + "=v"}, "k" + strings.Repeat("x", 255) + "=v"},
	{"value of 256", []string{"k=" + strings.Repeat("v", 256)}, "k=" + strings.Repeat("v", 256)},
	{"exactly 512", []string{exactly512}, exactly512},

	// Too long: whole members go, those over 128 characters first, then from the end.
	{"513: both members over 128", []string{exactly512 + "y"}, ""},
	{"over 512, a long member inside", []string{longInside}, members(12, but(kv("k", 40), 4))},
	{"over 512 of short members", []string{shortOnly}, members(19, kv("key", 20))},
	{"over 512 across fields", []string{members(10, kv("a", 40)), members(10, kv("b", 40))}, members(10, kv("a", 40)) + "," + members(1, kv("b", 40))},
	{"over 512, every member long", []string{members(5, kv("k", 130))}, ""},
	{"4095 bytes", []string{most}, members(4, kv("k", 123))},

	// Malformed: dropped whole.
	{"40 members", []string{fortyOf}, ""},
	{"33 members", []string{members(33, kv("k", 1))}, ""},
	{"33 members across fields", []string{members(16, kv("a", 1)), members(17, kv("b", 1))}, ""},
	{"duplicate key", []string{"a=1,b=2,a=3"}, ""},
	{"duplicate key across fields", []string{"a=1", "a=2"}, ""},
	{"header injection", []string{"k=v\r\nX-Injected: 1"}, ""},
	{"line feed", []string{"k=v\nx=y"}, ""},
	{"NUL", []string{"k=v\x00"}, ""},
	{"tab inside a value", []string{"k=a\tb"}, ""},
	{"not ASCII", []string{"k=caf\xc3\xa9"}, ""},
	{"DEL", []string{"k=v\x7f"}, ""},
	{"no '='", []string{"a=1,b"}, ""},
	{"empty key", []string{"=v"}, ""},
	{"empty value", []string{"k="}, ""},
	{"value of spaces", []string{"k=   "}, ""},
	{"'=' in a value", []string{"k=a=b"}, ""},
	{"upper-case key", []string{"Congo=x"}, ""},
	{"space in a key", []string{"con go=x"}, ""},
	{"space before '='", []string{"k =v"}, ""},
	{"digit first, no tenant", []string{"1k=v"}, ""},
	{"'@' first", []string{"@s=v"}, ""},
	{"two '@'", []string{"a@b@c=v"}, ""},
	{"empty system", []string{"t@=v"}, ""},
	{"system of 15", []string{"t@" + strings.Repeat("s", 15) + "=v"}, ""},
	{"system with a digit first", []string{"t@1s=v"}, ""},
	{"tenant of 242", []string{strings.Repeat("t", 242) + "@s=v"}, ""},
	{"key of 257", []string{"k" + strings.Repeat("x", 256) + "=v"}, ""},
	{"value of 257", []string{"k=" + strings.Repeat("v", 257)}, ""},
	{"a bad member past what is kept", []string{shortOnly + ",BAD=1"}, ""},
	{"nine fields", []string{"a=1", "b=2", "c=3", "d=4", "e=5", "f=6", "g=7", "h=8", "i=9"}, ""},
	{"over 4096 bytes", []string{"k=v" + strings.Repeat(" ", readMax)}, ""},
	{"over 4096 bytes across fields", []string{"a=" + strings.Repeat("1", 2047), "b=" + strings.Repeat("2", 2048)}, ""},
}

func TestTracestateFixtures(t *testing.T) {
	c := newChecker(t)
	for _, f := range fixtures {
		if f.want != model(f.fields) {
			t.Errorf("%s: the fixture wants %q, the model %q", f.name, f.want, model(f.fields))
		}
		c.check(t, f.name, f.fields, f.want)
	}
}

// A key twice is found wherever the two are: keys are hashed a word at a time as they
// are read, so the same key must hash the same at any offset, across a chunk's end
// (64 bytes) and across fields; and a key one byte apart must not.
func TestTracestateDuplicateAnywhere(t *testing.T) {
	c := newChecker(t)
	for _, n := range []int{1, 7, 8, 9, 16, 17, 40, 255} {
		key := "k" + strings.Repeat("x", n-1)
		other := key[:n-1] + "y"
		if n == 1 {
			other = "y"
		}
		for pad := 1; pad < 80; pad += 3 {
			first := "p=" + strings.Repeat("v", pad) + "," + key + "=1"
			for _, second := range [][]string{{first + ",q=2," + key + "=2"}, {first, key + "=2"}, {first, "q=" + strings.Repeat("w", 1+pad/2) + "," + key + "=2"}} {
				if got := c.run(t, "take", second); got != "" {
					t.Errorf("key of %d twice, %d in: kept %q", n, pad, got)
				}
				distinct := append([]string(nil), second...)
				last := len(distinct) - 1
				distinct[last] = strings.Replace(distinct[last], ","+key+"=2", ","+other+"=2", 1)
				if !strings.Contains(distinct[last], ","+other+"=2") {
					distinct[last] = other + "=2"
				}
				if want := model(distinct); want == "" || c.run(t, "take", distinct) != want {
					t.Errorf("keys of %d one byte apart, %d in: kept %q, want %q", n, pad, c.run(t, "take", distinct), want)
				}
			}
		}
	}
}

// model is the W3C rules, written plainly: fields combined with commas; members
// trimmed of whitespace, empty ones skipped; each checked by OpenTelemetry's parser;
// at most 32, no key twice; cut by whole members to 512 (over 128 first, then from
// the end). Past what the probes look at (8 fields, 4096 bytes): nothing.
func model(fields []string) string {
	n := 0
	for _, f := range fields {
		n += len(f)
	}
	if len(fields) == 0 || len(fields) > fieldMax || n > readMax {
		return ""
	}
	var kept []string
	seen := map[string]bool{}
	for _, m := range strings.Split(strings.Join(fields, ","), ",") {
		m = strings.Trim(m, " \t")
		if m == "" {
			continue
		}
		k, _, ok := strings.Cut(m, "=")
		if ts, err := trace.ParseTraceState(m); !ok || err != nil || ts.Len() != 1 || seen[k] {
			return ""
		}
		seen[k] = true
		kept = append(kept, m)
	}
	if len(kept) > 32 {
		return ""
	}
	if len(strings.Join(kept, ",")) <= keptMax {
		return strings.Join(kept, ",")
	}
	var short []string
	for _, m := range kept {
		if len(m) <= 128 {
			short = append(short, m)
		}
	}
	for len(strings.Join(short, ",")) > keptMax {
		short = short[:len(short)-1]
	}
	return strings.Join(short, ",")
}

// gen makes random tracestates near every rule's edge.
type gen struct{ r *rand.Rand }

func (g gen) pick(s string) byte { return s[g.r.IntN(len(s))] }

func (g gen) key() string {
	const first, rest = "abcdefghijklmnopqrstuvwxyz", "abcdefghijklmnopqrstuvwxyz0123456789_-*/"
	n := 1 + g.r.IntN(6)
	if g.r.IntN(20) == 0 {
		n = 250 + g.r.IntN(10)
	}
	b := []byte{g.pick(first)}
	for len(b) < n {
		b = append(b, g.pick(rest))
	}
	switch g.r.IntN(30) {
	case 0: // multi-tenant
		sys := []byte{g.pick(first)}
		for i := g.r.IntN(16); i > 0; i-- {
			sys = append(sys, g.pick(rest))
		}
		b = append(append(b, '@'), sys...)
	case 1:
		b[g.r.IntN(len(b))] = g.pick("ABZ @=.,\t")
	case 2:
		b[0] = g.pick("0123456789@")
	}
	return string(b)
}

func (g gen) value() string {
	n := 1 + g.r.IntN(12)
	switch g.r.IntN(10) {
	case 0:
		n = 100 + g.r.IntN(60) // around 128 as a member
	case 1:
		n = 250 + g.r.IntN(10)
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(0x21 + g.r.IntN(0x7e-0x21+1))
		if b[i] == ',' || b[i] == '=' {
			b[i] = 'x'
		}
		if g.r.IntN(15) == 0 {
			b[i] = ' '
		}
	}
	if g.r.IntN(40) == 0 {
		b[g.r.IntN(n)] = g.pick("=,\t\r\n\x00\x7f\x80")
	}
	return string(b)
}

func (g gen) ows() string {
	if g.r.IntN(4) > 0 {
		return ""
	}
	return strings.Repeat(string(g.pick(" \t")), 1+g.r.IntN(3))
}

func (g gen) fields() []string {
	var ms []string
	n := g.r.IntN(12)
	if g.r.IntN(5) == 0 {
		n = 25 + g.r.IntN(12) // around 32
	}
	var keys []string
	for i := 0; i < n; i++ {
		k := g.key()
		if len(keys) > 0 && g.r.IntN(40) == 0 {
			k = keys[g.r.IntN(len(keys))] // a duplicate
		}
		keys = append(keys, k)
		m := g.ows() + k + "=" + g.value() + g.ows()
		if g.r.IntN(30) == 0 {
			m = g.ows() // an empty member
		}
		ms = append(ms, m)
	}
	list := strings.Join(ms, ",")
	// Split into header fields at commas, sometimes.
	var fields []string
	for list != "" && g.r.IntN(3) == 0 {
		i := strings.IndexByte(list, ',')
		if i < 0 {
			break
		}
		fields, list = append(fields, list[:i]), list[i+1:]
	}
	return append(fields, list)
}

func TestTracestateProperty(t *testing.T) {
	c := newChecker(t)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("TRACESTATE_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d (TRACESTATE_SEED=%d to repeat)", seed, seed)
	g := gen{rand.New(rand.NewPCG(seed, 2))}
	cases := 20000
	if testing.Short() {
		cases = 2000
	}
	var kept, cut, dropped int
	for i := 0; i < cases; i++ {
		fields := g.fields()
		want := model(fields)
		prog := []string{"take", "take_values"}[i%2]
		got := c.run(t, prog, fields)
		if got != want {
			t.Fatalf("case %d (%s): %q\nkept %q\nwant %q", i, prog, fields, got, want)
		}
		if ts, err := trace.ParseTraceState(got); err != nil || ts.String() != got {
			t.Fatalf("case %d: kept %q, which OpenTelemetry reads as %q (%v)", i, got, ts.String(), err)
		}
		switch all := strings.Join(fields, ","); {
		case want == "":
			dropped++
		case len(want) < len(all) && len(want) >= keptMax-128 && strings.Count(want, ",") < strings.Count(all, ","):
			cut++
		default:
			kept++
		}
	}
	t.Logf("%d cases: %d kept, %d cut to fit, %d dropped (malformed, too long, none)", cases, kept, cut, dropped)
	if kept == 0 || cut == 0 || dropped == 0 {
		t.Errorf("the cases do not cover every outcome")
	}
}

// The check's cost in the kernel (BPF_PROG_TEST_RUN, repeated), for a tracestate as
// most requests carry one, one of 512 bytes, one cut to fit, and the most it reads.
func TestTracestateCost(t *testing.T) {
	c := newChecker(t)
	for _, f := range []struct {
		name  string
		value string
	}{
		{"none", ""},
		{"2 members", plain},
		{"512 bytes", exactly512},
		{"cut to fit", shortOnly},
		{"the most read", most},
	} {
		var tc checkTsCase
		value := strings.Clone(f.value)
		if value != "" {
			tc.S.Fields = 1
			tc.S.Field[0].Ptr = uint64(uintptr(unsafe.Pointer(unsafe.StringData(value))))
			tc.S.Field[0].Len = int64(len(value))
		}
		m := c.coll.Maps["cases"]
		if err := m.Put(uint32(0), &tc); err != nil {
			t.Fatal(err)
		}
		// Each run starts from the same fields; the scratch's state is reset by the check.
		_, d, err := c.coll.Programs["take_timed"].Benchmark(make([]byte, 14), 2000, nil)
		runtime.KeepAlive(value)
		if err != nil {
			t.Fatal(err)
		}
		m.Lookup(uint32(0), &tc)
		t.Logf("%-24s %6d bytes kept of %4d: %v a request", f.name, tc.Len, len(value), d)
	}
}
