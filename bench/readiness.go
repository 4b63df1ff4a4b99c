package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// readiness: what a user of the app sees of the start gate - wall time from fork/exec
// to the first TCP connect the app's port accepts, and to the answer to its first
// request - started directly, under the launcher (tracing on, spans to a real OTLP
// receiver: the app's start overlapping the probes' loading, the default; and with
// --gate, held until they are attached) and under the launcher with tracing off
// (OTEL_SDK_DISABLED=true), for the gate section's 30 MB generated server and the
// 9 MB test server (which also has client routes: both probes and the socket programs).
// A traced run's first request must reach the receiver as a span by the launcher's
// exit: a start that failed open cannot pass for a fast one.
func readiness(env *benchEnv) error {
	rounds := min(max(env.rounds, 10), 40)
	big, err := readinessServer()
	if err != nil {
		return err
	}
	target, recv, err := serverAndReceiver()
	if err != nil {
		return err
	}
	defer recv.Stop()

	type binary struct{ name, path string }
	bins := []binary{{"", big}, {"", target}}
	for i, b := range bins {
		st, err := os.Stat(b.path)
		if err != nil {
			return err
		}
		what := "generated server (server probe)"
		if i == 1 {
			what = "httpserver target (server and client probes, socket programs)"
		}
		bins[i].name = fmt.Sprintf("%s, %.0f MB", what, float64(st.Size())/1e6)
	}
	type kase struct {
		name   string
		launch []string // launcher and its flags; nil: bare
		env    []string
	}
	otlp := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + recv.Endpoint, "OTEL_BSP_SCHEDULE_DELAY=200"}
	off := append(otlp[:len(otlp):len(otlp)], "OTEL_SDK_DISABLED=true")
	cases := []kase{
		{"bare", nil, otlp},
		{"launch", []string{env.launch, "--"}, otlp},
		{"launch --gate", []string{env.launch, "--gate", "--"}, otlp},
		{"launch, OTEL_SDK_DISABLED=true", []string{env.launch, "--"}, off},
	}
	if env.baseline != "" { // another launcher in the same rounds (-baseline)
		cases = append(cases,
			kase{"baseline launch", []string{env.baseline, "--"}, otlp},
			kase{"baseline launch, OTEL_SDK_DISABLED=true", []string{env.baseline, "--"}, off})
	}
	type key struct{ bin, kase int }
	wall := map[key][]time.Duration{}
	answer := map[key][]time.Duration{}
	var order []key
	for b := range bins {
		for c := range cases {
			order = append(order, key{b, c})
		}
	}
	for r := 0; r < rounds; r++ {
		rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, k := range order {
			c := cases[k.kase]
			before := recv.Received()
			d, a, err := timeToAnswer(append(append([]string{}, c.launch...), bins[k.bin].path), c.env)
			if err != nil {
				return fmt.Errorf("%s, %s: %w", bins[k.bin].name, c.name, err)
			}
			if traced := c.launch != nil && !slices.Contains(c.env, "OTEL_SDK_DISABLED=true"); traced && recv.Received() == before {
				return fmt.Errorf("%s, %s: no span for the first request by the launcher's exit: tracing failed open", bins[k.bin].name, c.name)
			}
			wall[k] = append(wall[k], d)
			answer[k] = append(answer[k], a)
		}
	}

	fmt.Printf("### Readiness: exec to the app's port accepting, and to its first answer (%d interleaved rounds, connect polled every 0.2 ms)\n\n", rounds)
	fmt.Println("| app | started | accepting, median | p90 | added vs bare (median) | first answer, median | added vs bare |")
	fmt.Println("|---|---|---:|---:|---:|---:|---:|")
	for b := range bins {
		bare, bareAnswer := median(wall[key{b, 0}]), median(answer[key{b, 0}])
		for c := range cases {
			w, a := wall[key{b, c}], answer[key{b, c}]
			added, addedAnswer := "-", "-"
			if c > 0 {
				added = "**+" + ms(median(w)-bare) + "**"
				addedAnswer = "+" + ms(median(a)-bareAnswer)
			}
			fmt.Printf("| %s | %s | %s | %s | %s | %s | %s |\n", bins[b].name, cases[c].name, ms(median(w)), ms(pct(w, 90)), added, ms(median(a)), addedAnswer)
		}
	}
	fmt.Println()
	return nil
}

// timeToAnswer starts argv with ADDR appended (a free loopback port) and returns the
// time from just before its fork to the first connect to ADDR that succeeds, and to
// the answer to a GET / sent then (any status); then it stops the process (SIGTERM;
// the launcher relays it) and waits for it.
func timeToAnswer(argv, env []string) (accept, answer time.Duration, err error) {
	addr := freePort()
	cmd := exec.Command(argv[0], append(argv[1:], addr)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	sa, err := sockaddr(addr)
	if err != nil {
		return 0, 0, err
	}
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	exited := make(chan struct{})
	go func() {
		// WNOWAIT: only see that it ended; cmd.Wait reaps it.
		var info unix.Siginfo
		for unix.Waitid(unix.P_PID, cmd.Process.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil) == unix.EINTR {
		}
		close(exited)
	}()
	pause := unix.NsecToTimespec((200 * time.Microsecond).Nanoseconds())
	for deadline := begin.Add(10 * time.Second); time.Now().Before(deadline); {
		if connects(sa) {
			accept = time.Since(begin)
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
			res, err := client.Get("http://" + addr + "/")
			if err != nil {
				return 0, 0, fmt.Errorf("%s: the first request: %w", strings.Join(argv, " "), err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			return accept, time.Since(begin), nil
		}
		select {
		case <-exited:
			return 0, 0, fmt.Errorf("%s exited before its port accepted", strings.Join(argv, " "))
		default:
		}
		unix.Nanosleep(&pause, nil)
	}
	return 0, 0, fmt.Errorf("%s: %s did not accept within 10 s", strings.Join(argv, " "), addr)
}

// connects tries one blocking TCP connect (loopback: accepted or refused at once).
func connects(sa *unix.SockaddrInet4) bool {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return unix.Connect(fd, sa) == nil
}

func sockaddr(addr string) (*unix.SockaddrInet4, error) {
	var a, b, c, d, port int
	if _, err := fmt.Sscanf(strings.Replace(addr, ":", " ", 1), "%d.%d.%d.%d %d", &a, &b, &c, &d, &port); err != nil {
		return nil, fmt.Errorf("address %q: %v", addr, err)
	}
	return &unix.SockaddrInet4{Port: port, Addr: [4]byte{byte(a), byte(b), byte(c), byte(d)}}, nil
}

// readinessServer is the gate section's 30 MB generated server (server probe only),
// built to listen on the address its first argument gives: the same packages (from
// the build cache) with main.go replaced through an overlay; built once, beside it.
func readinessServer() (string, error) {
	g, err := generatedBinary(40, 400, 60, false)
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(g.plain)
	out := filepath.Join(dir, "server-listen-arg-v2")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	src, err := os.ReadFile(filepath.Join(dir, "main.go"))
	if err != nil {
		return "", err
	}
	// main calls every package's F0 (so that the linker keeps them): with a negative
	// argument each returns at once, instead of the ~0.6 s of CPU a thousand-deep
	// recursion per package costs, which is no start-up a server has.
	main := string(src)
	for _, r := range [][2]string{
		{`http.ListenAndServe("127.0.0.1:0", nil)`, `http.ListenAndServe(os.Args[1], nil)`},
		{`.F0(len(os.Args), "x")`, `.F0(-len(os.Args), "x")`},
	} {
		if !strings.Contains(main, r[0]) {
			return "", fmt.Errorf("%s/main.go: no %s to replace", dir, r[0])
		}
		main = strings.ReplaceAll(main, r[0], r[1])
	}
	repl := filepath.Join(dir, "main-listen-arg.go.txt")
	if err := os.WriteFile(repl, []byte(main), 0o644); err != nil {
		return "", err
	}
	overlay, _ := json.Marshal(map[string]map[string]string{"Replace": {filepath.Join(dir, "main.go"): repl}})
	ov := filepath.Join(dir, "overlay-listen-arg.json")
	if err := os.WriteFile(ov, overlay, 0o644); err != nil {
		return "", err
	}
	cmd := exec.Command("go", "build", "-overlay", ov, "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false -mod=mod", "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the generated server: %v\n%s", err, b)
	}
	return out, nil
}
