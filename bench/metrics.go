package main

import (
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// metricsBench: what the request metrics cost - the launcher's CPU per
// request with metrics on and off (target: metrics add ≤ 1 µs), and its memory; and
// with the sampler at always_off, where every request is still counted but no span
// exported. The test HTTP server (Go 1.26) under the launcher, 16 connections for 5 s,
// the configurations interleaved round by round; the metrics exported every second to
// the bench's OTLP receiver.
func metricsBench(env *benchEnv) error {
	tg, recv, stop, err := countedBench()
	if err != nil {
		return err
	}
	defer stop()
	const rounds, dur, conns = 8, 4 * time.Second, 16
	configs := []struct {
		name string
		env  []string
	}{
		{"spans, no metrics", []string{"OTEL_METRICS_EXPORTER=none"}},
		{"spans and metrics", []string{"OTEL_METRICS_EXPORTER=otlp", "OTEL_METRIC_EXPORT_INTERVAL=1000"}},
		{"metrics only: always_off", []string{"OTEL_METRICS_EXPORTER=otlp", "OTEL_METRIC_EXPORT_INTERVAL=1000", "OTEL_TRACES_SAMPLER=always_off"}},
	}
	type result struct {
		reqs   int
		cpu    time.Duration
		spans  int
		rssKiB int64
	}
	results := make([][]result, len(configs))
	for r := 0; r < rounds; r++ {
		for i, c := range configs {
			s, err := startServer(env, tg, true, recv.Endpoint, c.env...)
			if err != nil {
				return err
			}
			load(s.addr, 1, 300*time.Millisecond) // warm up
			time.Sleep(500 * time.Millisecond)
			cpu0, spans0 := cpuTime(s.launcher), recv.Received()
			var res result
			if res.reqs, _, err = load(s.addr, conns, dur); err != nil {
				s.stop()
				return err
			}
			time.Sleep(500 * time.Millisecond) // the last batch exported
			res.cpu, res.spans, res.rssKiB = cpuTime(s.launcher)-cpu0, recv.Received()-spans0, rssKiB(s.launcher)
			s.stop()
			results[i] = append(results[i], res)
		}
	}
	mean := meanOf[result]
	cpuPerReq := func(r result) float64 { return float64(r.cpu.Nanoseconds()) / 1e3 / float64(max(1, r.reqs)) }
	perReq := func(rs []result) float64 { return mean(rs, cpuPerReq) }
	// The difference round by round, configurations run back to back: the machine's
	// drift over the run cancels out of it, as it does not out of the means.
	paired := func(i int) (median, lo, hi float64) {
		var d []float64
		for r := range results[i] {
			d = append(d, cpuPerReq(results[i][r])-cpuPerReq(results[0][r]))
		}
		slices.Sort(d)
		return d[len(d)/2], d[0], d[len(d)-1]
	}
	fmt.Printf("### Request metrics (Go 1.26 net/http under the launcher, %d connections, %d rounds of %s, interleaved)\n\n", conns, rounds, dur)
	fmt.Println("| configuration | requests/s | launcher CPU per request | vs spans alone: means | round by round: median (range) | spans exported per request | launcher RSS at the end |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|")
	for i, c := range configs {
		rs := results[i]
		med, lo, hi := paired(i)
		fmt.Printf("| %s | %.0f | %.2f µs | %+.2f µs | %+.2f µs (%+.2f to %+.2f) | %.2f | %.1f MB |\n", c.name,
			mean(rs, func(r result) float64 { return float64(r.reqs) / dur.Seconds() }), perReq(rs), perReq(rs)-perReq(results[0]), med, lo, hi,
			mean(rs, func(r result) float64 { return float64(r.spans) / float64(max(1, r.reqs)) }),
			mean(rs, func(r result) float64 { return float64(r.rssKiB) / 1024 }))
	}
	fmt.Println()
	// The launcher's CPU per request moves by several µs from round to round here, more
	// than metrics cost: the recording itself, measured alone by the Go benchmark.
	out, err := exec.Command("go", "test", "-run", "^$", "-bench", "^BenchmarkRecordServerSpan$", "-benchmem", "-count", "3",
		"github.com/otel-go-launcher/otel-go-launcher/telemetry").CombinedOutput()
	if err != nil {
		return fmt.Errorf("the recording benchmark: %v\n%s", err, out)
	}
	fmt.Println("Recording one server span's duration (telemetry's BenchmarkRecordServerSpan: the filter, the set, the SDK's histogram and exemplar):")
	fmt.Println()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "BenchmarkRecordServerSpan") {
			fmt.Println("    " + strings.Join(strings.Fields(line), " "))
		}
	}
	fmt.Println()
	return nil
}
