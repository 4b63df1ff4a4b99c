package e2e

import (
	"encoding/json"
	"fmt"
	"go/version"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// router is one router's service (internal/testenv/targets) and how its templates
// read: the same endpoints for every router.
type router struct {
	testenv.Router
	probe               string // its probe's name in launch inspect
	users, orders, call string // templates of /users/ID, /api/orders/ID, /call/ID
	// nested: a path another router routes (inside this one's handler), and the
	// template that router matched: the deeper router's names the span.
	nested, nestedRoute string
	h2c                 bool // its service also speaks plaintext HTTP/2 on -addr (Go 1.24+)
}

var (
	chiRouter        = router{testenv.Chi, "chi.route", "/users/{id}", "/api/orders/{order}", "/call/{id}", "", "", true}
	gorillaMuxRouter = router{testenv.GorillaMux, "gorilla/mux.route", "/users/{id}", "/api/orders/{order}", "/call/{id}",
		"/chi/users/5", "/chi/users/{id}", false} // gorilla/mux's probe runs before chi's
	ginRouter  = router{testenv.Gin, "gin.route", "/users/:id", "/api/orders/:order", "/call/:id", "", "", false}
	echoRouter = router{testenv.Echo, "echo.route", "/users/:id", "/api/orders/:order", "/call/:id",
		"/chi/users/6", "/chi/users/{id}", false} // echo's probe runs after chi's, higher up the stack
)

// TestChiRoutes: spans and request metrics of a chi service carry the route matched.
func TestChiRoutes(t *testing.T) { routerRoutes(t, chiRouter) }

// TestGorillaMuxRoutes: the same for gorilla/mux (a subrouter for /api).
func TestGorillaMuxRoutes(t *testing.T) { routerRoutes(t, gorillaMuxRouter) }

// TestGinRoutes: the same for gin (a group for /api).
func TestGinRoutes(t *testing.T) { routerRoutes(t, ginRouter) }

// TestEchoRoutes: the same for echo (a group for /api).
func TestEchoRoutes(t *testing.T) { routerRoutes(t, echoRouter) }

// routerRoutes runs the router's service, for each of its builds (the oldest release
// supported on an old Go, the newest plain and stripped), under the launcher, and
// checks that every server span is named after the template the router matched and
// has it as http.route - directly as the server's handler and behind a ServeMux
// catch-all "/" (the router's template wins over it; /hello, ServeMux's own, keeps
// its pattern; a path no router matched keeps ServeMux's "/") -, that every span's
// parent is right (a routed handler's call to the same service: server, client,
// server, one trace), that http.server.request.duration counts by template (never by
// path), and that launch inspect shows the probe enabled at its call site.
func routerRoutes(t *testing.T, rt router) {
	testenv.RequireRoot(t)
	for _, tg := range rt.Build(t, rt.Builds...) {
		t.Run(tg.Toolchain+"/"+tg.Variant.Name, func(t *testing.T) {
			inspectRouter(t, rt, tg)
			routedSpans(t, rt, tg)
		})
	}
}

// inspectRouter: the probe is enabled, probed at its call sites only, with its fields
// from DWARF, or without it from the database or the type descriptors.
func inspectRouter(t *testing.T, rt router, tg testenv.Target) {
	e, out, stderr := runLaunch(t, opts{}, launchBin(t), "inspect", "--json", tg.Path)
	if e.code != 0 {
		t.Fatalf("inspect: %v\n%s", e, stderr)
	}
	var r struct {
		Stripped bool
		Probes   []struct {
			Name    string
			Enabled bool
			Reason  string
			Uprobes []struct {
				Symbol     string
				EntryProbe *uint64 `json:"entry_probe"`
				Returns    []uint64
				Calls      []uint64
			}
			Fields []struct {
				Name   string
				Source string
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("inspect: %v\n%s", err, out)
	}
	found := false
	for _, p := range r.Probes {
		if p.Name != rt.probe {
			continue
		}
		found = true
		if !p.Enabled {
			t.Fatalf("%s disabled: %s", p.Name, p.Reason)
		}
		for _, u := range p.Uprobes {
			if u.EntryProbe != nil || len(u.Returns) != 0 || len(u.Calls) == 0 {
				t.Errorf("%s: uprobe %+v, want call sites only", p.Name, u)
			}
		}
		for _, f := range p.Fields {
			if want := "dwarf"; !r.Stripped && f.Source != want || r.Stripped && f.Source != "db" && f.Source != "typeinfo" {
				t.Errorf("%s: field %s from %s (stripped: %v)", p.Name, f.Name, f.Source, r.Stripped)
			}
		}
	}
	if !found {
		t.Errorf("no probe %s in launch inspect: %s", rt.probe, out)
	}
}

func routedSpans(t *testing.T, rt router, tg testenv.Target) {
	recv := testenv.StartReceiver(t)
	addr, muxAddr := freeAddr(t), freeAddr(t)
	env := append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT="+recv.Endpoint, "OTEL_BSP_SCHEDULE_DELAY=200",
		"OTEL_METRIC_EXPORT_INTERVAL=60000", // the final flush at exit delivers them
		"OTEL_SERVICE_NAME=", "OTEL_RESOURCE_ATTRIBUTES=", "OTEL_TRACES_EXPORTER=", "OTEL_METRICS_EXPORTER=", "OTEL_TRACES_SAMPLER=")
	r := start(t, opts{env: env, stdin: strings.NewReader("")}, launchBin(t), "--require-instrumentation", "--", tg.Path,
		"-addr", addr, "-muxaddr", muxAddr)
	firstRequest(t, addr, "/users/1")
	firstRequest(t, muxAddr, "/hello")

	// Each path once: url.path finds its span. route "" is none.
	type request struct {
		addr, path string
		status     int
		route      string
		h2         bool // over plaintext HTTP/2
	}
	requests := []request{
		{addr, "/users/7", 200, rt.users, false},
		{addr, "/api/orders/42", 200, rt.orders, false},
		{addr, "/call/9", 200, rt.call, false},
		{addr, "/", 200, "/", false},
		{addr, "/nope", 404, "", false},
		{muxAddr, "/users/8", 200, rt.users, false},
		{muxAddr, "/api/orders/43", 200, rt.orders, false},
		{muxAddr, "/call/10", 200, rt.call, false},
		{muxAddr, "/nope/2", 404, "/", false}, // the router matched nothing: ServeMux's catch-all stands
	}
	if rt.nested != "" {
		requests = append(requests, request{addr: addr, path: rt.nested, status: 200, route: rt.nestedRoute})
	}
	// Over HTTP/2 the handler runs in the goroutine of the server's span too.
	h2 := rt.h2c && version.Compare(tg.Toolchain, "go1.24") >= 0
	if h2 {
		requests = append(requests, request{addr, "/users/11", 200, rt.users, true})
	}
	h2client := &http.Client{Transport: &http.Transport{Protocols: new(http.Protocols)}}
	h2client.Transport.(*http.Transport).Protocols.SetUnencryptedHTTP2(true)
	for _, q := range requests {
		client := http.DefaultClient
		if q.h2 {
			client = h2client
		}
		resp, err := client.Get("http://" + q.addr + q.path)
		if err != nil {
			t.Fatalf("GET %s: %v\n%s", q.path, err, r.stderr)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != q.status || q.h2 && resp.ProtoMajor != 2 {
			t.Fatalf("GET %s: %s %s, want %d", q.path, resp.Proto, resp.Status, q.status)
		}
	}
	// The calls' own requests, and the first ones.
	requests = append(requests, request{addr: addr, path: "/users/9", status: 200, route: rt.users},
		request{addr: addr, path: "/users/10", status: 200, route: rt.users},
		request{addr: addr, path: "/users/1", status: 200, route: rt.users}, request{addr: muxAddr, path: "/hello", status: 200, route: "/hello"})
	servers := len(requests)
	spans, ok := recv.WaitFor(30*time.Second, func(s []testenv.Span) bool { return len(s) >= servers+2 })
	if !ok {
		t.Fatalf("%d spans, want %d: %s\n%s", len(spans), servers+2, spanList(spans), r.stderr)
	}
	byID := map[string]testenv.Span{}
	for _, s := range spans {
		byID[s.SpanID] = s
	}
	for _, q := range requests {
		s := findPath(spans, q.path)
		if s == nil {
			t.Errorf("no span of %s: %s", q.path, spanList(spans))
			continue
		}
		name := "GET"
		if q.route != "" {
			name += " " + q.route
		}
		route, has := s.Attrs["http.route"]
		if s.Kind != tracepb.Span_SPAN_KIND_SERVER || s.Name != name || has != (q.route != "") || has && route != q.route {
			t.Errorf("%s: %v span %q, http.route %v, want %q, %q", q.path, s.Kind, s.Name, route, name, q.route)
		}
		if v := s.Attrs["network.protocol.version"]; q.h2 && v != "2" || !q.h2 && v != "1.1" {
			t.Errorf("%s: network.protocol.version %v (HTTP/2: %v)", q.path, v, q.h2)
		}
		called := q.path == "/users/9" || q.path == "/users/10"
		if !called && s.ParentSpanID != "" {
			t.Errorf("%s: a parent %s, the request had none", q.path, s.ParentSpanID)
		}
		if !called {
			continue
		}
		// The tree: GET /call/ID (server) > GET (client) > GET /users/ID (server).
		client, ok := byID[s.ParentSpanID]
		if !ok || client.Kind != tracepb.Span_SPAN_KIND_CLIENT || client.TraceID != s.TraceID {
			t.Errorf("%s: parent %s is no client span of its trace: %s", q.path, s.ParentSpanID, spanList(spans))
			continue
		}
		caller, ok := byID[client.ParentSpanID]
		want := "/call/" + strings.TrimPrefix(q.path, "/users/")
		if !ok || caller.Attrs["url.path"] != want || caller.Name != "GET "+rt.call || caller.TraceID != s.TraceID {
			t.Errorf("%s: its client span's parent %q (%s) is not %s's server span", q.path, caller.Name, client.ParentSpanID, want)
		}
	}
	for _, s := range spans {
		if s.Kind == tracepb.Span_SPAN_KIND_CLIENT {
			if parent, ok := byID[s.ParentSpanID]; !ok || parent.Name != "GET "+rt.call {
				t.Errorf("client span %s: parent %q", s.SpanID, parent.Name)
			}
		}
	}

	r.signal(syscall.SIGTERM)
	if e := r.wait(20 * time.Second); e.signal != 0 || e.code != 0 && e.code != 128+int(syscall.SIGTERM) {
		t.Fatalf("exit %+v\n%s", e, r.stderr)
	}
	// http.server.request.duration by route: the last point of each (cumulative).
	counts := map[string]uint64{}
	for _, h := range recv.Histograms() {
		if h.Metric != "http.server.request.duration" {
			continue
		}
		route, _ := h.Attrs["http.route"].(string)
		k := fmt.Sprintf("%s %v %v", route, h.Attrs["http.response.status_code"], h.Attrs["network.protocol.version"])
		counts[k] = max(counts[k], h.Count)
	}
	want := map[string]uint64{
		rt.users + " 200 1.1":  5, // /users/7, /users/8, the two calls', the first
		rt.orders + " 200 1.1": 2,
		rt.call + " 200 1.1":   2,
		"/ 200 1.1":            1,
		"/hello 200 1.1":       1,
		" 404 1.1":             1,
		"/ 404 1.1":            1,
	}
	if rt.nested != "" {
		want[rt.nestedRoute+" 200 1.1"] = 1
	}
	if h2 {
		want[rt.users+" 200 2"] = 1
	}
	if fmt.Sprint(sortedCounts(counts)) != fmt.Sprint(sortedCounts(want)) {
		t.Errorf("http.server.request.duration by route, status and protocol:\n%v\nwant\n%v", sortedCounts(counts), sortedCounts(want))
	}
	if said := launcherLines(r); said != "" {
		t.Errorf("the launcher said:\n%s", said)
	}
}

// sortedCounts lists counts as "key: n", sorted.
func sortedCounts(counts map[string]uint64) []string {
	var out []string
	for k, n := range counts {
		out = append(out, fmt.Sprintf("%q: %d", k, n))
	}
	sort.Strings(out)
	return out
}
