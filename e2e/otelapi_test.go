package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// The OpenTelemetry API bridged (probes/otelapi): an HTTP service
// (internal/testenv/targets/otelapiservice) that starts API spans and sets no SDK.
// Each request's whole tree, every span's parent checked: the API span started from
// the request's context under our server span; API spans started from its context
// under it; the client span of an HTTP call made with an API span's context, and the
// query made with a context derived from another's, under those; the API span the
// called handler starts under its server span. Each API span with its tracer's scope
// (name, version, schema URL), its kind, its start options' and SetAttributes'
// attributes of every type read, SetName's name, SetStatus's error and RecordError's
// exception event, AddEvent's event; a span ended in another goroutine; a span never
// ended, ended at the app's exit and marked so; WithTimestamp's times; WithNewRoot's
// span a root; WithLinks' link and AddLink's; the event and link limits the
// environment sets (OTEL_SPAN_EVENT_COUNT_LIMIT, OTEL_LINK_ATTRIBUTE_COUNT_LIMIT), with
// dropped counts. otel v1.33.0 (the first release with newSpan) and the newest, plain
// and stripped; the newest position-independent too. otelhttp's middleware: its server span under ours,
// the handler's API span under it.
func TestOtelAPISpans(t *testing.T) {
	testenv.RequireRoot(t)
	targets := testenv.BuildOtelAPI(t, testenv.OtelAPIBuilds...)
	for _, tg := range targets {
		t.Run(tg.Variant.Name, func(t *testing.T) { otelAPISpans(t, tg) })
	}
}

// startOtelAPIApp runs the app at path under the launcher on a free address, exporting
// spans to recv (no metrics), with env added.
func startOtelAPIApp(t *testing.T, recv *testenv.Receiver, path string, env ...string) (*run, string) {
	addr := freeAddr(t)
	env = append(append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT="+recv.Endpoint, "OTEL_BSP_SCHEDULE_DELAY=200",
		"OTEL_SERVICE_NAME=otelapiservice", "OTEL_RESOURCE_ATTRIBUTES=", "OTEL_TRACES_EXPORTER=", "OTEL_TRACES_SAMPLER=",
		"OTEL_METRICS_EXPORTER=none"), env...)
	return start(t, opts{env: env, stdin: strings.NewReader("")}, launchBin(t), "--", path, "-addr", addr), addr
}

// otelhttpScope is otelhttp's tracer's name: its spans' scope.
const otelhttpScope = "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

func otelAPISpans(t *testing.T, tg testenv.Target) {
	recv := testenv.StartReceiver(t)
	r, addr := startOtelAPIApp(t, recv, tg.Path, "OTEL_SPAN_EVENT_COUNT_LIMIT=2", "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT=1")
	firstRequest(t, addr, "/price")
	const orders = 3
	for i := range orders {
		getOK(t, r, addr, fmt.Sprintf("/order?id=%d", i))
	}
	getOK(t, r, addr, "/wrapped")
	// The spans never ended end at the app's exit.
	r.signal(syscall.SIGTERM)
	r.wait(20 * time.Second)

	// CREATE TABLE at start; /price's server span and its API span; per order, thirteen;
	// /wrapped's server span, otelhttp's and the API span inside.
	spans := exactSpans(t, recv, 1+2+orders*13+3, 30*time.Second, r.stderr)
	children := map[string][]testenv.Span{}
	byID := map[string]testenv.Span{}
	for _, s := range spans {
		byID[s.SpanID] = s
		children[s.ParentSpanID] = append(children[s.ParentSpanID], s)
	}
	var tree func(b *strings.Builder, s testenv.Span, depth int)
	tree = func(b *strings.Builder, s testenv.Span, depth int) {
		name := s.Name
		if s.Scope.Name == otelhttpScope {
			name = "[otelhttp]" // named "GET /wrapped" from v0.72.0 (its route), "wrapped" before
		}
		fmt.Fprintf(b, "%s%s (%s)\n", strings.Repeat("  ", depth), name, strings.TrimPrefix(s.Kind.String(), "SPAN_KIND_"))
		kids := children[s.SpanID]
		// By start: backdated, begun a second before its parent (WithTimestamp), first.
		slices.SortFunc(kids, func(a, b testenv.Span) int { return a.Start.Compare(b.Start) })
		for _, k := range kids {
			if k.TraceID != s.TraceID {
				t.Errorf("%s: trace %s, its parent %s's %s", k.Name, k.TraceID, s.Name, s.TraceID)
			}
			tree(b, k, depth+1)
		}
	}
	const order = `GET /order (SERVER)
  load-order %d (INTERNAL)
    backdated (INTERNAL)
    fetch-price (CLIENT)
      GET (CLIENT)
        GET /price (SERVER)
          compute-price (INTERNAL)
    query-stock (INTERNAL)
      SELECT items (CLIENT)
    async-work (PRODUCER)
    linked (INTERNAL)
    never-ended (INTERNAL)
`
	var got []string
	roots := 0
	for _, s := range children[""] {
		var b strings.Builder
		tree(&b, s, 0)
		got = append(got, b.String())
		roots++
	}
	slices.Sort(got)
	want := []string{"CREATE TABLE items (CLIENT)\n", "GET /price (SERVER)\n  compute-price (INTERNAL)\n",
		"detached (INTERNAL)\n", "detached (INTERNAL)\n", "detached (INTERNAL)\n", // WithNewRoot
		"GET /wrapped (SERVER)\n  [otelhttp] (SERVER)\n    inside-otelhttp (INTERNAL)\n"}
	for i := range orders {
		want = append(want, fmt.Sprintf(order, i))
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("trees:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	app := testenv.Scope{Name: "example.com/otelapiservice", Version: "1.2.3", SchemaURL: "https://opentelemetry.io/schemas/1.26.0"}
	for _, s := range spans {
		api := s.Kind == tracepb.Span_SPAN_KIND_INTERNAL || s.Kind == tracepb.Span_SPAN_KIND_PRODUCER ||
			strings.HasPrefix(s.Name, "fetch-price")
		if s.Scope.Name == otelhttpScope {
			api = false // its own tracer's
		}
		if api && s.Scope != app {
			t.Errorf("%s: scope %+v, want %+v", s.Name, s.Scope, app)
		}
		switch {
		case s.Scope.Name == otelhttpScope:
			// otelhttp's own span, as it would export it: its scope and attributes, in
			// the conventions of its release (v0.58.0's the older ones).
			current := s.Attrs["http.request.method"] == "GET" && s.Attrs["url.path"] == "/wrapped"
			older := s.Attrs["http.method"] == "GET" && s.Attrs["http.target"] == "/wrapped"
			if s.Scope.Version == "" || !current && !older {
				t.Errorf("otelhttp's span %s: scope %+v, attributes %v", s.Name, s.Scope, s.Attrs)
			}
		case strings.HasPrefix(s.Name, "load-order"):
			wantAttrs := map[string]any{"order.id": "42", "order.items": int64(3), "order.total": 9.5, "order.paid": true,
				"customer": "ada", "retries": int64(2), "order.tags": []any{"gift", "rush"}, "order.sizes": []any{int64(1), int64(-2)},
				"order.weights": []any{0.25, 1.5}, "order.flags": []any{true, false}}
			if fmt.Sprint(s.Attrs) != fmt.Sprint(wantAttrs) {
				t.Errorf("%s: attributes %v, want %v", s.Name, s.Attrs, wantAttrs)
			}
			if s.StatusCode != tracepb.Status_STATUS_CODE_UNSET {
				t.Errorf("%s: status %v", s.Name, s.StatusCode)
			}
			if len(s.Events) != 1 || s.Events[0].Name != "validated" || fmt.Sprint(s.Events[0].Attrs) != "map[checks:2]" ||
				s.Events[0].Time.Before(s.Start) || s.Events[0].Time.After(s.End) {
				t.Errorf("%s: events %+v, want validated with checks=2, during the span", s.Name, s.Events)
			}
		case s.Name == "query-stock":
			if s.StatusCode != tracepb.Status_STATUS_CODE_ERROR || s.StatusMessage != "stock low" {
				t.Errorf("%s: status %v %q, want Error \"stock low\"", s.Name, s.StatusCode, s.StatusMessage)
			}
			if len(s.Events) != 1 || s.Events[0].Name != "exception" ||
				fmt.Sprint(s.Events[0].Attrs) != "map[exception.message:stock low exception.type:*errors.errorString]" {
				t.Errorf("%s: events %+v, want RecordError's exception", s.Name, s.Events)
			}
		case s.Name == "backdated":
			// WithTimestamp's times, to the millisecond: each is taken to CLOCK_MONOTONIC
			// and back, with the clocks read at two moments.
			if d := s.End.Sub(s.Start); d < 500*time.Millisecond-time.Millisecond || d > 500*time.Millisecond+time.Millisecond {
				t.Errorf("%s: lasted %v, want WithTimestamp's 500ms", s.Name, d)
			}
			if parent := byID[s.ParentSpanID]; !s.Start.Before(parent.Start.Add(-900 * time.Millisecond)) {
				t.Errorf("%s: starts at %v, its parent at %v: want WithTimestamp's, a second before", s.Name, s.Start, parent.Start)
			}
		case s.Name == "linked":
			// WithLinks: the other trace's span, sampled and remote (SpanFlags 0x301);
			// AddLink's, neither, its attributes past the limit of 1 dropped.
			want := []testenv.Link{{TraceID: "0a0b0000000000000000000000000000", SpanID: "0c0d000000000000", Flags: 0x301},
				{TraceID: "0e000000000000000000000000000000", SpanID: "0f00000000000000", Flags: 0x100,
					Attrs: map[string]any{"link.kind": "follows"}, DroppedAttrs: 1}}
			if fmt.Sprint(s.Links) != fmt.Sprint(want) {
				t.Errorf("%s: links %+v, want %+v", s.Name, s.Links, want)
			}
			// Three events, the latest two kept (OTEL_SPAN_EVENT_COUNT_LIMIT=2).
			var events []string
			for _, ev := range s.Events {
				events = append(events, ev.Name)
			}
			if fmt.Sprint(events) != "[step 1 step 2]" || s.DroppedEvents != 1 || s.DroppedLinks != 0 {
				t.Errorf("%s: events %q, %d dropped, %d links dropped; want [step 1 step 2], 1, 0", s.Name, events,
					s.DroppedEvents, s.DroppedLinks)
			}
		case s.Name == "never-ended":
			if s.Attrs["otel_go_launcher.span.end_reason"] != "app_exit" {
				t.Errorf("%s: attributes %v, want an end reason", s.Name, s.Attrs)
			}
		case s.Name == "async-work", s.Name == "fetch-price", s.Name == "compute-price":
			if len(s.Attrs) != 0 {
				t.Errorf("%s: attributes %v, want none", s.Name, s.Attrs)
			}
		}
		if api && s.End.Before(s.Start) {
			t.Errorf("%s: ends before it starts", s.Name)
		}
	}
	if said := launcherLines(r); said != "" {
		t.Errorf("the launcher said:\n%s", said)
	}
}

// An otel release older than the first with newSpan (v1.32.0): nothing bridged, said
// once at start, in one line; the probes' spans as ever, the calls the app makes under
// its API spans children of the request's server span.
func TestOtelAPITooOld(t *testing.T) {
	testenv.RequireRoot(t)
	tg := testenv.BuildOtelAPI(t, testenv.ModuleBuild{Version: "v1.32.0", Toolchain: "go1.26.8"})[0]
	recv := testenv.StartReceiver(t)
	r, addr := startOtelAPIApp(t, recv, tg.Path)
	firstRequest(t, addr, "/order?id=1")
	r.signal(syscall.SIGTERM)
	r.wait(20 * time.Second)

	// CREATE TABLE; GET /order, its HTTP call and the called /price, its query.
	spans := exactSpans(t, recv, 5, 30*time.Second, r.stderr)
	byName := map[string]testenv.Span{}
	for _, s := range spans {
		byName[s.Name] = s
	}
	server := byName["GET /order"]
	for child, parent := range map[string]string{"GET": "GET /order", "GET /price": "GET", "SELECT items": "GET /order"} {
		if byName[child].ParentSpanID != byName[parent].SpanID || byName[child].TraceID != server.TraceID {
			t.Errorf("%s: parent %s, want %s's %s (spans %+v)", child, byName[child].ParentSpanID, parent, byName[parent].SpanID, spans)
		}
	}
	want := "launch: warning: probe not attached: otelapi: go.opentelemetry.io/otel v1.32.0 is older than the oldest supported, v1.33.0"
	if said := launcherLines(r); said != want {
		t.Errorf("the launcher said:\n%s\nwant:\n%s", said, want)
	}
}

// An app that sets its own SDK: its API spans go to its own tracer provider (it has
// them all), none is bridged; the launcher says so once, at start, in one line; the
// probes' spans are exported as ever.
func TestOtelAPIAppSetsSDK(t *testing.T) {
	testenv.RequireRoot(t)
	app := testenv.Build(t, "./e2e/testdata/otelsdk", "CGO_ENABLED=0")
	recv := testenv.StartReceiver(t)
	r, addr := startOtelAPIApp(t, recv, app)
	firstRequest(t, addr, "/work")
	resp, err := http.Get("http://" + addr + "/work")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := strings.TrimSpace(string(body)); got != "2" {
		t.Errorf("the app's SDK recorded %s spans, want its 2", got)
	}
	r.signal(syscall.SIGTERM)
	r.wait(20 * time.Second)

	spans := exactSpans(t, recv, 2, 30*time.Second, r.stderr)
	for _, s := range spans {
		if s.Name != "GET /work" || s.Kind != tracepb.Span_SPAN_KIND_SERVER {
			t.Errorf("exported %s (%v): want only the server spans", s.Name, s.Kind)
		}
	}
	said := launcherLines(r)
	if n := strings.Count(said, "OpenTelemetry SDK"); n != 1 || strings.Count(said, "\n") != 0 ||
		!strings.Contains(said, "the app links the OpenTelemetry SDK (go.opentelemetry.io/otel/sdk ") {
		t.Errorf("the launcher said:\n%s\nwant one line on the app's SDK", said)
	}
}
