package main

import (
	"bytes"
	"fmt"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// exitCost: a one-call command (one HTTP GET: one client span) run directly and under
// the launcher, with a collector up, in interleaved rounds: its wall time, and the time
// from the app's last instruction (it prints the wall clock as it returns from main) to
// the exit of the process the bench waits for - the launcher's, which exports the span
// in between. Each launched run's span must arrive: an exit that skips the flush is
// not a fast exit.
func exitCost(env *benchEnv) error {
	onecall, err := testenv.BuildProgram("./e2e/testdata/onecall", "CGO_ENABLED=0")
	if err != nil {
		return err
	}
	recv, err := testenv.NewReceiver()
	if err != nil {
		return err
	}
	defer recv.Stop()
	recv.CountOnly()
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer target.Close()

	type exitCase struct {
		name     string
		launcher string // "": the app alone
	}
	cases := []exitCase{{"direct", ""}, {"**launch**", env.launch}}
	if env.baseline != "" {
		cases = append(cases, exitCase{"baseline launch", env.baseline})
	}
	rounds := min(env.rounds, 40)
	wall := map[string][]time.Duration{}
	tail := map[string][]time.Duration{}
	for r := 0; r < rounds; r++ {
		rand.Shuffle(len(cases), func(i, j int) { cases[i], cases[j] = cases[j], cases[i] })
		for _, c := range cases {
			before := recv.Received()
			w, t, err := runOneCall(c.launcher, onecall, target.URL, recv.Endpoint)
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			if got := recv.Received() - before; c.launcher != "" && got != 1 {
				return fmt.Errorf("%s: %d spans received by the launcher's exit, want 1", c.name, got)
			}
			wall[c.name] = append(wall[c.name], w)
			tail[c.name] = append(tail[c.name], t)
		}
	}
	fmt.Printf("### Exit: a one-call command (%d interleaved rounds, collector up)\n\n", rounds)
	fmt.Println("| started | wall, median | wall p90 | app's exit to the launcher's, median | p90 |")
	fmt.Println("|---|---:|---:|---:|---:|")
	for _, name := range []string{"direct", "**launch**", "baseline launch"} {
		if len(wall[name]) == 0 {
			continue
		}
		fmt.Printf("| %s | %s | %s | %s | %s |\n", name, ms(median(wall[name])), ms(pct(wall[name], 90)),
			ms(median(tail[name])), ms(pct(tail[name], 90)))
	}
	fmt.Println()
	return nil
}

// runOneCall runs the one-call command, under launcher unless "", and returns its wall
// time and the time from the app's printed exit to the end of the wait.
func runOneCall(launcher, onecall, url, otlp string) (wall, tail time.Duration, err error) {
	argv := []string{onecall, url}
	if launcher != "" {
		argv = append([]string{launcher, "--"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT="+otlp)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	begin := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, 0, fmt.Errorf("%v: %s", err, stderr.String())
	}
	end := time.Now()
	ns, err := strconv.ParseInt(strings.TrimSpace(stdout.String()), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("the app printed %q: %v", stdout.String(), err)
	}
	return end.Sub(begin), end.Sub(time.Unix(0, ns)), nil
}
