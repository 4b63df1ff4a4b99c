package main

import (
	"fmt"
	"os"
	"slices"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// exporter: which trace exporter, the SDK's or ours. The launcher's own encoder and senders
// against the SDK's otlptracegrpc and otlptracehttp exporters fed read-only span
// snapshots (a launcher built with -tags sdkexporter: telemetry/sdkexport.go), in the
// same interleaved rounds of the tracing workload, to the same receiver, over each
// protocol. The SDK's would replace ours if its launcher CPU per span were within 2×.
func exporterBench(env *benchEnv) error {
	built, err := buildSDKLauncher()
	if err != nil {
		return err
	}
	sdk, err := freshCopy(built) // as main copies -launch: written, not mapped by the linker
	if err != nil {
		return err
	}
	defer os.Remove(sdk)
	tg, recv, stop, err := countedBench()
	if err != nil {
		return err
	}
	defer stop()
	httpEndpoint, err := recv.StartHTTP()
	if err != nil {
		return err
	}
	const rounds = 6
	for _, p := range []struct {
		name string
		env  []string // metrics stay on gRPC: the same for both
	}{
		{"OTLP/gRPC", nil},
		{"OTLP/HTTP", []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=" + httpEndpoint + "/v1/traces"}},
	} {
		cases := []tracingCase{{"ours", env.launch, p.env}, {"the SDK's", sdk, p.env}}
		results, err := tracingRounds(tg, recv, cases, rounds)
		if err != nil {
			return err
		}
		ours, theirs := results[0], results[1]
		cpu := func(rs []tracingResult) (median, lo, hi float64) {
			v := make([]float64, len(rs))
			for i, r := range rs {
				v[i] = r.cpuPerSpan()
			}
			return medianFloat(v), slices.Min(v), slices.Max(v)
		}
		spans := func(rs []tracingResult) (spans, reqs int64) {
			for _, r := range rs {
				spans, reqs = spans+r.spans, reqs+int64(r.reqs)
			}
			return spans, reqs
		}
		om, olo, ohi := cpu(ours)
		sm, slo, shi := cpu(theirs)
		oSpans, oReqs := spans(ours)
		sSpans, sReqs := spans(theirs)
		fmt.Printf("### Trace exporter: ours or the SDK's (%s; Go 1.26 net/http, %d connections; %d rounds of %s, interleaved)\n\n", p.name, tracingConns, rounds, tracingDur)
		fmt.Println("| measure | ours (encoder, senders) | the SDK's exporter (snapshots) | SDK / ours |")
		fmt.Println("|---|---:|---:|---:|")
		fmt.Printf("| **launcher CPU per span**, median (range) | %.2f µs (%.2f-%.2f) | %.2f µs (%.2f-%.2f) | **%.2f×** |\n", om, olo, ohi, sm, slo, shi, sm/om)
		fmt.Printf("| launcher RSS, peak under that load | %.1f MiB | %.1f MiB | %.2f× |\n", peakRSSMiB(ours), peakRSSMiB(theirs), peakRSSMiB(theirs)/peakRSSMiB(ours))
		fmt.Printf("| spans received / requests | %d / %d | %d / %d | |\n", oSpans, oReqs, sSpans, sReqs)
		fmt.Printf("| throughput | %.0f req/s | %.0f req/s | %.2f× |\n\n", meanOf(ours, tracingResult.rps), meanOf(theirs, tracingResult.rps), meanOf(theirs, tracingResult.rps)/meanOf(ours, tracingResult.rps))
		verdict := "not within 2×: keep ours"
		if sm <= 2*om {
			verdict = "within 2×: the SDK's exporters would do"
		}
		fmt.Printf("The SDK's exporter costs %+.2f µs of launcher CPU per span over %s: %s.\n\n", sm-om, p.name, verdict)
	}
	return nil
}

// buildSDKLauncher builds the launcher with -tags sdkexporter as the Makefile builds
// bin/launch (static, -trimpath, -s, urfave_cli_no_docs; only the version stamp differs),
// once, beside testenv's other builds.
func buildSDKLauncher() (string, error) {
	return testenv.BuildProgram("./cmd/launch", "CGO_ENABLED=0", "GOFLAGS=-trimpath -ldflags=-s -tags=urfave_cli_no_docs,sdkexporter")
}
