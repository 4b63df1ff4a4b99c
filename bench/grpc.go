package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// grpcBench: the cost of tracing a gRPC service - a Go client loop (this process,
// untraced) calling unary RPCs on the grpcservice target (grpc v1.85.0, Go 1.26), with
// and without the launcher, interleaved: throughput, µs added per RPC, uprobe hits per
// RPC. "relay" calls a service whose handler makes two unary calls to a second,
// untraced one: its server span and two client spans per RPC.
func grpcBench(env *benchEnv) error {
	tgs, err := testenv.BuildGRPCErr(testenv.GRPCBuild{Version: "v1.85.0", Toolchain: "go1.26.8"})
	if err != nil {
		return err
	}
	path := tgs[0].Path
	trap, err := trapCost()
	if err != nil {
		return fmt.Errorf("trap cost: %w", err)
	}
	fmt.Printf("One uprobe hit (an empty program at a function's entry, 5 interleaved rounds of 50,000 calls) costs %.1f µs here.\n\n", float64(trap.Nanoseconds())/1e3)
	_, recv, stop, err := countedBench()
	if err != nil {
		return err
	}
	defer stop()
	downstream, err := startServerUnder("", path, recv.Endpoint)
	if err != nil {
		return err
	}
	defer downstream.stop()

	type workload struct{ name, method string }
	workloads := []workload{{"unary Say", "/demo.Echo/Say"}, {"Relay (2 client calls)", "/demo.Echo/Relay"}}
	const rounds, dur, conns = 3, 4 * time.Second, 8
	type result struct {
		calls    int
		latency1 time.Duration
		hits     uint64
		bpfTime  time.Duration // the programs' run time, without the trap
	}
	for _, w := range workloads {
		results := [2][]result{}
		for r := 0; r < rounds; r++ {
			for i, launched := range []bool{false, true} {
				launcher := ""
				if launched {
					launcher = env.launch
				}
				srv, err := startAppUnder(launcher, recv.Endpoint, func(addr string) []string { return []string{path, addr, downstream.addr} })
				if err != nil {
					return err
				}
				res, err := func() (result, error) {
					var res result
					conn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
					if err != nil {
						return res, err
					}
					defer conn.Close()
					if _, _, err = callLoop(conn, w.method, 1, 300*time.Millisecond); err != nil {
						return res, err
					}
					if _, res.latency1, err = callLoop(conn, w.method, 1, dur/2); err != nil {
						return res, err
					}
					s0, st0 := probeStats("server_")
					c0, ct0 := probeStats("client_")
					res.calls, _, err = callLoop(conn, w.method, conns, dur)
					s1, st1 := probeStats("server_")
					c1, ct1 := probeStats("client_")
					res.hits, res.bpfTime = s1-s0+c1-c0, st1-st0+ct1-ct0
					return res, err
				}()
				srv.stop()
				if err != nil {
					return fmt.Errorf("%s: %w", w.name, err)
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
			return mean(rs, func(r result) float64 { return float64(r.calls) / dur.Seconds() })
		}
		lat := func(rs []result) float64 {
			return mean(rs, func(r result) float64 { return float64(r.latency1.Nanoseconds()) / 1e3 })
		}
		hits := mean(results[1], func(r result) float64 { return float64(r.hits) / float64(max(1, r.calls)) })
		bpfTime := mean(results[1], func(r result) float64 { return float64(r.bpfTime.Nanoseconds()) / 1e3 / float64(max(1, r.calls)) })
		fmt.Printf("### gRPC %s (grpc v1.85.0, Go 1.26; client loop untraced; %d rounds of %s, interleaved)\n\n", w.name, rounds, dur)
		fmt.Println("| | throughput, 8 concurrent calls | | mean latency, 1 at a time | added per RPC | uprobe hits per RPC | BPF program time per RPC | target: hits × hit cost + 10 µs |")
		fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|")
		fmt.Printf("| without launcher | %.0f RPC/s | 1.00× | %.0f µs | | | | |\n", rps(results[0]), lat(results[0]))
		fmt.Printf("| under the launcher | %.0f RPC/s | %.2f× | %.0f µs | +%.0f µs | %.2f | %.1f µs | ≤ %.0f µs |\n\n",
			rps(results[1]), rps(results[1])/rps(results[0]), lat(results[1]), lat(results[1])-lat(results[0]), hits, bpfTime,
			hits*float64(trap.Nanoseconds())/1e3+10)
	}
	return nil
}

// callLoop makes unary calls of method over conn from conns goroutines for d: the
// number completed and their mean latency.
func callLoop(conn *grpc.ClientConn, method string, conns int, d time.Duration) (int, time.Duration, error) {
	var n, total atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in, out := wrapperspb.String("bench"), new(wrapperspb.StringValue)
			for time.Now().Before(deadline) {
				begin := time.Now()
				if err := conn.Invoke(context.Background(), method, in, out); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				total.Add(int64(time.Since(begin)))
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, 0, err
	}
	return int(n.Load()), time.Duration(total.Load() / max(1, n.Load())), nil
}
