package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// go-redis spans from an HTTP service (internal/testenv/targets/cacheservice) on a
// private Redis server, with the oldest v9 line (v9.0.5, Go 1.22) and the newest
// release (plain and stripped): every command a CLIENT span named after it, every
// pipeline and transaction one span with its command count, the child of the
// request's server span - from the handler's goroutine, from goroutines it starts
// with its context, and without a context - with the database index, the server's
// address and port, a reply error's prefix; a missing key no error; no key or value
// ever exported; one span per command over 100 requests in a row. The set-up commands
// of a new connection are children of the command that opened it.
func TestRedisSpans(t *testing.T) {
	testenv.RequireRoot(t)
	targets := testenv.BuildRedis(t, testenv.RedisBuilds...)
	server, _ := startRedis(t)
	for _, tg := range targets {
		t.Run(tg.Toolchain+"/"+tg.Variant.Name, func(t *testing.T) { redisSpans(t, tg, server) })
	}
}

// redisDB is the database index the tests' service uses: not the default, so that a
// namespace read from the wrong field shows.
const redisDB = "3"

func redisSpans(t *testing.T, tg testenv.Target, server string) {
	recv := testenv.StartReceiver(t)
	addr := freeAddr(t)
	env := append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT="+recv.Endpoint, "OTEL_BSP_SCHEDULE_DELAY=200",
		"OTEL_SERVICE_NAME=cacheservice", "OTEL_RESOURCE_ATTRIBUTES=", "OTEL_TRACES_EXPORTER=", "OTEL_TRACES_SAMPLER=")
	// Overlapped (the default): the first request's commands wait for the probes.
	r := start(t, opts{env: env, stdin: strings.NewReader("")}, launchBin(t), "--", tg.Path,
		"-addr", addr, "-redis", server, "-db", redisDB)
	get := func(path string) { t.Helper(); getOK(t, r, addr, path) }
	firstRequest(t, addr, "/set?key=first")
	routes := []string{"/missing", "/pipeline", "/tx", "/wrongtype", "/secret", "/fanout", "/noctx"}
	for _, path := range routes {
		get(path)
	}
	for i := 0; i < 100; i++ {
		get(fmt.Sprintf("/set?key=n%d", i))
	}

	// Per request: the commands it made; then the set-up of each connection opened.
	want := 2*101 + 1 + 1 + 1 + 2 + 1 + 3 + 1
	servers := 1 + len(routes) + 100
	spans, ok := recv.WaitFor(30*time.Second, func(s []testenv.Span) bool { return len(s) >= want+servers })
	if !ok {
		t.Fatalf("%d spans, want at least %d: %s\n%s", len(spans), want+servers, spanList(spans), r.stderr)
	}
	time.Sleep(500 * time.Millisecond) // and the set-up spans, exported with them
	spans = recv.Spans()
	byID := map[string]testenv.Span{}
	for _, s := range spans {
		byID[s.SpanID] = s
	}
	host, port, _ := net.SplitHostPort(server)
	portNumber, _ := strconv.Atoi(port)
	type redisSpan struct {
		name           string
		batch          int64
		status, errTyp string
	}
	children := map[string][]redisSpan{} // by the server span's name: the commands under it
	setups := 0
	for _, s := range spans {
		if s.Kind != tracepb.Span_SPAN_KIND_CLIENT {
			if s.Kind != tracepb.Span_SPAN_KIND_SERVER {
				t.Errorf("a %v span: %s", s.Kind, s.Name)
			}
			continue
		}
		if s.Attrs["db.system.name"] != "redis" || s.Attrs["db.namespace"] != redisDB ||
			s.Attrs["server.address"] != host || s.Attrs["server.port"] != int64(portNumber) {
			t.Errorf("%s: attributes %v", s.Name, s.Attrs)
		}
		if s.Attrs["db.operation.name"] != s.Name {
			t.Errorf("%s: db.operation.name %v", s.Name, s.Attrs["db.operation.name"])
		}
		for k, v := range s.Attrs {
			if strings.Contains(fmt.Sprint(v), "s3cr3t") || strings.Contains(fmt.Sprint(v), "v-n") || k == "db.query.text" {
				t.Errorf("a key or value was exported: %s %s=%v", s.Name, k, v)
			}
		}
		errType, _ := s.Attrs["error.type"].(string)
		status, _ := s.Attrs["db.response.status_code"].(string)
		if (errType != "") != (s.StatusCode == tracepb.Status_STATUS_CODE_ERROR) {
			t.Errorf("%s: error.type %q, status %v", s.Name, errType, s.StatusCode)
		}
		batch, _ := s.Attrs["db.operation.batch.size"].(int64)
		parent, ok := byID[s.ParentSpanID]
		if !ok {
			t.Errorf("%s: parent %q is no span exported", s.Name, s.ParentSpanID)
			continue
		}
		if parent.TraceID != s.TraceID {
			t.Errorf("%s: in trace %s, its parent %s in %s", s.Name, s.TraceID, parent.Name, parent.TraceID)
		}
		if parent.Kind == tracepb.Span_SPAN_KIND_CLIENT {
			// A connection's set-up (HELLO, then SELECT and others in a pipeline),
			// under the command that opened it, which is the request's. Newer
			// clients also try what Debian's Redis 7.0 lacks (CLIENT SETINFO,
			// CLIENT MAINT_NOTIFICATIONS): ERR, which they ignore.
			setups++
			if s.Name != "HELLO" && s.Name != "CLIENT" && s.Name != "PIPELINE" || errType != "" && status != "ERR" {
				t.Errorf("set-up span %s (%v %v) under %s", s.Name, s.StatusCode, s.Attrs, parent.Name)
			}
			if grand, ok := byID[parent.ParentSpanID]; !ok || grand.Kind != tracepb.Span_SPAN_KIND_SERVER {
				t.Errorf("set-up span %s: its parent %s is not a request's command", s.Name, parent.Name)
			}
			continue
		}
		children[parent.Name] = append(children[parent.Name], redisSpan{s.Name, batch, status, errType})
	}
	if setups == 0 {
		t.Errorf("no connection set-up span: %s", spanList(spans))
	}
	check := func(route string, want ...redisSpan) { t.Helper(); checkChildren(t, route, children[route], want) }
	set, get1 := redisSpan{name: "SET"}, redisSpan{name: "GET"}
	check("GET /missing", get1)
	check("GET /pipeline", redisSpan{name: "PIPELINE", batch: 3})
	check("GET /tx", redisSpan{name: "MULTI", batch: 2})
	check("GET /wrongtype", set, redisSpan{"LPUSH", 0, "WRONGTYPE", "WRONGTYPE"})
	check("GET /secret", set)
	exists := redisSpan{name: "EXISTS"}
	check("GET /fanout", exists, exists, exists)
	check("GET /noctx", redisSpan{name: "PING"})
	var sets []redisSpan
	for i := 0; i < 101; i++ {
		sets = append(sets, set, get1)
	}
	check("GET /set", sets...)
	// db.client.operation.duration, flushed at exit: every GET (101 of /set, /missing's),
	// the LPUSH that failed, with its status code.
	r.signal(syscall.SIGTERM)
	r.wait(20 * time.Second)
	counts := map[string]uint64{}
	for _, h := range recv.Histograms() {
		if h.Metric == "db.client.operation.duration" && h.Attrs["db.system.name"] == "redis" && h.Attrs["db.namespace"] == redisDB {
			k := fmt.Sprintf("%v %v", h.Attrs["db.operation.name"], h.Attrs["db.response.status_code"])
			counts[k] = max(counts[k], h.Count)
		}
	}
	if counts["GET <nil>"] != 102 || counts["LPUSH WRONGTYPE"] != 1 || counts["MULTI <nil>"] != 1 {
		t.Errorf("db.client.operation.duration counts %v, want GET 102, LPUSH WRONGTYPE 1, MULTI 1", counts)
	}
	if said := launcherLines(r); said != "" {
		t.Errorf("the launcher said:\n%s", said)
	}
}

// startRedis runs a private Redis server (Debian's redis-server, on a free port of the
// loopback, nothing saved), stopped at the test's end or by stop (SIGKILL: its
// connections cut), and returns its address.
func startRedis(t *testing.T) (addr string, stop func()) {
	t.Helper()
	bin := testenv.RequireCommand(t, "redis-server")
	addr = freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	var log testenv.SyncBuffer
	server := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", t.TempDir(), "--daemonize", "no")
	server.Stdout, server.Stderr = &log, &log
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			server.Process.Signal(syscall.SIGKILL)
			server.Wait()
		})
	}
	t.Cleanup(stop)
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if i == 100 {
			t.Fatalf("redis-server did not start:\n%s", log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return addr, stop
}

// A Redis server that goes away in the middle of a command: the app answers as it
// does untraced, and the command's span ends in error.
func TestRedisServerGoesAway(t *testing.T) {
	testenv.RequireRoot(t)
	tg := testenv.BuildRedis(t, testenv.RedisBuilds[1])[0]
	serverGoesAway(t, goesAway{
		start: func(t *testing.T, addr string) ([]string, func()) {
			server, stop := startRedis(t)
			return []string{tg.Path, "-addr", addr, "-redis", server}, stop
		},
		first: "/set?key=first", slow: "/block", answer: "502 Bad Gateway command failed", span: "BLPOP",
	})
}
