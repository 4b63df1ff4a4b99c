package main

import (
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// routesBench: what a router's route probe costs - uprobe hits, BPF time, throughput
// and latency per routed request (GET /users/7, the template /users/{id} or
// /users/:id), for each router's service (internal/testenv/targets, the router's
// newest release, Go 1.26) without the launcher and with it; with -baseline, another
// launcher too (one without route probes: the probe's own cost), interleaved round by
// round. A request ServeMux answers itself in the same service (/hello) shows what an
// app with a route probe pays where no router is on the request's way.
func routesBench(env *benchEnv) error {
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return fmt.Errorf("enable BPF run counts: %w", err)
	}
	defer stats.Close()
	recv, err := testenv.NewReceiver()
	if err != nil {
		return err
	}
	defer recv.Stop()
	recv.CountOnly()
	if _, _, err := reportTrapCosts(); err != nil {
		return err
	}

	const dur, conns = 5 * time.Second, 16
	rounds := 3
	if env.baseline != "" {
		rounds = 6
	}
	cases := []struct{ name, launcher string }{{"without launcher", ""}, {"with launcher", env.launch}}
	if env.baseline != "" {
		cases = append(cases, struct{ name, launcher string }{"baseline launcher", env.baseline})
	}
	type result struct {
		reqs, hello      int
		latency1         time.Duration
		hits, routeHits  uint64
		helloHits        uint64
		bpfTime, helloNs time.Duration
	}
	for _, rt := range []testenv.Router{testenv.Chi, testenv.GorillaMux, testenv.Gin, testenv.Echo} {
		tgs, err := rt.BuildErr(rt.Newest())
		if err != nil {
			return err
		}
		results := make([][]result, len(cases))
		for r := 0; r < rounds; r++ {
			for i, c := range cases {
				var muxAddr string
				s, err := startAppUnder(launcherArgv(c.launcher), recv.Endpoint, func(addr string) []string {
					muxAddr = freePort()
					return []string{tgs[0].Path, "-addr", addr, "-muxaddr", muxAddr}
				})
				if err != nil {
					return err
				}
				var res result
				measure := func() error {
					loadPath(s.addr, "/users/7", 1, 300*time.Millisecond) // warm up
					if _, res.latency1, err = loadPath(s.addr, "/users/7", 1, dur/2); err != nil {
						return err
					}
					runs0, bpf0 := probeStats("server_")
					routes0, routeNs0 := probeStats("route_")
					if res.reqs, _, err = loadPath(s.addr, "/users/7", conns, dur); err != nil {
						return err
					}
					runs, bpf := probeStats("server_")
					routes, routeNs := probeStats("route_")
					res.routeHits = routes - routes0
					res.hits = runs - runs0 + res.routeHits
					res.bpfTime = bpf - bpf0 + routeNs - routeNs0
					// ServeMux's own route, no router on the way.
					runs0, bpf0 = probeStats("server_")
					routes0, routeNs0 = probeStats("route_")
					if res.hello, _, err = loadPath(muxAddr, "/hello", conns, dur/5); err != nil {
						return err
					}
					runs, bpf = probeStats("server_")
					routes, routeNs = probeStats("route_")
					res.helloHits = runs - runs0 + routes - routes0
					res.helloNs = bpf - bpf0 + routeNs - routeNs0
					return nil
				}
				err = measure()
				s.stop()
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
		rps := func(rs []result) float64 {
			return mean(rs, func(r result) float64 { return float64(r.reqs) / dur.Seconds() })
		}
		lat := func(rs []result) float64 {
			return mean(rs, func(r result) float64 { return float64(r.latency1.Nanoseconds()) / 1000 })
		}
		direct := results[0]
		fmt.Printf("### Routes: %s %s (Go 1.26, GET /users/7, %d rounds of %s, interleaved)\n\n", rt.Module, rt.Default, rounds, dur)
		header, rule := "| measure | without launcher |", "|---|---:|"
		for _, c := range cases[1:] {
			header += " " + c.name + " | |"
			rule += "---:|---|"
		}
		fmt.Println(header)
		fmt.Println(rule)
		row := func(what, bare string, cell func(rs []result) (string, string)) {
			line := "| " + what + " | " + bare + " |"
			for _, rs := range results[1:] {
				v, note := cell(rs)
				line += " " + v + " | " + note + " |"
			}
			fmt.Println(line)
		}
		row(fmt.Sprintf("throughput, %d connections", conns), fmt.Sprintf("%.0f req/s", rps(direct)), func(rs []result) (string, string) {
			return fmt.Sprintf("%.0f req/s", rps(rs)), fmt.Sprintf("**%.2f×**", rps(rs)/rps(direct))
		})
		row("mean latency, 1 connection", fmt.Sprintf("%.0f µs", lat(direct)), func(rs []result) (string, string) {
			return fmt.Sprintf("%.0f µs", lat(rs)), fmt.Sprintf("**+%.0f µs/request**", lat(rs)-lat(direct))
		})
		row("uprobe hits per routed request", "", func(rs []result) (string, string) {
			return fmt.Sprintf("%.2f", mean(rs, func(r result) float64 { return float64(r.hits) / float64(r.reqs) })),
				fmt.Sprintf("of which the route probe %.2f", mean(rs, func(r result) float64 { return float64(r.routeHits) / float64(r.reqs) }))
		})
		row("BPF program time per routed request", "", func(rs []result) (string, string) {
			return fmt.Sprintf("%.2f µs", mean(rs, func(r result) float64 { return float64(r.bpfTime.Nanoseconds()) / 1000 / float64(r.reqs) })),
				"kernel run times / requests (the traps are not in it)"
		})
		row("uprobe hits per /hello (ServeMux's)", "", func(rs []result) (string, string) {
			return fmt.Sprintf("%.2f", mean(rs, func(r result) float64 { return float64(r.helloHits) / float64(r.hello) })),
				fmt.Sprintf("%.2f µs BPF time", mean(rs, func(r result) float64 { return float64(r.helloNs.Nanoseconds()) / 1000 / float64(r.hello) }))
		})
		fmt.Println()
	}
	return nil
}
