package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// grpcBench: the cost of tracing gRPC and HTTP/2 - a Go client loop (this process,
// untraced) calling the grpcservice target (grpc v1.85.0, Go 1.26) without the
// launcher, under it with --propagate=false and with propagation (the default),
// interleaved: throughput, µs added per call, uprobe hits per call. "Relay" calls a
// service whose handler makes two unary calls and a stream to a second, untraced one:
// its server span and three client spans per RPC, each carrying its traceparent with
// propagation. "h2c proxy" is an HTTP/1 request whose handler makes an h2c request
// (net/http's client) to the second one. "x/net h2c" is a request to the service's
// golang.org/x/net/http2 h2c handler, over plaintext HTTP/2.
func grpcBench(env *benchEnv) error {
	tgs, err := testenv.BuildGRPCErr(testenv.GRPCBuild{Version: "v1.85.0", Toolchain: "go1.26.8"})
	if err != nil {
		return err
	}
	path := tgs[0].Path
	trap, _, err := reportTrapCosts()
	if err != nil {
		return err
	}
	_, recv, stop, err := countedBench()
	if err != nil {
		return err
	}
	defer stop()
	backH2C := freePort()
	downstream, err := startServerUnder("", path, recv.Endpoint, "GRPCSERVICE_H2C="+backH2C)
	if err != nil {
		return err
	}
	defer downstream.stop()

	type workload struct {
		name, method string                   // a gRPC method, or an HTTP path
		http         func() http.RoundTripper // over HTTP: its transport
		serve        string                   // the variable that starts its HTTP server
	}
	workloads := []workload{
		{"gRPC unary Say", "/demo.Echo/Say", nil, ""},
		{"gRPC Relay (3 client calls)", "/demo.Echo/Relay", nil, ""},
		{"h2c proxy (1 client call)", "/proxy?to=http://" + backH2C + "/sha", http1Transport, "GRPCSERVICE_HTTP"},
		{"x/net h2c server /hello", "/hello", h2cTransport, "GRPCSERVICE_XH2C"},
	}
	type config struct {
		name      string
		launched  bool
		propagate string
		traps     bool // counting programs at the launcher's sites, without the launcher
	}
	configs := []config{{"without launcher", false, "", false}, {"spans, --propagate=false", true, "false", false},
		{"spans and traceparent", true, "true", false}, {"traps alone: a counter at the same sites, no launcher", false, "", true}}
	// Latency is the median of every call made one at a time, over all rounds: the
	// cost the probes add is in every call, and a median does not move with the
	// scheduling hiccups of a shared 2-core VM (a mean did, by 100 µs between runs).
	const rounds, dur, conns = 5, 3 * time.Second, 8
	type result struct {
		calls    int
		latency1 []time.Duration // each call's, one at a time
		hits     uint64
		bpfTime  time.Duration // the uprobe programs' run time, without the trap
		sockets  uint64        // socket program runs
		cpu      time.Duration // the launcher's own CPU time
	}
	// The launcher's own programs (pid), not another process's of the same names.
	uprobes := func(pid int) (uint64, time.Duration) {
		var runs uint64
		var t time.Duration
		for _, prefix := range []string{"server_", "xnet_server_", "h2_server_", "client_", "request_write", "h2_request_write"} {
			r, d := ownStats(pid, prefix)
			runs, t = runs+r, t+d
		}
		return runs, t
	}
	for _, w := range workloads {
		results := make([][]result, len(configs))
		for r := 0; r < rounds; r++ {
			for i, c := range configs {
				httpAddr, serve := freePort(), w.serve
				if serve == "" {
					serve = "GRPCSERVICE_HTTP"
				}
				launcher, extra := "", []string{serve + "=" + httpAddr}
				if c.launched {
					launcher = env.launch
					extra = append(extra, "LAUNCH_PROPAGATE="+c.propagate)
				}
				srv, err := startAppUnder(launcherArgv(launcher), recv.Endpoint, func(addr string) []string { return []string{path, addr, downstream.addr} }, extra...)
				if err != nil {
					return err
				}
				sites, err := sitesIf(c.traps, env.launch, path, srv)
				if err != nil {
					return err
				}
				res, err := func() (result, error) {
					var res result
					if w.http != nil { // its HTTP server starts beside the gRPC one
						if err := waitDial(httpAddr, 5*time.Second); err != nil {
							return res, err
						}
					}
					loop := func(n int, d time.Duration) (int, error) {
						if w.http != nil {
							calls, _, err := loadPathOver(httpAddr, w.method, n, d, w.http)
							return calls, err
						}
						conn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
						if err != nil {
							return 0, err
						}
						defer conn.Close()
						return callLoop(conn, w.method, n, d)
					}
					if _, err := loop(1, 300*time.Millisecond); err != nil {
						return res, err
					}
					var err error
					if res.latency1, err = oneAtATime(srv.addr, httpAddr, w.method, w.http, dur/2); err != nil {
						return res, err
					}
					h0, t0 := uprobes(srv.launcher)
					if sites != nil {
						h0 = sites.hits()
					}
					k0, _ := ownStats(srv.launcher, "inject")
					var c0 time.Duration
					if srv.launcher != 0 {
						c0 = cpuTime(srv.launcher)
					}
					res.calls, err = loop(conns, dur)
					h1, t1 := uprobes(srv.launcher)
					if sites != nil {
						h1, t1 = sites.hits(), t0
					}
					k1, _ := ownStats(srv.launcher, "inject")
					res.hits, res.bpfTime, res.sockets = h1-h0, t1-t0, k1-k0
					if srv.launcher != 0 {
						res.cpu = cpuTime(srv.launcher) - c0
					}
					return res, err
				}()
				srv.stop()
				if sites != nil {
					sites.close()
				}
				if err != nil {
					return fmt.Errorf("%s, %s: %w", w.name, c.name, err)
				}
				results[i] = append(results[i], res)
			}
		}
		mean := meanOf[result]
		rps := func(rs []result) float64 {
			return mean(rs, func(r result) float64 { return float64(r.calls) / dur.Seconds() })
		}
		lat := func(rs []result) float64 {
			return medianMicros(rs, func(r result) []time.Duration { return r.latency1 })
		}
		fmt.Printf("### %s (grpc v1.85.0, Go 1.26; client loop untraced; %d rounds of %s, interleaved)\n\n", w.name, rounds, dur)
		fmt.Println("| | throughput, 8 concurrent calls | | median latency, 1 at a time | added per call | uprobe hits per call | BPF program time per call | socket program runs per call | launcher CPU per call | target: hits × single-stepped hit + 10 µs |")
		fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
		fmt.Printf("| %s | %.0f /s | 1.00× | %.0f µs | | | | | | |\n", configs[0].name, rps(results[0]), lat(results[0]))
		for i := 1; i < len(configs); i++ {
			hits := mean(results[i], func(r result) float64 { return float64(r.hits) / float64(max(1, r.calls)) })
			bpfTime := mean(results[i], func(r result) float64 { return float64(r.bpfTime.Nanoseconds()) / 1e3 / float64(max(1, r.calls)) })
			socks := mean(results[i], func(r result) float64 { return float64(r.sockets) / float64(max(1, r.calls)) })
			cpu := mean(results[i], func(r result) float64 { return float64(r.cpu.Nanoseconds()) / 1e3 / float64(max(1, r.calls)) })
			fmt.Printf("| %s | %.0f /s | %.2f× | %.0f µs | +%.0f µs | %.2f | %.1f µs | %.2f | %.1f µs | ≤ %.0f µs |\n",
				configs[i].name, rps(results[i]), rps(results[i])/rps(results[0]), lat(results[i]), lat(results[i])-lat(results[0]), hits, bpfTime, socks, cpu,
				hits*float64(trap.Nanoseconds())/1e3+10)
		}
		fmt.Println()
	}
	return nil
}

// waitDial waits for addr to accept a connection.
func waitDial(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// callLoop makes unary calls of method over conn from conns goroutines for d: the
// number completed.
func callLoop(conn *grpc.ClientConn, method string, conns int, d time.Duration) (int, error) {
	var n atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in, out := wrapperspb.String("bench"), new(wrapperspb.StringValue)
			for time.Now().Before(deadline) {
				if err := conn.Invoke(context.Background(), method, in, out); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return int(n.Load()), nil
}

// oneAtATime calls for d, one call at a time - gRPC method on grpcAddr, or GET path on
// httpAddr - and returns each call's latency.
func oneAtATime(grpcAddr, httpAddr, path string, overHTTP func() http.RoundTripper, d time.Duration) ([]time.Duration, error) {
	var call func() error
	if overHTTP != nil {
		client := &http.Client{Transport: overHTTP()}
		defer client.CloseIdleConnections()
		call = func() error {
			resp, err := client.Get("http://" + httpAddr + path)
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: %s", path, resp.Status)
			}
			return nil
		}
	} else {
		conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		in, out := wrapperspb.String("bench"), new(wrapperspb.StringValue)
		call = func() error { return conn.Invoke(context.Background(), path, in, out) }
	}
	var lat []time.Duration
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		begin := time.Now()
		if err := call(); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(begin))
	}
	return lat, nil
}
