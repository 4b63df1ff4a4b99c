package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/otel-go-launcher/otel-go-launcher/offsets"
)

// trapProgram calls main.tick n times and prints the nanoseconds it took. tick has a
// frame, so it starts with the stack check every probed Go function starts with.
const trapProgram = `package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

var sink [32]int

//go:noinline
func tick(i int) int {
	var frame [32]int
	for j := range frame {
		frame[j] = i + j
	}
	sink = frame
	return i + 1
}

func main() {
	n, _ := strconv.Atoi(os.Args[1])
	x := 0
	begin := time.Now()
	for i := 0; i < n; i++ {
		x = tick(x)
	}
	fmt.Println(time.Since(begin).Nanoseconds(), x)
}
`

// trapCosts measures what one uprobe hit costs on this machine: a loop calling a
// function, without a probe, with an empty BPF program on its first instruction (the
// kernel single-steps it: two traps, as at a RET) and on its stack check's branch (the
// kernel emulates it: one trap; where the launcher puts entry probes), interleaved
// rounds. A probe's cost per request is at least its hits times these.
// reportTrapCosts measures trapCosts and prints them, for a section whose figures they
// explain.
func reportTrapCosts() (stepped, emulated time.Duration, err error) {
	var call time.Duration
	if stepped, emulated, call, err = trapCosts(); err != nil {
		return 0, 0, fmt.Errorf("trap cost: %w", err)
	}
	fmt.Printf("One uprobe hit (an empty program, 5 interleaved rounds of 50,000 calls) costs %.1f µs here on an instruction the kernel single-steps (a function's first, a RET), %.1f µs on one it emulates (the stack check's branch, where entry probes go), %.1f µs on a call it emulates (where route probes go).\n\n",
		float64(stepped.Nanoseconds())/1e3, float64(emulated.Nanoseconds())/1e3, float64(call.Nanoseconds())/1e3)
	return stepped, emulated, nil
}

// trapCosts measures one hit on tick's first instruction (stepped), on its stack
// check's branch (emulated) and on main's call of it (call).
func trapCosts() (stepped, emulated, call time.Duration, err error) {
	dir, err := os.MkdirTemp("", "bench-trap-")
	if err != nil {
		return 0, 0, 0, err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(trapProgram), 0o644); err != nil {
		return 0, 0, 0, err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module trap\n\ngo 1.22\n"), 0o644); err != nil {
		return 0, 0, 0, err
	}
	bin := filepath.Join(dir, "trap")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir, build.Env = dir, append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=mod")
	if out, err := build.CombinedOutput(); err != nil {
		return 0, 0, 0, fmt.Errorf("build: %v: %s", err, out)
	}
	b, err := offsets.Open(bin)
	if err != nil {
		return 0, 0, 0, err
	}
	fns, err := b.Functions("main.tick", "main.main")
	if err != nil {
		b.Close()
		return 0, 0, 0, err
	}
	branch := b.EntryProbeOffset(fns["main.tick"]) - fns["main.tick"].Offset
	calls, err := b.CallOffsets(fns["main.main"], fns["main.tick"])
	b.Close()
	if branch == 0 {
		return 0, 0, 0, fmt.Errorf("main.tick has no stack check branch")
	}
	if err != nil || len(calls) != 1 {
		return 0, 0, 0, fmt.Errorf("main.main's calls of main.tick: %v %v", calls, err)
	}
	callAt := calls[0] - fns["main.main"].Offset
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.Kprobe, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		return 0, 0, 0, err
	}
	defer prog.Close()
	ex, err := link.OpenExecutable(bin)
	if err != nil {
		return 0, 0, 0, err
	}
	const n = 50_000
	type site struct {
		fn string
		at int64 // -1: no probe
	}
	run := func(s site) (time.Duration, error) {
		if s.at >= 0 {
			l, err := ex.Uprobe(s.fn, prog, &link.UprobeOptions{Offset: uint64(s.at)})
			if err != nil {
				return 0, err
			}
			defer l.Close()
		}
		out, err := exec.Command(bin, strconv.Itoa(n)).Output()
		if err != nil {
			return 0, err
		}
		ns, err := strconv.ParseInt(strings.Fields(string(out))[0], 10, 64)
		return time.Duration(ns), err
	}
	// None, the first instruction, the branch, the call.
	sites := []site{{"main.tick", -1}, {"main.tick", 0}, {"main.tick", int64(branch)}, {"main.main", int64(callAt)}}
	times := make([][]time.Duration, len(sites))
	for r := 0; r < 5; r++ {
		for i, at := range sites {
			d, err := run(at)
			if err != nil {
				return 0, 0, 0, err
			}
			times[i] = append(times[i], d)
		}
	}
	bare := median(times[0])
	return (median(times[1]) - bare) / n, (median(times[2]) - bare) / n, (median(times[3]) - bare) / n, nil
}
