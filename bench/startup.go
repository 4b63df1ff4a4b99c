package main

import (
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// startup: wall time of a program started directly and through the launcher (with
// instrumentation unavailable, as in this build), and the launcher's memory.
func startup(env *benchEnv) error {
	hello, err := testenv.BuildProgram("./e2e/testdata/hello", "CGO_ENABLED=0")
	if err != nil {
		return err
	}
	type pair struct{ name, direct, launched string }
	// "launch hello" analyses the Go program and finds nothing to trace (it serves no
	// HTTP); "off" is the launcher with tracing disabled, its instrumentation a no-op.
	off := "OTEL_SDK_DISABLED=true"
	cases := map[string][]string{
		"true":               {"/bin/true"},
		"launch true":        {env.launch, "--", "/bin/true"},
		"launch true, off":   {"/usr/bin/env", off, env.launch, "--", "/bin/true"},
		"hello":              {hello},
		"launch hello":       {env.launch, "--", hello},
		"launch hello, off":  {"/usr/bin/env", off, env.launch, "--", hello},
		"launch --help":      {env.launch, "--help"},
		"env true (for off)": {"/usr/bin/env", off, "/bin/true"},
		"env hello":          {"/usr/bin/env", off, hello},
	}
	pairs := []pair{
		{"/bin/true", "true", "launch true"},
		{"/bin/true, tracing off", "env true (for off)", "launch true, off"},
		{"Go hello world (analysed: nothing to trace)", "hello", "launch hello"},
		{"Go hello world, tracing off", "env hello", "launch hello, off"},
	}

	wall := map[string][]time.Duration{}
	order := make([]string, 0, len(cases))
	for name := range cases {
		order = append(order, name)
	}
	for r := 0; r < env.rounds; r++ {
		rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, name := range order {
			d, err := timeRun(cases[name])
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			wall[name] = append(wall[name], d)
		}
	}

	fmt.Printf("### Start-up (%d interleaved rounds)\n\n", env.rounds)
	fmt.Println("| program | direct, median | via launch, median | added | ratio | direct p90 | via launch p90 |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|")
	for _, p := range pairs {
		d, l := median(wall[p.direct]), median(wall[p.launched])
		fmt.Printf("| %s | %s | %s | **%s** | %.2f× | %s | %s |\n", p.name, ms(d), ms(l), ms(l-d),
			float64(l)/float64(d), ms(pct(wall[p.direct], 90)), ms(pct(wall[p.launched], 90)))
	}
	fmt.Printf("\n`launch --help` alone (the launcher's own process start): %s median.\n", ms(median(wall["launch --help"])))

	steady, err := steadyRSS(env.launch)
	if err != nil {
		return err
	}
	var peaks []int64
	for i := 0; i < 20; i++ {
		kib, err := peakRSS(nil, env.launch, "--", "/bin/true")
		if err != nil {
			return err
		}
		peaks = append(peaks, kib)
	}
	fmt.Printf("\nLauncher memory: peak RSS %d KiB over a short run (median of 20 `launch -- /bin/true`), "+
		"%d KiB resident while supervising a running app.\n\n", medianInt(peaks), steady)
	return nil
}

// timeRun runs argv with no I/O and returns its wall time.
func timeRun(argv []string) (time.Duration, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	begin := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, err
	}
	return time.Since(begin), nil
}

// peakRSS runs argv under /usr/bin/time and returns its peak RSS (KiB). A child's own
// rusage would not do: its peak counts the bench process it was forked from.
func peakRSS(env []string, argv ...string) (int64, error) {
	cmd := exec.Command("/usr/bin/time", append([]string{"-f", "%M"}, argv...)...)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("/usr/bin/time %s: %v: %s", strings.Join(argv, " "), err, stderr.String())
	}
	lines := strings.Fields(stderr.String())
	if len(lines) == 0 {
		return 0, fmt.Errorf("/usr/bin/time printed nothing")
	}
	return strconv.ParseInt(lines[len(lines)-1], 10, 64)
}

// steadyRSS is the launcher's resident memory while the app runs.
func steadyRSS(launch string) (int64, error) {
	cmd := exec.Command(launch, "--", "/bin/sleep", "2")
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer cmd.Wait()
	time.Sleep(500 * time.Millisecond)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS")
}

func median(d []time.Duration) time.Duration { return pct(d, 50) }

// meanOf is the mean of f over rounds' results.
func meanOf[T any](rounds []T, f func(T) float64) float64 {
	var s float64
	for _, r := range rounds {
		s += f(r)
	}
	return s / float64(len(rounds))
}

// medianMicros is the median, in µs, of the latencies of every round.
func medianMicros[T any](rounds []T, latencies func(T) []time.Duration) float64 {
	var all []time.Duration
	for _, r := range rounds {
		all = append(all, latencies(r)...)
	}
	return float64(median(all).Nanoseconds()) / 1e3
}

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

func medianInt(v []int64) int64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }
