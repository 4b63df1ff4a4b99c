package wire

import (
	"strings"
	"testing"
)

// What the launcher says at exit: nothing when every request got its context, one
// line per kind of loss with every count otherwise.
func TestCountsReport(t *testing.T) {
	if r := (Counts{HTTP1Inserted: 5, HTTP1Replaced: 3, H2Inserted: 2, H2Replaced: 1, H2Tracestate: 1}).Report(); len(r) != 0 {
		t.Errorf("nothing lost, yet: %q", r)
	}
	r := (Counts{H2Split: 1, HTTP1Split: 2, HTTP1Missed: 3, H2NotFound: 4, H2Unsafe: 5, H2TSKept: 6, HTTP1Replaced: 7, H2Replaced: 8}).Report()
	if len(r) != 2 || !strings.Contains(r[0], "1 HTTP/2 requests went without it") ||
		!strings.Contains(r[1], "20 trace context headers the app wrote itself (forwarded, or its own) went as written instead of ours (HTTP/1: 2 came in two writes, 3 were not found") ||
		!strings.Contains(r[1], "HTTP/2: 4 traceparents were no literal") || !strings.Contains(r[1], "5 would have grown") ||
		!strings.Contains(r[1], "6 tracestates not ours") || !strings.HasSuffix(r[1], "; 15 got ours in place") {
		t.Errorf("report:\n%s", strings.Join(r, "\n"))
	}
}
