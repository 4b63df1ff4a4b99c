package telemetry

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// bspConformanceRows are the batch span processor's settings. A row's scenario is the
// spans emitted, in phases bspPause apart ("5,20"); its outcome the spans of each
// export request in order ("5x3": three of five) and the spans dropped - for the
// launcher as its stats count them, for the SDK the spans that never arrived.
var bspConformanceRows = []conformanceRow{
	// Schedule delay: a batch at each delay, or all at shutdown.
	{name: "schedule delay 50", env: map[string]string{"ENDPOINT": "http://{grpc}", "OTEL_BSP_SCHEDULE_DELAY": "50"}, scenario: "3,3", want: "3x2 dropped=0"},
	{name: "schedule delay unset (5 s)", env: map[string]string{"ENDPOINT": "http://{grpc}"}, scenario: "3,3", want: "6 dropped=0"},
	{name: "schedule delay invalid: the default", env: map[string]string{"ENDPOINT": "http://{grpc}", "OTEL_BSP_SCHEDULE_DELAY": "soon"}, scenario: "3,3", want: "6 dropped=0"},
	// Export batch size: a full batch goes at once.
	{name: "max export batch size 4", env: map[string]string{"ENDPOINT": "http://{grpc}", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "4"}, scenario: "10", want: "4x2,2 dropped=0"},
	{name: "max export batch size invalid: the default", env: map[string]string{"ENDPOINT": "http://{grpc}", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "many"}, scenario: "10", want: "10 dropped=0"},
	// (Two pauses after the spans: the SDK's shutdown exports what is left in one batch.)
	{name: "max export batch size 0: the default", env: map[string]string{"ENDPOINT": "http://{grpc}", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "0"}, scenario: "4,0,0", want: "4 dropped=0",
		sdk: "1x4 dropped=0", why: "a batch of 0 is no batch size: the launcher warns and uses 512, as the specification says of an invalid value; the SDK exports each span alone"},
	{name: "max export batch size more than the queue: the queue's", env: map[string]string{"ENDPOINT": "http://{grpc}", "OTEL_BSP_MAX_QUEUE_SIZE": "50", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "100"},
		scenario: "50,30", want: "50,30 dropped=0"},
	{name: "max export batch size more than a queue of more than 512", env: map[string]string{"ENDPOINT": "http://{grpc}", "OTEL_BSP_MAX_QUEUE_SIZE": "1000", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "2000"},
		scenario: "600", want: "512,88 dropped=0"},
	// Queue size: while an export is slow, what does not fit is dropped.
	{name: "max queue size 10", env: map[string]string{"ENDPOINT": "http://{grpc-slow}", "OTEL_BSP_MAX_QUEUE_SIZE": "10", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "5"},
		scenario: "5,20", want: "5x3 dropped=10"},
	{name: "max queue size unset", env: map[string]string{"ENDPOINT": "http://{grpc-slow}"}, scenario: "512,3000", want: "512x6,440 dropped=0",
		sdk: "512x5 dropped=952", why: "the launcher queues 32768 spans by default, the SDK 2048: the launcher's are OTLP bytes (~300 a span), and 32768 ride out a collector stalled for 2 s at 16,000 spans a second"},
	{name: "max queue size invalid: the default", env: map[string]string{"ENDPOINT": "http://{grpc-slow}", "OTEL_BSP_MAX_QUEUE_SIZE": "many", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "5"},
		scenario: "5,20", want: "5x5 dropped=0"},
	{name: "max queue size -1: the default", env: map[string]string{"ENDPOINT": "http://{grpc-slow}", "OTEL_BSP_MAX_QUEUE_SIZE": "-1", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "5"},
		scenario: "5,20", want: "5x5 dropped=0",
		sdk: "fail", why: "the SDK makes its queue of that size and panics; the launcher warns and uses the default, as the specification says of an invalid value"},
	// Export timeout: an export to a collector that never answers ends at it, or with 0
	// (none) at the exporter's own (1 s here).
	{name: "export timeout 100", env: map[string]string{"ENDPOINT": "http://{grpc-stall}", "TIMEOUT": "1000", "OTEL_BSP_EXPORT_TIMEOUT": "100", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "2"},
		scenario: "2", want: "fail", within: 600 * time.Millisecond, sdkToo: true},
	{name: "export timeout 0: none", env: map[string]string{"ENDPOINT": "http://{grpc-stall}", "TIMEOUT": "1000", "OTEL_BSP_EXPORT_TIMEOUT": "0", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "2"},
		scenario: "2", want: "fail", atLeast: 900 * time.Millisecond, sdkToo: true},
	{name: "export timeout invalid: the default (30 s)", env: map[string]string{"ENDPOINT": "http://{grpc-stall}", "TIMEOUT": "1000", "OTEL_BSP_EXPORT_TIMEOUT": "soon", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "2"},
		scenario: "2", want: "fail", atLeast: 900 * time.Millisecond, sdkToo: true},
}

// bspPause parts a scenario's phases: longer than a short schedule delay, shorter than
// a slow receiver's first answer.
const bspPause = 150 * time.Millisecond

// For each of the batch span processor's settings, the SDK's (sdktrace's
// BatchSpanProcessor with no options, in front of the OTLP exporter, both built from
// the environment alone) and the launcher's pipeline (otelconfig.FromEnv, New, Emit,
// Shutdown) export the same spans to the same receivers, in a child process with that
// environment, as TestOTLPConformance's: in the same batches, dropping as many.
func TestBatchSpanProcessorConformance(t *testing.T) {
	if name := os.Getenv(conformanceChildEnv); name != "" {
		bspConformanceChild(name, os.Getenv(conformanceScenarioEnv))
		return
	}
	setup := newConformanceSetup(t, "OTEL_METRICS_EXPORTER=none")
	setup.run(t, "TestBatchSpanProcessorConformance", bspConformanceRows, func(row conformanceRow, name string, res conformanceResult) (string, string) {
		total := 0
		for _, n := range bspPhases(row.scenario) {
			total += n
		}
		ours, oursDelivered := setup.batches(exportName(name, "ours"))
		sdk, sdkDelivered := setup.batches(exportName(name, "sdk"))
		if oursDelivered > 0 {
			ours += fmt.Sprintf(" dropped=%d", res.Ours.Dropped)
		}
		if sdkDelivered > 0 {
			sdk += fmt.Sprintf(" dropped=%d", total-sdkDelivered)
		}
		return ours, sdk
	})
}

// batches says how the spans named name arrived: the spans of each request, in order,
// a run of equal ones as "NxK"; "fail" if none did.
func (s *conformanceSetup) batches(name string) (string, int) {
	var sizes []string
	delivered, run := 0, 0
	for i, r := range s.recs.of(name) {
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(r.body, &req); err != nil {
			return "not protobuf", 0
		}
		n := 0
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					if sp.Name == name {
						n++
					}
				}
			}
		}
		delivered += n
		size := strconv.Itoa(n)
		if i > 0 && strings.HasPrefix(sizes[len(sizes)-1], size+"x") || i > 0 && sizes[len(sizes)-1] == size {
			run++
			sizes[len(sizes)-1] = size + "x" + strconv.Itoa(run)
			continue
		}
		sizes, run = append(sizes, size), 1
	}
	if delivered == 0 {
		return "fail", 0
	}
	return strings.Join(sizes, ","), delivered
}

func bspPhases(scenario string) []int {
	var phases []int
	for _, p := range strings.Split(scenario, ",") {
		n, _ := strconv.Atoi(p)
		phases = append(phases, n)
	}
	return phases
}

// emitPhases calls emit for each span of the scenario's phases, bspPause apart.
func emitPhases(scenario string, emit func(i int)) {
	i := 0
	for p, n := range bspPhases(scenario) {
		if p > 0 {
			time.Sleep(bspPause)
		}
		for range n {
			emit(i)
			i++
		}
	}
}

// bspConformanceChild emits the scenario's spans through the SDK's batch span
// processor and the launcher's pipeline, side by side, both configured by this
// process's environment alone, and says how each went: the time from the first span
// to the end of shutdown, and the spans the launcher dropped.
func bspConformanceChild(name, scenario string) {
	var res conformanceResult
	var wg sync.WaitGroup
	wg.Go(func() {
		res.SDK.measure(func() (err error) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			exp, err := envTraceExporter(ctx)
			if err != nil {
				return err
			}
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("panic: %v", p)
				}
			}()
			bsp := sdktrace.NewBatchSpanProcessor(exp)
			emitPhases(scenario, func(i int) { bsp.OnEnd(stubSpan(exportName(name, "sdk"), i)) })
			return bsp.Shutdown(ctx)
		})
	})
	wg.Go(func() {
		res.Ours.measure(func() error {
			p, err := envPipeline(&res.Ours)
			if err != nil {
				return err
			}
			mono := monoNow()
			emitPhases(scenario, func(i int) {
				id := trace.SpanID{4, byte(i), byte(i >> 8)}
				p.Emit(&Span{TraceID: trace.TraceID{4, byte(i), byte(i >> 8)}, SpanID: id, Kind: trace.SpanKindServer, Name: exportName(name, "ours"), Start: mono, End: mono + 1e6})
			})
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			err = p.Shutdown(ctx)
			res.Ours.Dropped = p.Stats()[0].Dropped
			return err
		})
	})
	wg.Wait()
	sayConformance(res)
}
