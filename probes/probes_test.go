package probes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"golang.org/x/sys/unix"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
	"github.com/otel-go-launcher/otel-go-launcher/offsets"
	"github.com/otel-go-launcher/otel-go-launcher/probes/databasesql"
	"github.com/otel-go-launcher/otel-go-launcher/probes/internal/probetest"
	"github.com/otel-go-launcher/otel-go-launcher/probes/kit"
	"github.com/otel-go-launcher/otel-go-launcher/probes/nethttp"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig"
)

func TestMain(m *testing.M) {
	// Socket programs attach at the test's own cgroup, as at a container's.
	restore, err := testenv.OwnCgroup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "probes:", err)
	}
	code := m.Run()
	restore()
	testenv.Cleanup()
	os.Exit(code)
}

// allLibraries are the product's libraries and the tests' own.
func allLibraries() []kit.Library {
	return append(Libraries(Options{}), probetest.Library())
}

// Every field offset variable of every BPF object is a field of its library's specs,
// set by the kit; every field a spec reads has its variable.
func TestOffsetVariablesAgreeWithSpecs(t *testing.T) {
	for _, lib := range allLibraries() {
		obj, err := lib.Object()
		if err != nil {
			t.Fatal(err)
		}
		if err := kit.CheckFields(lib.Specs, obj); err != nil {
			t.Errorf("%s: %v", lib.Name, err)
		}
	}
}

// Spec names are unique across libraries: reports are found by name.
func TestSpecNamesAreUnique(t *testing.T) {
	seen := map[string]string{}
	for _, lib := range allLibraries() {
		for _, s := range lib.Specs {
			if other, ok := seen[s.Name]; ok {
				t.Errorf("spec %s in %s and %s", s.Name, other, lib.Name)
			}
			seen[s.Name] = lib.Name
		}
	}
}

// Each library that makes spans has its own instrumentation scope, named after its
// package; a router's makes no span, and has none.
func TestLibraryScopes(t *testing.T) {
	seen := map[string]string{}
	for _, lib := range allLibraries() {
		router := lib.Clients[lib.Specs[0].Name]&kit.Routes != 0
		switch {
		case router && lib.Scope != nil:
			t.Errorf("%s: a router's library, with a scope %s", lib.Name, lib.Scope.Name)
		case !router && lib.Scope == nil:
			t.Errorf("%s: no scope", lib.Name)
		case !router && !strings.HasPrefix(lib.Scope.Name, "github.com/otel-go-launcher/otel-go-launcher/probes/"):
			t.Errorf("%s: scope %s, not a package of probes/", lib.Name, lib.Scope.Name)
		case !router && seen[lib.Scope.Name] != "":
			t.Errorf("%s: scope %s, %s's too", lib.Name, lib.Scope.Name, seen[lib.Scope.Name])
		case !router:
			seen[lib.Scope.Name] = lib.Name
		}
	}
}

// tracedServer runs the httpserver test program (not under the launcher: the probes
// attach to the running process) and instruments it with libs, exporting to a real
// OTLP receiver.
func tracedServer(t *testing.T, libs []kit.Library) (*Session, *testenv.Receiver, string) {
	t.Helper()
	testenv.RequireRoot(t)
	tg := testenv.BuildTargets(t, "httpserver", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})[0]
	recv := testenv.StartReceiver(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(tg.Path, addr)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.Endpoint)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	cfg, err := otelconfig.FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{RingBufferSize: 1 << 16, Telemetry: cfg, Propagate: true, Libraries: libs}
	s, err := Instrument(context.Background(), tg.Path, cmd.Process.Pid, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server never listened")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s, recv, "http://" + addr
}

// A span from one library's BPF object is parented by the server span another's made:
// the in-flight spans are one map for every object of the app, looked up by the
// request's context (from a goroutine the handler started) and by the goroutine. Each
// span is under its library's scope.
func TestSpansParentedAcrossObjects(t *testing.T) {
	s, recv, base := tracedServer(t, append(Libraries(Options{Propagate: true}), probetest.Library()))
	want := []string{nethttp.ServerSpec.Name, nethttp.ClientSpec.Name, databasesql.Spec.Name, probetest.ByContext.Name, probetest.ByGoroutine.Name}
	if got := s.Probes(); !slices.Equal(got, want) {
		t.Fatalf("probes %v, want %v", got, want)
	}
	const requests = 3
	for i := 0; i < requests; i++ {
		resp, err := http.Get(base + "/work")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	spans, ok := recv.WaitFor(10*time.Second, func(spans []testenv.Span) bool { return len(spans) >= 3*requests })
	if !ok {
		t.Fatalf("%d spans, want %d", len(spans), 3*requests)
	}
	servers := map[string]testenv.Span{}
	for _, sp := range spans {
		if sp.Name == "GET /work" {
			servers[sp.SpanID] = sp
			if want := nethttp.Library().Scope; sp.Scope.Name != want.Name || sp.Scope.Version != want.Version || sp.Scope.SchemaURL != want.SchemaURL {
				t.Errorf("%s: scope %+v, want net/http's %+v", sp.Name, sp.Scope, *want)
			}
		}
	}
	counts := map[string]int{}
	for _, sp := range spans {
		if sp.Name != probetest.NameByContext && sp.Name != probetest.NameByGoroutine {
			continue
		}
		counts[sp.Name]++
		if want := probetest.Library().Scope.Name; sp.Scope.Name != want {
			t.Errorf("%s: scope %s, want %s", sp.Name, sp.Scope.Name, want)
		}
		parent, ok := servers[sp.ParentSpanID]
		if !ok || parent.TraceID != sp.TraceID {
			t.Errorf("%s: parent %s in trace %s is no server span of /work", sp.Name, sp.ParentSpanID, sp.TraceID)
		}
	}
	if len(servers) != requests || counts[probetest.NameByContext] != requests || counts[probetest.NameByGoroutine] != requests {
		t.Errorf("%d server spans, %v; want %d of each", len(servers), counts, requests)
	}
}

// A call's context is walked up to 128 layers above the request's, through the app's own
// context types wherever they keep their parent (the session reads them from the binary
// and fills context_parents): the test library's by-context span of /work finds its
// server span through 2 to 128 layers (WithCancel and WithValue around N of
// withLayers' kinds), and not through 129; its by-goroutine span always does.
func TestContextWalks(t *testing.T) {
	_, recv, base := tracedServer(t, append(Libraries(Options{Propagate: true}), probetest.Library()))
	cases := []struct {
		query string
		found bool
	}{
		{"", true},
		{"layers=20&kinds=Thnp", true}, // the app's wrapper types only
		{"layers=40&kinds=tttt", true},
		{"layers=126", true}, // 128 in all
		{"layers=127", false},
	}
	traces := make([]string, len(cases))
	for i, c := range cases {
		traces[i] = fmt.Sprintf("%032x", i+1)
		req, _ := http.NewRequest("GET", base+"/work?"+c.query, nil)
		req.Header.Set("Traceparent", "00-"+traces[i]+"-00000000000000aa-01")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	spans, ok := recv.WaitFor(10*time.Second, func(spans []testenv.Span) bool { return len(spans) >= 3*len(cases) })
	if !ok {
		t.Fatalf("%d spans, want %d", len(spans), 3*len(cases))
	}
	for i, c := range cases {
		var server *testenv.Span
		for j := range spans {
			if spans[j].TraceID == traces[i] && spans[j].Name == "GET /work" {
				server = &spans[j]
			}
		}
		if server == nil {
			t.Fatalf("/work?%s: no server span in trace %s", c.query, traces[i])
		}
		counts := map[string]int{}
		for _, sp := range spans { // the test library's spans, made while the request was served
			if sp.Name != probetest.NameByContext && sp.Name != probetest.NameByGoroutine ||
				sp.Start.Before(server.Start) || sp.Start.After(server.End) {
				continue
			}
			counts[sp.Name]++
			want := c.found || sp.Name == probetest.NameByGoroutine
			if got := sp.ParentSpanID == server.SpanID && sp.TraceID == server.TraceID; got != want {
				t.Errorf("/work?%s: %s in trace %s with parent %q; its server span is %s", c.query, sp.Name, sp.TraceID, sp.ParentSpanID, server.SpanID)
			}
			if !want && sp.ParentSpanID != "" {
				t.Errorf("/work?%s: %s has parent %q, want none", c.query, sp.Name, sp.ParentSpanID)
			}
		}
		if counts[probetest.NameByContext] != 1 || counts[probetest.NameByGoroutine] != 1 {
			t.Errorf("/work?%s: the test library's spans within its server span: %v, want one of each", c.query, counts)
		}
	}
}

// Every field offset variable holds what analysis found for the app: the offset of a
// field its Go release has, OffsetNone for the others (here: the pre-1.24 map layout).
func TestOffsetVariablesAreSet(t *testing.T) {
	s, _, _ := tracedServer(t, Libraries(Options{}))
	b, err := offsets.Open(s.app.Path)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := offsets.Analyze(b, Specs())
	b.Close()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{}
	for _, p := range rep.Probes {
		for _, spec := range Specs() {
			if spec.Name != p.Name {
				continue
			}
			for _, f := range spec.Fields {
				if off, ok := p.FieldOffset(f.FieldRef); ok {
					want[kit.VarName(f.FieldRef)] = off
				}
			}
		}
	}
	obj := s.probes[0].(*nethttp.Probe).Object
	names := obj.OffsetVariables()
	if len(names) < 20 {
		t.Fatalf("%d offset variables: %v", len(names), names)
	}
	for _, name := range names {
		got, err := obj.Variable(name)
		if err != nil {
			t.Fatal(err)
		}
		w, ok := want[name]
		if !ok {
			w = kit.OffsetNone
		}
		if got != w {
			t.Errorf("%s = %#x, want %#x", name, got, w)
		}
	}
	if obj, _ := obj.Variable("off_runtime_hmap_B"); obj != kit.OffsetNone {
		t.Errorf("off_runtime_hmap_B = %#x in a Go 1.26 app (Swiss tables)", obj)
	}
}

// What could not be attached is said per probe, as *kit.Error with its stage.
func TestErrorsAreTyped(t *testing.T) {
	_, err := Instrument(context.Background(), "/bin/true", os.Getpid(), Options{})
	var ofs *offsets.Error
	if !errors.As(err, &ofs) {
		t.Errorf("a C program: %v", err)
	}
	tg := testenv.BuildTargets(t, "httpserver", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})[0]
	_, err = Instrument(context.Background(), tg.Path, os.Getpid(), Options{Libraries: []kit.Library{missingLibrary()}})
	var pe *kit.Error
	if !errors.As(err, &pe) || pe.Probe != "test.missing" || pe.Stage != kit.StageResolve {
		t.Fatalf("no resolve *kit.Error for test.missing in %v", err)
	}
	if msg := fmt.Sprint(err); !strings.Contains(msg, "test.missing: main.nothingHere not in the binary") {
		t.Errorf("error %q", msg)
	}
}

// missingLibrary needs a function no binary has.
func missingLibrary() kit.Library {
	return kit.Library{Name: "missing", Specs: []offsets.Spec{{Name: "test.missing", Module: "std",
		Functions: []offsets.FuncSpec{{Symbols: []string{"main.nothingHere"}}}}}}
}

// Instrument honours its context: given up on at any moment - before it starts, while
// it loads or attaches - it returns the context's error, and what it attached is
// released; finished in time, its session shuts down clean. Either way no BPF link
// is left.
func TestInstrumentHonoursContext(t *testing.T) {
	testenv.RequireRoot(t)
	tg := testenv.BuildTargets(t, "httpserver", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})[0]
	opts := Options{RingBufferSize: 1 << 16, Telemetry: otelconfig.Config{Sampling: otelconfig.DefaultSampling, TraceContext: true}, Propagate: true}
	before := links(t)
	cancelled := 0
	for _, after := range []time.Duration{0, time.Millisecond, 3 * time.Millisecond, 10 * time.Millisecond, 30 * time.Millisecond, time.Second} {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(after, cancel)
		s, err := Instrument(ctx, tg.Path, os.Getpid(), opts)
		switch {
		case err == nil:
			if err := s.Shutdown(context.Background()); err != nil {
				t.Errorf("cancelled after %s: shutdown: %v", after, err)
			}
		case errors.Is(err, context.Canceled):
			cancelled++
		default:
			t.Errorf("cancelled after %s: %v", after, err)
		}
		cancel()
		deadline := time.Now().Add(10 * time.Second)
		for links(t) > before {
			if time.Now().After(deadline) {
				t.Fatalf("cancelled after %s: %d BPF links left (%d before)", after, links(t), before)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if cancelled == 0 {
		t.Error("no Instrument was cancelled, not even the one cancelled before it began")
	}
}

// links counts the BPF links in the system. A link that goes away while it is being
// counted (the kernel answers EAGAIN for its fd) makes the count start again.
func links(t *testing.T) int {
	for attempt := 0; ; attempt++ {
		n := 0
		var it link.Iterator
		for it.Next() {
			n++
		}
		err := it.Err()
		if err == nil {
			return n
		}
		if !errors.Is(err, unix.EAGAIN) || attempt == 100 {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
}

// Shutdown is bounded by its context and may be called again: the later call waits
// for the first and returns its result.
func TestShutdownTwice(t *testing.T) {
	s, _, base := tracedServer(t, Libraries(Options{}))
	if resp, err := http.Get(base + "/items/1"); err == nil {
		resp.Body.Close()
	}
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	begin := time.Now()
	if err := s.Shutdown(expired); !errors.Is(err, context.Canceled) || time.Since(begin) > time.Second {
		t.Errorf("Shutdown with a cancelled context: %v after %s", err, time.Since(begin))
	}
	first := s.Shutdown(context.Background())
	if second := s.Shutdown(context.Background()); second != first {
		t.Errorf("second Shutdown: %v, first %v", second, first)
	}
}

// The spans still open when the session shuts down - a long poll's server span and its
// call's - are exported, ended at the app's exit when the launcher said when that was
// (AppExited), else at the detach, and marked why; the call's server got the IDs of
// that very client span.
func TestSpansOpenAtShutdown(t *testing.T) {
	for _, exited := range []bool{true, false} {
		s, recv, base := tracedServer(t, Libraries(Options{Propagate: true}))
		arrived := make(chan string, 1)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		poll := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			arrived <- r.Header.Get("traceparent")
			<-r.Context().Done()
		})}
		go poll.Serve(l)
		defer poll.Close()
		go func() {
			if resp, err := http.Get(base + "/proxy?to=http://" + l.Addr().String() + "/poll"); err == nil {
				resp.Body.Close()
			}
		}()
		var sent string
		select {
		case sent = <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("the long poll never came")
		}
		want, at := telemetry.EndDetach, time.Now()
		if exited {
			want = telemetry.EndAppExit
			var now unix.Timespec
			unix.ClockGettime(unix.CLOCK_MONOTONIC, &now)
			s.AppExited(time.Duration(now.Nano()))
		}
		if err := s.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		spans := recv.Spans()
		if len(spans) != 2 {
			t.Fatalf("%d spans, want the long poll's server and client span: %+v", len(spans), spans)
		}
		server, client := spans[0], spans[1]
		if server.Kind != tracepb.Span_SPAN_KIND_SERVER {
			server, client = client, server
		}
		if client.ParentSpanID != server.SpanID || client.TraceID != server.TraceID || sent != "00-"+client.TraceID+"-"+client.SpanID+"-01" {
			t.Errorf("server span %s, client span %s (parent %s); the poll got %q", server.SpanID, client.SpanID, client.ParentSpanID, sent)
		}
		for _, sp := range []testenv.Span{server, client} {
			if sp.Attrs[string(telemetry.EndReasonKey)] != string(want) {
				t.Errorf("exited %v: %s %s: %s %v, want %s", exited, sp.Kind, sp.Name, telemetry.EndReasonKey, sp.Attrs[string(telemetry.EndReasonKey)], want)
			}
			// At the exit given, or at the detach, which came after at.
			if d := sp.End.Sub(at); d < -2*time.Millisecond || exited && d > 2*time.Millisecond || d > 5*time.Second {
				t.Errorf("exited %v: %s %s ended %v after the exit", exited, sp.Kind, sp.Name, d)
			}
		}
	}
}
