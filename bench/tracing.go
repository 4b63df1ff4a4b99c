package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// server is the HTTP server under test, started directly or under the launcher.
type server struct {
	cmd      *exec.Cmd
	addr     string
	launcher int                 // the launcher's PID, 0 when direct
	stderr   *testenv.SyncBuffer // what it said, also passed on to the bench's stderr
}

func startServer(env *benchEnv, path string, launched bool, otlp string, extraEnv ...string) (*server, error) {
	launcher := ""
	if launched {
		launcher = env.launch
	}
	return startServerUnder(launcher, path, otlp, extraEnv...)
}

// startServerUnder starts the server under the launcher binary given, or directly ("").
func startServerUnder(launcher, path string, otlp string, extraEnv ...string) (*server, error) {
	return startAppUnder(launcherArgv(launcher), otlp, func(addr string) []string { return []string{path, addr} }, extraEnv...)
}

// launcherArgv is the command line of the launcher binary given without flags, nil
// for "" (no launcher).
func launcherArgv(launcher string) []string {
	if launcher == "" {
		return nil
	}
	return []string{launcher}
}

// startAppUnder starts the command line argv gives for a free address, under the
// launcher command line given (its binary and flags) or directly (nil), and waits for
// the address to accept.
func startAppUnder(launcher []string, otlp string, argvFor func(addr string) []string, extraEnv ...string) (*server, error) {
	addr := freePort()
	argv := argvFor(addr)
	path := argv[0]
	launched := launcher != nil
	if launched {
		argv = append(append(slices.Clone(launcher), "--"), argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT="+otlp, "OTEL_BSP_SCHEDULE_DELAY=200")
	cmd.Env = append(cmd.Env, extraEnv...)
	stderr := &testenv.SyncBuffer{}
	cmd.Stderr = io.MultiWriter(os.Stderr, stderr)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, addr: addr, stderr: stderr}
	if launched {
		s.launcher = cmd.Process.Pid
	}
	for i := 0; i < 2000; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return s, nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.stop()
	return nil, fmt.Errorf("%s never listened", path)
}

func (s *server) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// load sends requests over conns keep-alive connections for d; it returns the number
// completed and their mean latency. Connection c requests /items/c.
func load(addr string, conns int, d time.Duration) (int, time.Duration, error) {
	return loadPath(addr, "", conns, d)
}

// loadPath is load requesting path (when not "") on every connection.
func loadPath(addr, path string, conns int, d time.Duration) (int, time.Duration, error) {
	return loadPathOver(addr, path, conns, d, http1Transport)
}

// http1Transport: one HTTP/1 connection per client, answers as sent.
func http1Transport() http.RoundTripper {
	return &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
}

// h2cTransport speaks plaintext HTTP/2 (prior knowledge): one connection per client.
func h2cTransport() http.RoundTripper {
	t := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true, Protocols: new(http.Protocols)}
	t.Protocols.SetUnencryptedHTTP2(true)
	return t
}

// loadPathOver is loadPath with clients over the transports newTransport makes.
func loadPathOver(addr, path string, conns int, d time.Duration, newTransport func() http.RoundTripper) (int, time.Duration, error) {
	return loadWith(addr, path, conns, d, newTransport, nil)
}

// loadWith is loadPathOver with headers: header(i) gives the i-th request's (nil: none).
func loadWith(addr, path string, conns int, d time.Duration, newTransport func() http.RoundTripper, header func(i int64) http.Header) (int, time.Duration, error) {
	var n, total, seq atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			client := &http.Client{Transport: newTransport()}
			url := "http://" + addr + "/items/" + strconv.Itoa(c)
			if path != "" {
				url = "http://" + addr + path
			}
			for time.Now().Before(deadline) {
				begin := time.Now()
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				if header != nil {
					req.Header = header(seq.Add(1))
				}
				resp, err := client.Do(req)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					firstErr.CompareAndSwap(nil, fmt.Errorf("%s: %s", url, resp.Status))
					return
				}
				total.Add(int64(time.Since(begin)))
				n.Add(1)
			}
		}(c)
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, 0, err
	}
	return int(n.Load()), time.Duration(total.Load() / max(1, n.Load())), nil
}

// cpuTime is the process's user+system CPU time.
func cpuTime(pid int) time.Duration {
	user, system := cpuTimes(pid)
	return user + system
}

// cpuTimes is the process's user and system CPU time, all its threads'.
func cpuTimes(pid int) (user, system time.Duration) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut) * time.Second / 100, time.Duration(st) * time.Second / 100 // USER_HZ
}

func rssKiB(pid int) int64 { return statusKiB(pid, "VmRSS:") }

// sampleRSS samples the process's RSS every 50 ms until the returned function is
// called; that returns the highest.
func sampleRSS(pid int) func() int64 {
	var peak atomic.Int64
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			peak.Store(max(peak.Load(), rssKiB(pid)))
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 {
		close(done)
		return max(peak.Load(), rssKiB(pid))
	}
}

// peakRSSKiB is the process's peak RSS so far.
func peakRSSKiB(pid int) int64 { return statusKiB(pid, "VmHWM:") }

func statusKiB(pid int, field string) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}

// probeRuns sums the run counts of the loaded BPF programs whose names start with
// prefix (kernel.bpf_stats_enabled must be on).
func probeRuns(prefix string) uint64 {
	runs, _ := probeStats(prefix)
	return runs
}

// probeStats sums the run counts and run times of the loaded BPF programs whose names
// start with prefix.
func probeStats(prefix string) (runs uint64, runtime time.Duration) {
	eachProgram(prefix, func(_ ebpf.ProgramID, st *ebpf.ProgramStats) {
		runs += st.RunCount
		runtime += st.Runtime
	})
	return runs, runtime
}

// eachProgram calls f with the statistics of each loaded BPF program whose name starts
// with prefix.
func eachProgram(prefix string, f func(ebpf.ProgramID, *ebpf.ProgramStats)) {
	for id := ebpf.ProgramID(0); ; {
		next, err := ebpf.ProgramGetNextID(id)
		if err != nil {
			return
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue
		}
		if info, err := p.Info(); err == nil && strings.HasPrefix(info.Name, prefix) {
			if st, err := p.Stats(); err == nil {
				f(id, st)
			}
		}
		p.Close()
	}
}

// tracing: the cost of tracing an HTTP server - uprobe hits per request, throughput and
// latency with and without the launcher, the launcher's CPU per span and memory. With
// -baseline, another launcher binary is measured in the same rounds, interleaved: the
// way to tell a change's cost from this machine's drift.
func tracing(env *benchEnv) error {
	tg, recv, stop, err := countedBench()
	if err != nil {
		return err
	}
	defer stop()
	return tracingOf(env, tg, recv, "Go 1.26 net/http")
}

// tracingHTTP: tracing, for the test server built without database/sql (-tags nosql):
// an app whose only client probe is net/http's, whose servers register their spans by
// goroutine only since the goroutine fallback (the client's goroutine lookup; database/sql's already
// asked for it).
func tracingHTTP(env *benchEnv) error {
	tgs, err := testenv.BuildTargetsErr("httpserver", []string{"go1.26.8"}, []testenv.Variant{{Name: "nosql", Flags: []string{"-tags=nosql"}}})
	if err != nil {
		return err
	}
	_, recv, stop, err := countedBench()
	if err != nil {
		return err
	}
	defer stop()
	return tracingOf(env, tgs[0].Path, recv, "Go 1.26 net/http, server and net/http client probes only")
}

// tracingOf is tracing for the test server at tg.
func tracingOf(env *benchEnv, tg string, recv *testenv.Receiver, what string) error {
	rounds := 3
	cases := []tracingCase{{name: "without launcher"}, {name: "with launcher", launcher: env.launch}}
	if env.baseline != "" {
		rounds = 6 // two launchers to tell apart: more rounds
		cases = append(cases, tracingCase{name: "baseline launcher", launcher: env.baseline})
	}
	results, err := tracingRounds(tg, recv, cases, rounds)
	if err != nil {
		return err
	}
	rps := func(rs []tracingResult) float64 { return meanOf(rs, tracingResult.rps) }
	lat := func(rs []tracingResult) float64 {
		return meanOf(rs, func(r tracingResult) float64 { return float64(r.latency1.Microseconds()) })
	}
	direct := results[0]
	fmt.Printf("### Tracing an HTTP server (%s, %d rounds of %s, interleaved)\n\n", what, rounds, tracingDur)
	header, rule := "| measure | without launcher |", "|---|---:|"
	for _, c := range cases[1:] {
		header += " " + c.name + " | |"
		rule += "---:|---|"
	}
	fmt.Println(header)
	fmt.Println(rule)
	row := func(what, bare string, cell func(rs []tracingResult) (string, string)) {
		line := "| " + what + " | " + bare + " |"
		for _, rs := range results[1:] {
			v, note := cell(rs)
			line += " " + v + " | " + note + " |"
		}
		fmt.Println(line)
	}
	row(fmt.Sprintf("throughput, %d connections", tracingConns), fmt.Sprintf("%.0f req/s", rps(direct)), func(rs []tracingResult) (string, string) {
		return fmt.Sprintf("%.0f req/s", rps(rs)), fmt.Sprintf("**%.2f×**", rps(rs)/rps(direct))
	})
	row("mean latency, 1 connection", fmt.Sprintf("%.0f µs", lat(direct)), func(rs []tracingResult) (string, string) {
		return fmt.Sprintf("%.0f µs", lat(rs)), fmt.Sprintf("**+%.0f µs/request**", lat(rs)-lat(direct))
	})
	row("uprobe hits per request", "", func(rs []tracingResult) (string, string) {
		return fmt.Sprintf("%.2f", meanOf(rs, func(r tracingResult) float64 { return float64(r.hits) / float64(r.reqs) })), "kernel run counts / requests"
	})
	row("BPF program time per request", "", func(rs []tracingResult) (string, string) {
		return fmt.Sprintf("%.2f µs", meanOf(rs, func(r tracingResult) float64 { return float64(r.bpfTime.Nanoseconds()) / 1000 / float64(r.reqs) })), "kernel run times / requests (the trap itself is not in it)"
	})
	row("spans per request", "", func(rs []tracingResult) (string, string) {
		return fmt.Sprintf("%.3f", meanOf(rs, func(r tracingResult) float64 { return float64(r.spans) / float64(r.reqs) })), "received by the OTLP receiver"
	})
	row("launcher CPU per span", "", func(rs []tracingResult) (string, string) {
		return fmt.Sprintf("%.1f µs", meanOf(rs, tracingResult.cpuPerSpan)), fmt.Sprintf("user+system at %.0f req/s", rps(rs))
	})
	row("launcher RSS, peak under that load", "", func(rs []tracingResult) (string, string) {
		return fmt.Sprintf("%.1f MiB", peakRSSMiB(rs)), "VmRSS sampled every 50 ms, highest of the rounds"
	})
	fmt.Println()
	return nil
}

// tracingCase is one way the tracing rounds run the test server: under the launcher
// binary given ("" for none), with more environment.
type tracingCase struct {
	name, launcher string
	env            []string
}

// tracingResult is one round of one case.
type tracingResult struct {
	reqs               int
	latency1           time.Duration // mean at one connection
	launcherCPU        time.Duration
	bpfTime            time.Duration // the probes' programs, in the kernel
	hits, spans, rssKB int64
}

func (r tracingResult) rps() float64 { return float64(r.reqs) / tracingDur.Seconds() }

// cpuPerSpan is the launcher's user+system CPU per span received, in µs.
func (r tracingResult) cpuPerSpan() float64 {
	return float64(r.launcherCPU.Microseconds()) / float64(max(1, r.spans))
}

// peakRSSMiB is the launcher's highest RSS of the rounds.
func peakRSSMiB(rs []tracingResult) float64 {
	var peak int64
	for _, r := range rs {
		peak = max(peak, r.rssKB)
	}
	return float64(peak) / 1024
}

// The tracing rounds' load: tracingConns keep-alive connections for tracingDur.
const tracingDur, tracingConns = 5 * time.Second, 16

// tracingRounds runs the test server at tg in each case, the cases interleaved round by
// round: requests at one connection (latency), then tracingConns connections for
// tracingDur, over which the launcher's CPU, RSS, uprobe hits and BPF time and the spans
// the receiver gets are counted. results[case][round].
func tracingRounds(tg string, recv *testenv.Receiver, cases []tracingCase, rounds int) ([][]tracingResult, error) {
	results := make([][]tracingResult, len(cases))
	for r := 0; r < rounds; r++ {
		for i, c := range cases {
			res, err := tracingRound(tg, recv, c)
			if err != nil {
				return nil, err
			}
			results[i] = append(results[i], res)
		}
	}
	return results, nil
}

func tracingRound(tg string, recv *testenv.Receiver, c tracingCase) (tracingResult, error) {
	var res tracingResult
	launched := c.launcher != ""
	s, err := startServerUnder(c.launcher, tg, recv.Endpoint, c.env...)
	if err != nil {
		return res, err
	}
	defer s.stop()
	load(s.addr, 1, 300*time.Millisecond) // warm up
	if _, res.latency1, err = load(s.addr, 1, tracingDur/2); err != nil {
		return res, err
	}
	if !launched {
		res.reqs, _, err = load(s.addr, tracingConns, tracingDur)
		return res, err
	}
	time.Sleep(time.Second) // the latency run's spans arrive before counting starts
	// The hold's program too: it must not be hit once the probes are attached.
	runs0, bpf0 := ownStats([]int{s.launcher}, "server_", "hold")
	spans0 := recv.Received()
	cpu0 := cpuTime(s.launcher)
	stopRSS := sampleRSS(s.launcher)
	if res.reqs, _, err = load(s.addr, tracingConns, tracingDur); err != nil {
		stopRSS()
		return res, err
	}
	res.rssKB = stopRSS()
	time.Sleep(500 * time.Millisecond) // let the last batch export
	res.launcherCPU = cpuTime(s.launcher) - cpu0
	runs, bpf := ownStats([]int{s.launcher}, "server_", "hold")
	res.hits, res.bpfTime = int64(runs-runs0), bpf-bpf0
	res.spans = int64(recv.Received() - spans0)
	return res, nil
}

// countedBench is serverAndReceiver with the kernel counting BPF program runs (for
// uprobe hits per request); stop undoes both.
func countedBench() (string, *testenv.Receiver, func(), error) {
	tg, recv, err := serverAndReceiver()
	if err != nil {
		return "", nil, nil, err
	}
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		recv.Stop()
		return "", nil, nil, fmt.Errorf("enable BPF run counts: %w", err)
	}
	return tg, recv, func() { stats.Close(); recv.Stop() }, nil
}

// serverAndReceiver builds the test HTTP server (Go 1.26) and starts an OTLP receiver
// that counts spans.
func serverAndReceiver() (string, *testenv.Receiver, error) {
	tgs, err := testenv.BuildTargetsErr("httpserver", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})
	if err != nil {
		return "", nil, err
	}
	recv, err := testenv.NewReceiver()
	if err != nil {
		return "", nil, err
	}
	recv.CountOnly()
	return tgs[0].Path, recv, nil
}

// rate: spans received for requests sent at a fixed rate (open loop) for a while.
func rate(env *benchEnv) error {
	tg, recv, err := serverAndReceiver()
	if err != nil {
		return err
	}
	defer recv.Stop()
	const perSecond, dur, workers = 5000, 30 * time.Second, 64
	s, err := startServer(env, tg, true, recv.Endpoint)
	if err != nil {
		return err
	}
	load(s.addr, 1, 200*time.Millisecond)
	time.Sleep(time.Second) // the warm-up's spans arrive before counting starts
	base := recv.Received()
	sent, ok, late := openLoop(s.addr, perSecond, dur, workers)
	s.stop() // flushes
	time.Sleep(500 * time.Millisecond)
	got := recv.Received() - base
	fmt.Printf("### Sustained rate (%d req/s for %s, open loop, %d connections)\n\n", perSecond, dur, workers)
	fmt.Println("| requests sent | answered 200 | spans received | received / sent | generator ticks missed |")
	fmt.Println("|---:|---:|---:|---:|---:|")
	fmt.Printf("| %d | %d | %d | **%.4f** | %d |\n\n", sent, ok, got, float64(got)/float64(sent), late)
	return nil
}

// openLoop sends GET /items/W to addr at perSecond requests a second for dur, on
// schedule whatever the answers take (up to workers in flight); it returns the
// requests sent, those answered 200, and the ticks missed because every worker was
// busy (the generator, not the server, fell behind).
func openLoop(addr string, perSecond int, dur time.Duration, workers int) (sent, ok, late int64) {
	var nSent, nOK, nLate atomic.Int64
	ticks := make(chan struct{}, perSecond)
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	go func() { // one tick per request, on schedule
		interval := time.Second / time.Duration(perSecond)
		next := time.Now()
		for ctx.Err() == nil {
			next = next.Add(interval)
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			select {
			case ticks <- struct{}{}:
			default:
				nLate.Add(1)
			}
		}
		close(ticks)
	}()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			for range ticks {
				nSent.Add(1)
				resp, err := client.Get("http://" + addr + "/items/" + strconv.Itoa(w))
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						nOK.Add(1)
					}
				}
			}
		}(w)
	}
	wg.Wait()
	return nSent.Load(), nOK.Load(), nLate.Load()
}

// gate: how long the app waits at the start gate - time from exec to the app's main,
// with and without the launcher, for ~30 MB Go HTTP servers with DWARF: one that only
// serves, one that also makes calls (client probe and outgoing context too), and that
// one built -s -w (offsets from the embedded database).
func gate(env *benchEnv) error {
	const runs = 20
	fmt.Printf("### Start gate (30 MB Go HTTP servers, %d runs each, interleaved)\n\n", runs)
	fmt.Println("| exec to the app's main | direct, median | under launch, median | under launch, p90 | **gate delay** |")
	fmt.Println("|---|---:|---:|---:|---:|")
	for _, c := range []struct{ client, stripped bool }{{false, false}, {true, false}, {true, true}} {
		bin, err := generatedBinary(40, 400, 60, c.client)
		if err != nil {
			return err
		}
		path := bin.plain
		if c.stripped {
			path = bin.stripped
		}
		var direct, launched []time.Duration
		for i := 0; i < runs; i++ {
			for _, l := range []bool{false, true} {
				d, err := timeToMain(env, path, l)
				if err != nil {
					return err
				}
				if l {
					launched = append(launched, d)
				} else {
					direct = append(direct, d)
				}
			}
		}
		st, _ := os.Stat(path)
		what := fmt.Sprintf("server, %.0f MB: server probe", float64(st.Size())/1e6)
		switch {
		case c.stripped:
			what = fmt.Sprintf("the same, -s -w, %.0f MB: offsets from the database", float64(st.Size())/1e6)
		case c.client:
			what = fmt.Sprintf("server and client, %.0f MB: both probes, outgoing context", float64(st.Size())/1e6)
		}
		fmt.Printf("| %s | %s | %s | %s | **%s** |\n", what, ms(median(direct)), ms(median(launched)), ms(pct(launched, 90)), ms(median(launched)-median(direct)))
	}
	fmt.Println()
	return nil
}

// timeToMain runs the generated program with BENCH_MAIN=1: it prints CLOCK_MONOTONIC at
// main and exits.
func timeToMain(env *benchEnv, path string, launched bool) (time.Duration, error) {
	argv := []string{path}
	if launched { // instrumented or nothing: a fail-open start would flatter the gate
		argv = []string{env.launch, "--require-instrumentation", "--", path}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "BENCH_MAIN=1", "OTEL_TRACES_EXPORTER=none")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	begin := ts.Nano()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	cmd.Wait()
	mainAt, err := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(line, "MAIN ")), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s printed %q", path, line)
	}
	return time.Duration(mainAt - begin), nil
}
