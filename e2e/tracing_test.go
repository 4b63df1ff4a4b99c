package e2e

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

func freeAddr(t testing.TB) string {
	t.Helper()
	// A port below the kernel's ephemeral range (ip_local_port_range, from 32768 by
	// default): one in it, free when asked, can become an outgoing connection's local
	// port - other tests make hundreds - before the app binds it, and the app then
	// fails to listen. Each port is handed out once per run.
	for range 1000 {
		port := 20000 + rand.IntN(ephemeralLow()-20000)
		if _, taken := handedOut.LoadOrStore(port, true); taken {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // someone's: try another
		}
		l.Close()
		return l.Addr().String()
	}
	t.Fatal("no free port below the ephemeral range")
	return ""
}

// handedOut are the ports freeAddr gave.
var handedOut sync.Map

// ephemeralLow is the first port of the kernel's ephemeral range (32768 if unread).
var ephemeralLow = sync.OnceValue(func() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if fields := strings.Fields(string(b)); err == nil && len(fields) == 2 {
		if n, err := strconv.Atoi(fields[0]); err == nil && n > 21000 {
			return n
		}
	}
	return 32768
})

// tracedServer runs the test HTTP server under the launcher, exporting to recv.
func tracedServer(t *testing.T, tg testenv.Target, recv *testenv.Receiver, env ...string) (*run, string) {
	t.Helper()
	return tracedServerWith(t, tg, recv, nil, env...)
}

// tracedServerWith is tracedServer with launcher flags.
func tracedServerWith(t *testing.T, tg testenv.Target, recv *testenv.Receiver, flags []string, env ...string) (*run, string) {
	t.Helper()
	testenv.RequireRoot(t)
	addr := freeAddr(t)
	base := append(os.Environ(),
		"OTEL_EXPORTER_OTLP_ENDPOINT="+recv.Endpoint,
		"OTEL_BSP_SCHEDULE_DELAY=500", // longer than stopping takes: flushing at exit must deliver the last spans
		"OTEL_SERVICE_NAME=", "OTEL_RESOURCE_ATTRIBUTES=", "OTEL_TRACES_EXPORTER=", "OTEL_TRACES_SAMPLER=")
	argv := append(append([]string{launchBin(t)}, flags...), "--", tg.Path, addr)
	r := start(t, opts{env: append(base, env...), stdin: strings.NewReader("")}, argv...)
	return r, addr
}

// firstRequest connects the moment the port accepts and sends one request at once.
func firstRequest(t *testing.T, addr, path string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, addr)
			b, _ := io.ReadAll(c)
			c.Close()
			if !strings.HasPrefix(string(b), "HTTP/1.1 200") {
				t.Fatalf("first request: %q", b)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server never accepted: %v", err)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

func get(t *testing.T, client *http.Client, url string, headers map[string]string) (*http.Response, time.Time, time.Time) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	before := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, before, time.Now()
}

func byPath(path string) func([]testenv.Span) bool {
	return func(spans []testenv.Span) bool { return findPath(spans, path) != nil }
}

func findPath(spans []testenv.Span, path string) *testenv.Span {
	for i := range spans {
		if spans[i].Attrs["url.path"] == path {
			return &spans[i]
		}
	}
	return nil
}

// Server spans from the first request on, for each Go release: attributes, route,
// status, times, incoming context with few and many headers, and one span per request.
func TestServerSpans(t *testing.T) {
	for _, tg := range testenv.BuildTargets(t, "httpserver", testenv.Toolchains, []testenv.Variant{testenv.Plain}) {
		t.Run(tg.Toolchain, func(t *testing.T) {
			recv := testenv.StartReceiver(t)
			r, addr := tracedServer(t, tg, recv)
			firstRequest(t, addr, "/items/first")
			if _, ok := recv.WaitFor(10*time.Second, byPath("/items/first")); !ok {
				t.Fatalf("no span for the first request\nlauncher:\n%s", r.stderr)
			}
			client := &http.Client{Transport: &http.Transport{}}
			base := "http://" + addr

			// Attributes, route, incoming context (one header besides Host).
			const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
			resp, before, after := get(t, client, base+"/items/42?x=1", map[string]string{
				"User-Agent":  "e2e-agent/1.0",
				"Traceparent": "00-" + traceID + "-" + parentID + "-01",
				"Tracestate":  "vendor=value,other=x",
			})
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			spans, _ := recv.WaitFor(10*time.Second, byPath("/items/42"))
			s := findPath(spans, "/items/42")
			if s == nil {
				t.Fatalf("no span for /items/42\nlauncher:\n%s", r.stderr)
			}
			host, port, _ := net.SplitHostPort(addr)
			wantAttrs := map[string]any{
				"http.request.method":       "GET",
				"url.path":                  "/items/42",
				"url.scheme":                "http",
				"http.route":                "/items/{id}",
				"http.response.status_code": int64(200),
				"server.address":            host,
				"server.port":               mustAtoi(port),
				"client.address":            "127.0.0.1",
				"network.protocol.version":  "1.1",
				"user_agent.original":       "e2e-agent/1.0",
			}
			for k, v := range wantAttrs {
				if s.Attrs[k] != v {
					t.Errorf("%s = %v (%T), want %v", k, s.Attrs[k], s.Attrs[k], v)
				}
			}
			if s.Name != "GET /items/{id}" || s.Kind != tracepb.Span_SPAN_KIND_SERVER {
				t.Errorf("name %q kind %v", s.Name, s.Kind)
			}
			if s.TraceID != traceID || s.ParentSpanID != parentID || s.TraceState != "vendor=value,other=x" {
				t.Errorf("context: trace %s parent %s state %q, want %s %s", s.TraceID, s.ParentSpanID, s.TraceState, traceID, parentID)
			}
			// The server span lies within the client's view of the request. The clocks
			// are converted from CLOCK_MONOTONIC; allow for the conversion's error.
			const slack = 500 * time.Microsecond
			if s.Start.Before(before.Add(-slack)) || s.End.After(after.Add(slack)) || s.End.Before(s.Start) {
				t.Errorf("span [%s, %s] outside the request's window [%s, %s]", s.Start.Format(time.StampMicro), s.End.Format(time.StampMicro),
					before.Format(time.StampMicro), after.Format(time.StampMicro))
			}
			if s.Resource["service.name"] != tg.Path[strings.LastIndex(tg.Path, "/")+1:] ||
				s.Resource["telemetry.distro.name"] != "otel-go-launcher" || s.Resource["process.runtime.version"] != tg.Toolchain {
				t.Errorf("resource %v", s.Resource)
			}

			// Many headers: the map has grown past its first bucket or group.
			many := map[string]string{"Traceparent": "00-" + traceID + "-1111111111111111-01"}
			for i := 0; i < 20; i++ {
				many[fmt.Sprintf("X-Filler-%02d", i)] = strings.Repeat("v", i+1)
			}
			get(t, client, base+"/items/many", many)
			spans, _ = recv.WaitFor(10*time.Second, byPath("/items/many"))
			if s := findPath(spans, "/items/many"); s == nil || s.TraceID != traceID || s.ParentSpanID != "1111111111111111" {
				t.Errorf("with 21 headers the span is not joined to its trace: %+v", s)
			}

			// Server errors are errors; client errors are not (for a server span).
			get(t, client, base+"/status/503", nil)
			get(t, client, base+"/status/404", nil)
			spans, _ = recv.WaitFor(10*time.Second, func(sp []testenv.Span) bool {
				return findPath(sp, "/status/503") != nil && findPath(sp, "/status/404") != nil
			})
			if s := findPath(spans, "/status/503"); s == nil || s.StatusCode != tracepb.Status_STATUS_CODE_ERROR || s.Attrs["http.response.status_code"] != int64(503) || s.Name != "GET /status/{code}" {
				t.Errorf("503: %+v", s)
			}
			if s := findPath(spans, "/status/404"); s == nil || s.StatusCode != tracepb.Status_STATUS_CODE_UNSET {
				t.Errorf("404: %+v", s)
			}

			// Exactly one span per request.
			const n = 100
			for i := 0; i < n; i++ {
				get(t, client, base+"/items/n-"+strconv.Itoa(i), nil)
			}
			count := func(sp []testenv.Span) int {
				c := 0
				for _, s := range sp {
					if p, _ := s.Attrs["url.path"].(string); strings.HasPrefix(p, "/items/n-") {
						c++
					}
				}
				return c
			}
			spans, _ = recv.WaitFor(10*time.Second, func(sp []testenv.Span) bool { return count(sp) >= n })
			time.Sleep(300 * time.Millisecond) // anything extra would arrive now
			if c := count(recv.Spans()); c != n {
				t.Errorf("%d requests gave %d spans", n, c)
			}
			// Spans still queued when the app exits are flushed before the launcher
			// exits (the batch delay is longer than the time to stop).
			for i := 0; i < 10; i++ {
				get(t, client, base+"/items/last-"+strconv.Itoa(i), nil)
			}
			r.signal(syscall.SIGTERM)
			if e := r.wait(10 * time.Second); e.code != 128+int(syscall.SIGTERM) {
				t.Errorf("launcher %v after SIGTERM, want the app's 143", e)
			}
			last := 0
			for _, s := range recv.Spans() {
				if p, _ := s.Attrs["url.path"].(string); strings.HasPrefix(p, "/items/last-") {
					last++
				}
			}
			if last != 10 {
				t.Errorf("%d of the last 10 spans arrived: not flushed at exit\n%s", last, r.stderr)
			}
		})
	}
}

// A collector that is down does not affect the app; the launcher drops spans, says how
// many, says its metrics exports fail, keeps its memory bounded, and exits on time.
func TestCollectorDown(t *testing.T) {
	tg := testenv.BuildTargets(t, "httpserver", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})[0]
	testenv.RequireRoot(t)
	addr := freeAddr(t)
	env := append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+freeAddr(t), "OTEL_BSP_MAX_QUEUE_SIZE=64",
		"OTEL_BSP_SCHEDULE_DELAY=50", "OTEL_EXPORTER_OTLP_TIMEOUT=200", "OTEL_METRICS_EXPORTER=otlp", "OTEL_METRIC_EXPORT_INTERVAL=100")
	r := start(t, opts{env: env, stdin: strings.NewReader("")}, launchBin(t), "--ring-buffer", "16KiB", "--flush-timeout", "1s", "--", tg.Path, addr)
	firstRequest(t, addr, "/items/first")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	const n = 3000
	errs := make(chan error, 8)
	begin := time.Now()
	for w := 0; w < 8; w++ {
		go func(w int) {
			for i := w; i < n; i += 8 {
				resp, err := client.Get("http://" + addr + "/items/" + strconv.Itoa(i))
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("status %d", resp.StatusCode)
					return
				}
			}
			errs <- nil
		}(w)
	}
	for w := 0; w < 8; w++ {
		if err := <-errs; err != nil {
			t.Fatalf("the app failed while the collector was down: %v", err)
		}
	}
	took := time.Since(begin)
	rss := rssKB(r.pid)
	if rss > 150*1024 {
		t.Errorf("launcher RSS %d KiB with the collector down", rss)
	}
	r.signal(syscall.SIGTERM)
	exitBegin := time.Now()
	r.wait(15 * time.Second)
	if d := time.Since(exitBegin); d > 5*time.Second {
		t.Errorf("the launcher took %s to exit (--flush-timeout 1s)", d)
	}
	// Every span is counted as dropped: in the kernel, in failed exports, or not
	// exported within --flush-timeout.
	if dropped := droppedSpans(r.stderr.String()); dropped != n+1 {
		t.Errorf("%d spans said dropped, of %d made with the collector down:\n%s", dropped, n+1, r.stderr)
	}
	if !strings.Contains(r.stderr.String(), "launch: warning: exporting metrics: ") {
		t.Errorf("the failed metrics exports were not said:\n%s", r.stderr)
	}
	t.Logf("%d requests in %s with the collector down; launcher RSS %d KiB", n, took, rss)
}

// droppedSpans sums what the launcher's "N spans dropped ..." lines say.
func droppedSpans(stderr string) int {
	total := 0
	for _, m := range regexp.MustCompile(`launch: warning: (\d+) spans dropped`).FindAllStringSubmatch(stderr, -1) {
		n, _ := strconv.Atoi(m[1])
		total += n
	}
	return total
}

func rssKB(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	return 0
}

func mustAtoi(s string) int64 {
	n, _ := strconv.Atoi(s)
	return int64(n)
}

// --cpu-profile writes the launcher's own CPU profile when it exits, after the app: a
// gzipped pprof profile that names the launcher's functions.
func TestCPUProfile(t *testing.T) {
	tg := testenv.BuildTargets(t, "httpserver", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})[0]
	recv := testenv.StartReceiver(t)
	prof := filepath.Join(t.TempDir(), "launch.pprof")
	r, addr := tracedServerWith(t, tg, recv, []string{"--cpu-profile", prof})
	firstRequest(t, addr, "/items/first")
	for i := 0; i < 200; i++ {
		getOK(t, r, addr, "/items/"+strconv.Itoa(i))
	}
	r.signal(syscall.SIGTERM)
	r.wait(20 * time.Second)
	b, err := os.ReadFile(prof)
	if err != nil || len(b) < 100 || b[0] != 0x1f || b[1] != 0x8b {
		t.Fatalf("the profile: %v, %d bytes\n%s", err, len(b), r.stderr)
	}
	out, err := exec.Command("go", "tool", "pprof", "-top", prof).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Type: cpu") {
		t.Errorf("go tool pprof: %v\n%s", err, out)
	}
}
