package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// profileBench: where the launcher's CPU per span goes (profiled
// before cutting it). The test HTTP server (Go 1.26) under the launcher with --cpu-profile, 16
// connections for 10 s, spans and metrics to the bench's counting OTLP receiver; then
// pprof's top functions, cumulative, the launcher's own.
func profileBench(env *benchEnv) error {
	tg, recv, stop, err := countedBench()
	if err != nil {
		return err
	}
	defer stop()
	dir, err := os.MkdirTemp("", "bench-profile-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	prof := filepath.Join(dir, "launch.pprof")
	s, err := startAppUnder([]string{env.launch, "--cpu-profile", prof}, recv.Endpoint, func(addr string) []string { return []string{tg, addr} })
	if err != nil {
		return err
	}
	load(s.addr, 1, 300*time.Millisecond) // warm up
	const dur, conns = 10 * time.Second, 16
	spans0 := recv.Received()
	user0, sys0 := cpuTimes(s.launcher)
	n, _, err := load(s.addr, conns, dur)
	time.Sleep(500 * time.Millisecond)
	user, sys := cpuTimes(s.launcher)
	user, sys = user-user0, sys-sys0
	cpu, spans := user+sys, recv.Received()-spans0
	s.stop()
	if err != nil {
		return err
	}
	out, err := exec.Command("go", "tool", "pprof", "-top", "-cum", "-nodecount=40", prof).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pprof: %v\n%s", err, out)
	}
	fmt.Printf("### Launcher CPU profile (Go 1.26 net/http under the launcher, %d connections, %s)\n\n", conns, dur)
	perSpan := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(max(1, spans)) }
	fmt.Printf("%d requests, %d spans exported, launcher CPU %.2f µs a span (user %.2f, system %.2f).\n\n", n, spans, perSpan(cpu), perSpan(user), perSpan(sys))
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fmt.Println("    " + line)
	}
	fmt.Println()
	return nil
}
