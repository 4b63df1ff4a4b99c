package main

import (
	"fmt"
	"time"
)

// proxy: service A's handler calls service B (GET /proxy -> B's /echo), both under the
// launcher: uprobe hits per proxied request, and the time added per request with
// client spans only (--propagate=false) and with the traceparent inserted by the kernel
// too; the difference is the propagation mechanism's own cost. Hits and BPF time are
// the two launchers' own programs'. With -baseline, the other launcher's two cases
// too, in the same rounds.
func proxy(env *benchEnv) error {
	tg, recv, stop, err := countedBench()
	if err != nil {
		return err
	}
	defer stop()

	type config struct {
		name      string
		launcher  string // "": none
		propagate string
	}
	configs := []config{{"without launcher", "", ""}, {"spans, no propagation", env.launch, "false"}, {"spans and traceparent", env.launch, "true"}}
	if env.baseline != "" {
		configs = append(configs, config{"baseline: spans, no propagation", env.baseline, "false"}, config{"baseline: spans and traceparent", env.baseline, "true"})
	}
	const rounds, dur, conns = 3, 5 * time.Second, 16
	type result struct {
		reqs             int
		latency1         time.Duration
		uprobes, sockets uint64        // program runs during the throughput run
		bpf              time.Duration // the uprobe programs' run time
	}
	results := make([][]result, len(configs))
	for r := 0; r < rounds; r++ {
		for i, c := range configs {
			var extra []string
			if c.launcher != "" {
				extra = append(extra, "LAUNCH_PROPAGATE="+c.propagate)
			}
			b, err := startServerUnder(c.launcher, tg, recv.Endpoint, extra...)
			if err != nil {
				return err
			}
			a, err := startServerUnder(c.launcher, tg, recv.Endpoint, append(extra, "UPSTREAM=http://"+b.addr)...)
			if err != nil {
				b.stop()
				return err
			}
			var res result
			_, _, err = loadPath(a.addr, "/proxy", 1, 300*time.Millisecond) // warm up
			if err == nil {
				_, res.latency1, err = loadPath(a.addr, "/proxy", 1, dur/2)
			}
			// The launchers' own programs: socket programs, and uprobes (the rest).
			count := func() (uprobes, sockets uint64, bpf time.Duration) {
				for _, l := range []*server{a, b} {
					if l.launcher == 0 {
						continue
					}
					for name, st := range ownPrograms(l.launcher) {
						if name == "inject" || name == "app_sockops" {
							sockets += st.runs
						} else {
							uprobes, bpf = uprobes+st.runs, bpf+st.time
						}
					}
				}
				return
			}
			up0, sock0, bpf0 := count()
			if err == nil {
				res.reqs, _, err = loadPath(a.addr, "/proxy", conns, dur)
			}
			up1, sock1, bpf1 := count()
			res.uprobes, res.sockets, res.bpf = up1-up0, sock1-sock0, bpf1-bpf0
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
	fmt.Println("| | throughput, 16 connections | | mean latency, 1 connection | added per proxied request | uprobe hits per request (A+B) | BPF time of the uprobes per request (A+B) | socket program runs per request |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|")
	for i, c := range configs {
		hits := mean(results[i], func(r result) float64 { return float64(r.uprobes) / float64(max(1, r.reqs)) })
		socks := mean(results[i], func(r result) float64 { return float64(r.sockets) / float64(max(1, r.reqs)) })
		bpf := mean(results[i], func(r result) float64 { return float64(r.bpf.Nanoseconds()) / 1000 / float64(max(1, r.reqs)) })
		added, h, t, s := "", "", "", ""
		if i > 0 {
			added, h, t, s = fmt.Sprintf("+%.0f µs", lat[i]-lat[0]), fmt.Sprintf("%.2f", hits), fmt.Sprintf("%.2f µs", bpf), fmt.Sprintf("%.2f", socks)
		}
		fmt.Printf("| %s | %.0f req/s | %.2f× | %.0f µs | %s | %s | %s | %s |\n", c.name, rps[i], rps[i]/rps[0], lat[i], added, h, t, s)
	}
	fmt.Printf("| **propagation alone** | | %.2f× | | **+%.0f µs** | | |\n\n", rps[2]/rps[1], lat[2]-lat[1])
	return nil
}
