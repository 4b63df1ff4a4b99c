package main

import (
	"fmt"
	"time"
)

// proxy: service A's handler calls service B (GET /proxy -> B's /echo), both under the
// launcher: uprobe hits per proxied request, and the time added per request with
// client spans only (--propagate=false) and with the traceparent inserted by the kernel
// too; the difference is the propagation mechanism's own cost.
func proxy(env *benchEnv) error {
	tg, recv, stop, err := countedBench()
	if err != nil {
		return err
	}
	defer stop()

	type config struct {
		name      string
		launched  bool
		propagate string
	}
	configs := []config{{"without launcher", false, ""}, {"spans, no propagation", true, "false"}, {"spans and traceparent", true, "true"}}
	const rounds, dur, conns = 3, 5 * time.Second, 16
	type result struct {
		reqs             int
		latency1         time.Duration
		uprobes, sockets uint64 // program runs during the throughput run
	}
	results := make([][]result, len(configs))
	for r := 0; r < rounds; r++ {
		for i, c := range configs {
			var extra []string
			if c.launched {
				extra = append(extra, "LAUNCH_PROPAGATE="+c.propagate)
			}
			b, err := startServer(env, tg, c.launched, recv.Endpoint, extra...)
			if err != nil {
				return err
			}
			a, err := startServer(env, tg, c.launched, recv.Endpoint, append(extra, "UPSTREAM=http://"+b.addr)...)
			if err != nil {
				b.stop()
				return err
			}
			var res result
			_, _, err = loadPath(a.addr, "/proxy", 1, 300*time.Millisecond) // warm up
			if err == nil {
				_, res.latency1, err = loadPath(a.addr, "/proxy", 1, dur/2)
			}
			up0 := probeRuns("server_") + probeRuns("client_") + probeRuns("request_write")
			sock0 := probeRuns("inject") + probeRuns("app_sockops")
			if err == nil {
				res.reqs, _, err = loadPath(a.addr, "/proxy", conns, dur)
			}
			res.uprobes = probeRuns("server_") + probeRuns("client_") + probeRuns("request_write") - up0
			res.sockets = probeRuns("inject") + probeRuns("app_sockops") - sock0
			a.stop()
			b.stop()
			if err != nil {
				return err
			}
			results[i] = append(results[i], res)
		}
	}
	mean := func(rs []result, f func(result) float64) float64 {
		var s float64
		for _, r := range rs {
			s += f(r)
		}
		return s / float64(len(rs))
	}
	rps := make([]float64, len(configs))
	lat := make([]float64, len(configs))
	for i := range configs {
		rps[i] = mean(results[i], func(r result) float64 { return float64(r.reqs) / dur.Seconds() })
		lat[i] = mean(results[i], func(r result) float64 { return float64(r.latency1.Nanoseconds()) / 1e3 })
	}
	fmt.Printf("### A calls B: proxied requests (Go 1.26, both services under the launcher, %d rounds of %s, interleaved)\n\n", rounds, dur)
	fmt.Println("| | throughput, 16 connections | | mean latency, 1 connection | added per proxied request | uprobe hits per request (A+B) | socket program runs per request |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|")
	for i, c := range configs {
		hits := mean(results[i], func(r result) float64 { return float64(r.uprobes) / float64(max(1, r.reqs)) })
		socks := mean(results[i], func(r result) float64 { return float64(r.sockets) / float64(max(1, r.reqs)) })
		added, h, s := "", "", ""
		if i > 0 {
			added, h, s = fmt.Sprintf("+%.0f µs", lat[i]-lat[0]), fmt.Sprintf("%.2f", hits), fmt.Sprintf("%.2f", socks)
		}
		fmt.Printf("| %s | %.0f req/s | %.2f× | %.0f µs | %s | %s | %s |\n", c.name, rps[i], rps[i]/rps[0], lat[i], added, h, s)
	}
	fmt.Printf("| **propagation alone** | | %.2f× | | **+%.0f µs** | | |\n\n", rps[2]/rps[1], lat[2]-lat[1])
	return nil
}
