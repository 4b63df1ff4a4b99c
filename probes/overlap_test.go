package probes

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
	"github.com/otel-go-launcher/otel-go-launcher/offsets"
	"github.com/otel-go-launcher/otel-go-launcher/probes/kit"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig"
)

// The overlapped start holds every probe's first call: in the services of each
// library (plain and stripped, the oldest and newest Go), every function a probe
// attaches to gets the hold at its first instruction, and no entry probe is there
// (a function without a stack check would make Instrument keep the app at the gate
// instead). With propagation, connect is held too, and the HTTP/2 clients' connection
// set-up (net/http's, x/net's, gRPC's) in a group of its own.
func TestHoldCoversEveryProbe(t *testing.T) {
	type build struct {
		target     string
		toolchains []string
		wants      []string // probes that must be enabled
		http2      int      // HTTP/2 connection set-ups held at least
	}
	builds := []build{
		{"httpserver", []string{"go1.22.12", "go1.26.8", "go1.27.3"}, []string{"net/http.server", "net/http.client"}, 1},
		{"grpcservice", []string{"go1.26.8"}, []string{"grpc.server", "grpc.client", "x/net/http2.server"}, 3},
		{"dbservice", []string{"go1.26.8"}, []string{"database/sql"}, 0},
		{"cacheservice", []string{"go1.26.8"}, []string{"go-redis"}, 0},
		{"pgxservice", []string{"go1.26.8"}, []string{"pgx"}, 0}, // database/sql is left to pgx
		{"kafkaservice", []string{"go1.26.8"}, []string{"kafka-go"}, 0},
		{"chiservice", []string{"go1.26.8"}, []string{"chi.route"}, 0},
		{"ginservice", []string{"go1.26.8"}, []string{"gin.route"}, 0},
		{"echoservice", []string{"go1.26.8"}, []string{"echo.route"}, 0},
		{"muxservice", []string{"go1.26.8"}, []string{"gorilla/mux.route"}, 0},
	}
	libs := Libraries(Options{})
	specs := specsOf(libs)
	for _, b := range builds {
		for _, tg := range testenv.BuildTargets(t, b.target, b.toolchains, []testenv.Variant{testenv.Plain, testenv.Stripped}) {
			t.Run(tg.String(), func(t *testing.T) { holdCovers(t, libs, specs, tg.Path, b.wants, b.http2) })
		}
	}
	// The OpenTelemetry API's, whose span methods are the compiler's wrappers, with no
	// stack check: their probes go after the frame's set-up.
	for _, tg := range testenv.BuildOtelAPI(t, testenv.OtelAPIBuilds...) {
		t.Run(tg.Variant.Name, func(t *testing.T) { holdCovers(t, libs, specs, tg.Path, []string{"otelapi", "net/http.server"}, 1) })
	}
}

// holdCovers checks the hold points of the binary at path: every enabled probe's
// functions held, connect too, and http2 connection set-ups at least in their group.
func holdCovers(t *testing.T, libs []kit.Library, specs []offsets.Spec, path string, wants []string, wantHTTP2 int) {
	bin, err := offsets.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	rep, err := offsets.AnalyzeFunctions(bin, specs)
	if err != nil {
		t.Fatal(err)
	}
	at, http2, err := holdPoints(analysis{libs: libs, bin: bin, rep: rep, resolved: kit.ReportsOf(rep), propagate: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(http2) < wantHTTP2 {
		t.Errorf("%d HTTP/2 connection set-ups held, want %d at least", len(http2), wantHTTP2)
	}
	for _, off := range http2 {
		if slices.Contains(at, off) {
			t.Errorf("%#x is held in both groups", off)
		}
	}
	enabled := map[string]bool{}
	for _, p := range rep.Probes {
		enabled[p.Name] = p.Enabled
		if !p.Enabled {
			continue
		}
		for _, u := range p.Uprobes {
			if !slices.Contains(at, u.Offset) {
				t.Errorf("%s: %s is not held", p.Name, u.Symbol)
			}
		}
	}
	for _, name := range wants {
		if !enabled[name] {
			t.Errorf("%s is not enabled: the test covers nothing of it", name)
		}
	}
	fns, err := bin.Functions(connectFunc)
	if err != nil || !slices.Contains(at, fns[connectFunc].Offset) {
		t.Errorf("%s is not held (%v)", connectFunc, err)
	}
}

// With the overlapped start, Instrument returns once the hold is attached, and the
// probes attach after: whenever the launcher gives up on them (ctx ends, the app having
// exited) and whatever --attach-timeout (HoldLimit, which lets the app go first), the
// session shuts down and leaves no BPF link behind, the hold's included.
func TestOverlappedInstrumentHonoursContext(t *testing.T) {
	testenv.RequireRoot(t)
	tg := testenv.BuildTargets(t, "httpserver", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})[0]
	before := links(t)
	for _, limit := range []time.Duration{0, time.Microsecond} {
		for _, after := range []time.Duration{0, time.Millisecond, 10 * time.Millisecond, 30 * time.Millisecond, time.Second} {
			opts := Options{RingBufferSize: 1 << 16, Telemetry: otelconfig.Config{Sampling: otelconfig.DefaultSampling, TraceContext: true},
				Propagate: true, Overlap: true, HoldLimit: limit}
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(after, cancel)
			s, err := Instrument(ctx, tg.Path, os.Getpid(), opts)
			if err != nil {
				t.Fatalf("hold limit %s, cancelled after %s: %v", limit, after, err)
			}
			select {
			case <-s.Loaded():
			case <-time.After(10 * time.Second):
				t.Fatalf("hold limit %s, cancelled after %s: the probes neither attached nor gave up", limit, after)
			}
			if err := s.Shutdown(context.Background()); err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("hold limit %s, cancelled after %s: shutdown: %v", limit, after, err)
			}
			cancel()
			for deadline := time.Now().Add(10 * time.Second); links(t) > before; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("hold limit %s, cancelled after %s: %d BPF links left (%d before)", limit, after, links(t), before)
				}
			}
		}
	}
}
