package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// getN sends n requests to /items/ID, ID from prefix-0, one connection.
func getN(t *testing.T, addr, prefix string, n int) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{}}
	for i := 0; i < n; i++ {
		resp, err := client.Get(fmt.Sprintf("http://%s/items/%s-%d", addr, prefix, i))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// Every span is delivered or counted as dropped: a collector that refuses every third
// export (a status the exporter does not retry) loses those spans, and the launcher
// says how many, exactly.
func TestEverySpanIsDeliveredOrCounted(t *testing.T) {
	tg := testenv.BuildTargets(t, "httpserver", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})[0]
	recv := testenv.StartReceiver(t)
	recv.FailEvery(3)
	r, addr := tracedServer(t, tg, recv, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=10", "OTEL_BSP_SCHEDULE_DELAY=20")
	firstRequest(t, addr, "/items/first")
	const n = 300
	getN(t, addr, "n", n)
	r.signal(syscall.SIGTERM)
	r.wait(15 * time.Second)
	received, dropped := len(recv.Spans()), droppedSpans(r.stderr.String())
	if received+dropped != n+1 || dropped == 0 || received == 0 {
		t.Errorf("%d spans received and %d said dropped, of %d made\n%s", received, dropped, n+1, r.stderr)
	}
	if !strings.Contains(r.stderr.String(), "in failed exports to otlp") {
		t.Errorf("the drops are not said to be failed exports:\n%s", r.stderr)
	}
}

// A collector that stalls for 2 s loses nothing: the spans made meanwhile wait in the
// launcher's queue (bounded by --max-queue) and go once it answers; one that stalls
// past a small bound loses the rest, and the launcher says how many and why.
func TestStalledCollector(t *testing.T) {
	tg := testenv.BuildTargets(t, "httpserver", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})[0]
	for _, c := range []struct {
		maxQueue string
		lossless bool
	}{{"", true}, {"--max-queue=100", false}} {
		recv := testenv.StartReceiver(t)
		recv.CountOnly()
		var flags []string
		if c.maxQueue != "" {
			flags = append(flags, "LAUNCH_MAX_QUEUE=100")
		}
		r, addr := tracedServer(t, tg, recv, append(flags, "OTEL_BSP_SCHEDULE_DELAY=20", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=50")...)
		firstRequest(t, addr, "/items/first")
		recv.Pause(2 * time.Second)
		const n = 1000
		getN(t, addr, "stalled", n)
		r.signal(syscall.SIGTERM)
		r.wait(20 * time.Second)
		received, dropped := recv.Received(), droppedSpans(r.stderr.String())
		if received+dropped != n+1 || (dropped == 0) != c.lossless {
			t.Errorf("%s: %d spans received and %d said dropped, of %d made\n%s", c.maxQueue, received, dropped, n+1, r.stderr)
		}
		if !c.lossless && !strings.Contains(r.stderr.String(), "with the queue to otlp full (100 spans") {
			t.Errorf("%s: the drops are not said to be a full queue:\n%s", c.maxQueue, r.stderr)
		}
	}
}

// With no OTEL_EXPORTER_OTLP_ENDPOINT, spans go to http://localhost:4317 in plaintext,
// as the specification says.
func TestDefaultEndpointIsPlaintext(t *testing.T) {
	tg := testenv.BuildTargets(t, "httpserver", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})[0]
	l, err := net.Listen("tcp", "127.0.0.1:4317")
	if err != nil {
		testenv.Require(t, false, "port 4317 free for the default endpoint: %v", err)
	}
	l.Close()
	recv := testenv.StartReceiverAt(t, "127.0.0.1:4317")
	r, addr := tracedServer(t, tg, recv, "OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=", "OTEL_EXPORTER_OTLP_PROTOCOL=", "OTEL_EXPORTER_OTLP_INSECURE=")
	firstRequest(t, addr, "/items/default")
	if _, ok := recv.WaitFor(10*time.Second, byPath("/items/default")); !ok {
		t.Errorf("no span at the default endpoint\n%s", r.stderr)
	}
}

// A setting no export could work with is said at once, in one line naming the
// variable; the app runs untraced (or, required, not at all), without waiting.
func TestBadEndpointSaidAtStart(t *testing.T) {
	for _, value := range []string{"garbage", "ftp://collector:4317", "http://127.0.0.1:99999", "http://"} {
		env := append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT="+value, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=", "OTEL_SDK_DISABLED=")
		begin := time.Now()
		e, out, stderr := runLaunch(t, opts{env: env}, launchBin(t), "--", testApp(t), "report")
		took := time.Since(begin)
		if e.code != 0 || !strings.Contains(out, "pid") || took > 2*time.Second {
			t.Errorf("%s: launcher %v after %s; want the app run at once\n%s", value, e, took, stderr)
		}
		want := "launch: warning: not tracing " + testApp(t) + ": OTEL_EXPORTER_OTLP_ENDPOINT=" + value + ": "
		if !strings.HasPrefix(stderr, want) || strings.Count(stderr, "\n") != 1 || strings.Contains(stderr, "deadline") {
			t.Errorf("%s: stderr %q, want one line starting %q", value, stderr, want)
		}
		e, _, stderr = runLaunch(t, opts{env: env}, launchBin(t), "--require-instrumentation", "--", testApp(t), "report")
		if e.code != 1 || !strings.Contains(stderr, "OTEL_EXPORTER_OTLP_ENDPOINT="+value) {
			t.Errorf("%s, required: launcher %v\n%s", value, e, stderr)
		}
	}
}

// An unsupported sampler is said once, in the launcher's words; the SDK's own reading
// of the variable says nothing more.
func TestInvalidSamplerSaidOnce(t *testing.T) {
	tg := testenv.BuildTargets(t, "httpserver", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})[0]
	recv := testenv.StartReceiver(t)
	r, addr := tracedServer(t, tg, recv, "OTEL_TRACES_SAMPLER=bogus")
	firstRequest(t, addr, "/items/sampled")
	if _, ok := recv.WaitFor(10*time.Second, byPath("/items/sampled")); !ok {
		t.Errorf("no span with the default sampler in place of the bogus one\n%s", r.stderr)
	}
	r.signal(syscall.SIGTERM)
	r.wait(10 * time.Second)
	stderr := r.stderr.String()
	want := "launch: warning: OTEL_TRACES_SAMPLER=bogus is not supported"
	if !strings.HasPrefix(stderr, want) || strings.Count(stderr, "\n") != 1 {
		t.Errorf("stderr %q, want exactly one line, %q...", stderr, want)
	}
}

// An incoming traceparent is joined only if valid (W3C trace context): version 00 has
// exactly four fields; a later version may have more, after a '-'.
func TestTraceparentVersions(t *testing.T) {
	tg := testenv.BuildTargets(t, "httpserver", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})[0]
	recv := testenv.StartReceiver(t)
	r, addr := tracedServer(t, tg, recv)
	firstRequest(t, addr, "/items/first")
	const tid, pid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	client := &http.Client{Transport: &http.Transport{}}
	for i, c := range []struct {
		traceparent string
		joined      bool
	}{
		{"00-" + tid + "-" + pid + "-01", true},
		{"00-" + tid + "-" + pid + "-01-deadbeef", false}, // version 00 with a fifth field
		{"00-" + tid + "-" + pid + "-01x", false},
		{"cc-" + tid + "-" + pid + "-01-what-comes-next", true}, // a later version's extra field
		{"cc-" + tid + "-" + pid + "-01", true},
		{"cc-" + tid + "-" + pid + "-01x", false},
		{"ff-" + tid + "-" + pid + "-01", false}, // version ff is forbidden
	} {
		path := fmt.Sprintf("/items/tp-%d", i)
		get(t, client, "http://"+addr+path, map[string]string{"Traceparent": c.traceparent})
		spans, ok := recv.WaitFor(10*time.Second, byPath(path))
		if !ok {
			t.Fatalf("no span for %s\n%s", path, r.stderr)
		}
		s := findPath(spans, path)
		if joined := s.TraceID == tid && s.ParentSpanID == pid; joined != c.joined {
			t.Errorf("traceparent %q: joined %v, want %v (trace %s parent %q)", c.traceparent, joined, c.joined, s.TraceID, s.ParentSpanID)
		}
	}
}
