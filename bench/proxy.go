package main

import (
	"fmt"
	"net/http"
	"time"
)

// proxy: service A's handler calls service B (GET /proxy -> B's /echo), both under the
// launcher: uprobe hits per proxied request, and the time added per request with
// client spans only (--propagate=false) and with the traceparent inserted by the kernel
// too; the difference is the propagation mechanism's own cost. "Forwarding" is a
// request with a traceparent and tracestate of its caller's through a proxy
// (httputil.ReverseProxy, /rp/) that forwards them to B: the proxy's kernel gives the
// forwarded traceparent its client span's in place. BPF time is the probes' and the
// socket programs' run time per request (A and B, or proxy and B); with -baseline,
// another launcher runs in the same rounds, interleaved, and its BPF time is compared.
func proxy(env *benchEnv) error {
	tg, recv, stop, err := countedBench()
	if err != nil {
		return err
	}
	defer stop()

	type config struct {
		name      string
		launcher  string
		propagate string
	}
	configs := []config{{"without launcher", "", ""}, {"spans, no propagation", env.launch, "false"}, {"spans and traceparent", env.launch, "true"}}
	if env.baseline != "" {
		configs = append(configs, config{"spans and traceparent, -baseline launcher", env.baseline, "true"})
	}
	type workload struct {
		name, path string
		upstream   string                  // A's UPSTREAM, after B's address
		header     func(int64) http.Header // each request's
	}
	workloads := []workload{
		{"A calls B: proxied requests", "/proxy", "", nil},
		{"Forwarding: a request with its caller's traceparent and tracestate through httputil.ReverseProxy", "/rp/echo", "", func(i int64) http.Header {
			return http.Header{"Traceparent": {fmt.Sprintf("00-%032x-%016x-01", 0x29e000000+i, 0x29e000+i)}, "Tracestate": {"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"}}
		}},
	}
	const rounds, dur, conns = 3, 5 * time.Second, 16
	type result struct {
		reqs             int
		latency1         time.Duration
		uprobes, sockets uint64        // program runs during the throughput run
		bpf              time.Duration // their run time
	}
	uprobePrefixes, socketPrefixes := []string{"server_", "client_", "request_write"}, []string{"inject", "app_sockops"}
	for _, wl := range workloads {
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
				_, _, err = loadWith(a.addr, wl.path, 1, 300*time.Millisecond, http1Transport, wl.header) // warm up
				if err == nil {
					_, res.latency1, err = loadWith(a.addr, wl.path, 1, dur/2, http1Transport, wl.header)
				}
				pids := []int{a.launcher, b.launcher}
				up0, upTime0 := ownStats(pids, uprobePrefixes...)
				sock0, sockTime0 := ownStats(pids, socketPrefixes...)
				if err == nil {
					res.reqs, _, err = loadWith(a.addr, wl.path, conns, dur, http1Transport, wl.header)
				}
				up1, upTime1 := ownStats(pids, uprobePrefixes...)
				sock1, sockTime1 := ownStats(pids, socketPrefixes...)
				res.uprobes, res.sockets = up1-up0, sock1-sock0
				res.bpf = upTime1 - upTime0 + sockTime1 - sockTime0
				a.stop()
				b.stop()
				if err != nil {
					return err
				}
				results[i] = append(results[i], res)
			}
		}
		mean := meanOf[result]
		rps := make([]float64, len(configs))
		lat := make([]float64, len(configs))
		bpf := make([]float64, len(configs))
		for i := range configs {
			rps[i] = mean(results[i], func(r result) float64 { return float64(r.reqs) / dur.Seconds() })
			lat[i] = mean(results[i], func(r result) float64 { return float64(r.latency1.Nanoseconds()) / 1e3 })
			bpf[i] = mean(results[i], func(r result) float64 { return float64(r.bpf.Nanoseconds()) / 1e3 / float64(max(1, r.reqs)) })
		}
		fmt.Printf("### %s (Go 1.26, both services under the launcher, %d rounds of %s, interleaved)\n\n", wl.name, rounds, dur)
		fmt.Println("| | throughput, 16 connections | | mean latency, 1 connection | added per proxied request | uprobe hits per request (both) | socket program runs per request | BPF time per request (both) |")
		fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|")
		for i, c := range configs {
			hits := mean(results[i], func(r result) float64 { return float64(r.uprobes) / float64(max(1, r.reqs)) })
			socks := mean(results[i], func(r result) float64 { return float64(r.sockets) / float64(max(1, r.reqs)) })
			added, h, s, b := "", "", "", ""
			if i > 0 {
				added, h, s, b = fmt.Sprintf("+%.0f µs", lat[i]-lat[0]), fmt.Sprintf("%.2f", hits), fmt.Sprintf("%.2f", socks), fmt.Sprintf("%.2f µs", bpf[i])
			}
			fmt.Printf("| %s | %.0f req/s | %.2f× | %.0f µs | %s | %s | %s | %s |\n", c.name, rps[i], rps[i]/rps[0], lat[i], added, h, s, b)
		}
		fmt.Printf("| **propagation alone** | | %.2f× | | **%+.0f µs** | | | %+.2f µs |\n", rps[2]/rps[1], lat[2]-lat[1], bpf[2]-bpf[1])
		if env.baseline != "" {
			fmt.Printf("| **this launcher / -baseline** | | %.2f× | | | | | **%.2f×** (%.2f / %.2f µs) |\n", rps[2]/rps[3], bpf[2]/bpf[3], bpf[2], bpf[3])
		}
		fmt.Println()
	}
	return nil
}
