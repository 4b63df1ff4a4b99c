package main

import (
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"syscall"
	"time"
)

// contention: no span lost in the kernel on a busy machine. The stall section's
// workload (the test HTTP server under the launcher at 5,000 requests/s, open loop;
// a collector that keeps up) with CPU hogs beside it: busy-loop processes at normal
// priority, more than the machine has CPUs, so that the launcher waits to be
// scheduled and its ring buffer's timer comes late. For this launcher and the
// baseline (-baseline), interleaved: requests answered, spans received, spans the
// launcher says the kernel dropped (its ring buffer full), its CPU per span; with the
// default ring buffer (1 MiB: ~7,000 of these spans, 1.4 s of them) and a 64 KiB one
// (~450, 90 ms: a late reader shows).
func contention(env *benchEnv) error {
	tg, recv, err := serverAndReceiver()
	if err != nil {
		return err
	}
	defer recv.Stop()
	const perSecond, dur, workers, hogs, rounds = 5000, 8 * time.Second, 64, 3, 2
	launchers := []struct{ name, path string }{{"this launcher", env.launch}}
	if env.baseline != "" {
		launchers = append(launchers, struct{ name, path string }{"baseline", env.baseline})
	}
	fmt.Printf("### A busy machine (%d req/s for %s, open loop, %d busy-loop processes beside; %d rounds, interleaved)\n\n", perSecond, dur, hogs, rounds)
	fmt.Println("| launcher | ring buffer | round | requests answered | spans received | received / answered | dropped in the kernel | launcher CPU per span |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|")
	for round := 1; round <= rounds; round++ {
		for _, ring := range []string{"1MiB", "64KiB"} {
			for _, l := range launchers {
				argv := []string{l.path, "--ring-buffer=" + ring}
				s, err := startAppUnder(argv, recv.Endpoint, func(addr string) []string { return []string{tg, addr} })
				if err != nil {
					return err
				}
				load(s.addr, 1, 200*time.Millisecond)
				time.Sleep(time.Second) // the warm-up's spans arrive before counting starts
				base := recv.Received()
				stop, err := startHogs(hogs)
				if err != nil {
					s.stop()
					return err
				}
				cpu0 := cpuTime(s.launcher)
				_, ok, _ := openLoop(s.addr, perSecond, dur, workers)
				stop()
				time.Sleep(2 * time.Second)
				cpu := cpuTime(s.launcher) - cpu0
				s.stop()
				got := recv.Received() - base
				kernel := saidDroppedInKernel(s.stderr.String())
				fmt.Printf("| %s | %s | %d | %d | %d | **%.4f** | %d | %.1f µs |\n", l.name, ring, round, ok, got,
					float64(got)/float64(ok), kernel, float64(cpu.Microseconds())/float64(max(got, 1)))
			}
		}
	}
	fmt.Println()
	return nil
}

// startHogs starts n busy-loop processes; stop ends them.
func startHogs(n int) (stop func(), err error) {
	var cmds []*exec.Cmd
	stop = func() {
		for _, c := range cmds {
			c.Process.Signal(syscall.SIGKILL)
			c.Wait()
		}
	}
	for range n {
		c := exec.Command("sh", "-c", "while :; do :; done")
		if err := c.Start(); err != nil {
			stop()
			return nil, err
		}
		cmds = append(cmds, c)
	}
	return stop, nil
}

// saidDroppedInKernel sums the launcher's counts of spans the kernel dropped.
func saidDroppedInKernel(stderr string) int {
	n := 0
	for _, m := range regexp.MustCompile(`(\d+) in the kernel \(its ring buffer was full`).FindAllStringSubmatch(stderr, -1) {
		v, _ := strconv.Atoi(m[1])
		n += v
	}
	return n
}
