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
	"google.golang.org/grpc/metadata"
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
		forward      bool                     // each call carries a caller's traceparent, which the service forwards
	}
	workloads := []workload{
		{"gRPC unary Say", "/demo.Echo/Say", nil, "", false},
		{"gRPC Relay (3 client calls)", "/demo.Echo/Relay", nil, "", false},
		{"gRPC Forward (1 client call, the caller's traceparent and tracestate metadata forwarded)", "/demo.Echo/Forward", nil, "", true},
		{"h2c proxy (1 client call)", "/proxy?to=http://" + backH2C + "/sha", http1Transport, "GRPCSERVICE_HTTP", false},
		{"h2c proxy forwarding the caller's traceparent (1 client call)", "/proxy?keep=1&to=http://" + backH2C + "/sha", http1Transport, "GRPCSERVICE_HTTP", true},
		{"x/net h2c server /hello", "/hello", h2cTransport, "GRPCSERVICE_XH2C", false},
	}
	type config struct {
		name      string
		launcher  string
		propagate string
		traps     bool // counting programs at the launcher's sites, without the launcher
	}
	configs := []config{{"without launcher", "", "", false}, {"spans, --propagate=false", env.launch, "false", false},
		{"spans and traceparent", env.launch, "true", false}, {"traps alone: a counter at the same sites, no launcher", "", "", true}}
	if env.baseline != "" { // the same, another launcher, in the same rounds
		configs = append(configs, config{"spans and traceparent, -baseline launcher", env.baseline, "true", false})
	}
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
		sockTime time.Duration // their run time
		cpu      time.Duration // the launcher's own CPU time
	}
	uprobePrefixes := []string{"server_", "xnet_server_", "h2_server_", "client_", "request_write", "h2_request_write"}
	socketPrefixes := []string{"inject", "app_sockops"}
	for _, w := range workloads {
		results := make([][]result, len(configs))
		for r := 0; r < rounds; r++ {
			for i, c := range configs {
				httpAddr, serve := freePort(), w.serve
				if serve == "" {
					serve = "GRPCSERVICE_HTTP"
				}
				launcher, extra := c.launcher, []string{serve + "=" + httpAddr}
				if c.launcher != "" {
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
							calls, _, err := loadWith(httpAddr, w.method, n, d, w.http, callerHeader(w.forward))
							return calls, err
						}
						conn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
						if err != nil {
							return 0, err
						}
						defer conn.Close()
						return callLoop(conn, w.method, w.forward, n, d)
					}
					if _, err := loop(1, 300*time.Millisecond); err != nil {
						return res, err
					}
					var err error
					if res.latency1, err = oneAtATime(srv.addr, httpAddr, w.method, w.http, w.forward, dur/2); err != nil {
						return res, err
					}
					pids := []int{srv.launcher}
					up0, upTime0 := ownStats(pids, uprobePrefixes...)
					sock0, sockTime0 := ownStats(pids, socketPrefixes...)
					var h0 uint64
					if sites != nil {
						h0 = sites.hits()
					}
					var c0 time.Duration
					if srv.launcher != 0 {
						c0 = cpuTime(srv.launcher)
					}
					res.calls, err = loop(conns, dur)
					up1, upTime1 := ownStats(pids, uprobePrefixes...)
					sock1, sockTime1 := ownStats(pids, socketPrefixes...)
					res.hits, res.bpfTime = up1-up0, upTime1-upTime0
					res.sockets, res.sockTime = sock1-sock0, sockTime1-sockTime0
					if sites != nil {
						res.hits, res.bpfTime = sites.hits()-h0, 0
					}
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
		fmt.Println("| | throughput, 8 concurrent calls | | median latency, 1 at a time | added per call | uprobe hits per call | BPF program time per call | socket program runs per call | socket program time per call | launcher CPU per call | target: hits × single-stepped hit + 10 µs |")
		fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
		fmt.Printf("| %s | %.0f /s | 1.00× | %.0f µs | | | | | | | |\n", configs[0].name, rps(results[0]), lat(results[0]))
		bpfOf := func(i int) float64 { // uprobe and socket programs, per call
			return mean(results[i], func(r result) float64 {
				return float64((r.bpfTime + r.sockTime).Nanoseconds()) / 1e3 / float64(max(1, r.calls))
			})
		}
		for i := 1; i < len(configs); i++ {
			hits := mean(results[i], func(r result) float64 { return float64(r.hits) / float64(max(1, r.calls)) })
			bpfTime := mean(results[i], func(r result) float64 { return float64(r.bpfTime.Nanoseconds()) / 1e3 / float64(max(1, r.calls)) })
			socks := mean(results[i], func(r result) float64 { return float64(r.sockets) / float64(max(1, r.calls)) })
			sockTime := mean(results[i], func(r result) float64 { return float64(r.sockTime.Nanoseconds()) / 1e3 / float64(max(1, r.calls)) })
			cpu := mean(results[i], func(r result) float64 { return float64(r.cpu.Nanoseconds()) / 1e3 / float64(max(1, r.calls)) })
			fmt.Printf("| %s | %.0f /s | %.2f× | %.0f µs | +%.0f µs | %.2f | %.1f µs | %.2f | %.2f µs | %.1f µs | ≤ %.0f µs |\n",
				configs[i].name, rps(results[i]), rps(results[i])/rps(results[0]), lat(results[i]), lat(results[i])-lat(results[0]), hits, bpfTime, socks, sockTime, cpu,
				hits*float64(trap.Nanoseconds())/1e3+10)
		}
		if env.baseline != "" {
			last := len(configs) - 1
			fmt.Printf("| **this launcher / -baseline**, spans and traceparent | | %.2f× | | | | **%.2f×** BPF time, uprobes and socket programs (%.2f / %.2f µs) | | | | |\n",
				rps(results[2])/rps(results[last]), bpfOf(2)/bpfOf(last), bpfOf(2), bpfOf(last))
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
func callLoop(conn *grpc.ClientConn, method string, forward bool, conns int, d time.Duration) (int, error) {
	var n atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in, out := callArg(forward), new(wrapperspb.StringValue)
			for time.Now().Before(deadline) {
				if err := conn.Invoke(callerContext(forward), method, in, out); err != nil {
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
func oneAtATime(grpcAddr, httpAddr, path string, overHTTP func() http.RoundTripper, forward bool, d time.Duration) ([]time.Duration, error) {
	var call func() error
	if overHTTP != nil {
		client := &http.Client{Transport: overHTTP()}
		defer client.CloseIdleConnections()
		header := callerHeader(forward)
		call = func() error {
			req, _ := http.NewRequest(http.MethodGet, "http://"+httpAddr+path, nil)
			if header != nil {
				req.Header = header(0)
			}
			resp, err := client.Do(req)
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
		in, out := callArg(forward), new(wrapperspb.StringValue)
		call = func() error { return conn.Invoke(callerContext(forward), path, in, out) }
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

// callerSeq numbers the callers' spans of the forwarding workloads.
var callerSeq atomic.Int64

// callerHeader gives each request a caller's traceparent and tracestate, a new span's
// each time (nil: none).
func callerHeader(forward bool) func(int64) http.Header {
	if !forward {
		return nil
	}
	return func(int64) http.Header { // a new span's, whatever the loop's count: an HTTP/2 encoder would index a value sent again
		i := callerSeq.Add(1)
		return http.Header{"Traceparent": {fmt.Sprintf("00-%032x-%016x-01", 0x29f000000+i, 0x29f000+i)}, "Tracestate": {"congo=t61rcWkgMzE"}}
	}
}

// callerContext is a call's context: with forward, metadata of a caller's trace, a new
// span's each call.
func callerContext(forward bool) context.Context {
	if !forward {
		return context.Background()
	}
	i := callerSeq.Add(1)
	return metadata.AppendToOutgoingContext(context.Background(), "traceparent", fmt.Sprintf("00-%032x-%016x-01", 0x29f000000+i, 0x29f000+i), "tracestate", "congo=t61rcWkgMzE")
}

// callArg is a call's argument: Forward's names the method it calls next.
func callArg(forward bool) *wrapperspb.StringValue {
	if forward {
		return wrapperspb.String("/demo.Echo/Seen")
	}
	return wrapperspb.String("bench")
}
