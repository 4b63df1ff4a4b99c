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
)

// trapProgram calls main.tick n times and prints the nanoseconds it took.
const trapProgram = `package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

//go:noinline
func tick(i int) int { return i + 1 }

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

// trapCost measures what one uprobe hit costs on this machine: a loop calling a
// function, with and without an empty BPF program at its entry, interleaved rounds.
// Every probe's cost per request is at least its hits times this.
func trapCost() (time.Duration, error) {
	dir, err := os.MkdirTemp("", "bench-trap-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(trapProgram), 0o644); err != nil {
		return 0, err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module trap\n\ngo 1.22\n"), 0o644); err != nil {
		return 0, err
	}
	bin := filepath.Join(dir, "trap")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir, build.Env = dir, append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=mod")
	if out, err := build.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("build: %v: %s", err, out)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.Kprobe, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		return 0, err
	}
	defer prog.Close()
	ex, err := link.OpenExecutable(bin)
	if err != nil {
		return 0, err
	}
	const n = 50_000
	run := func() (time.Duration, error) {
		out, err := exec.Command(bin, strconv.Itoa(n)).Output()
		if err != nil {
			return 0, err
		}
		ns, err := strconv.ParseInt(strings.Fields(string(out))[0], 10, 64)
		return time.Duration(ns), err
	}
	var bare, probed []time.Duration
	for r := 0; r < 5; r++ {
		d, err := run()
		if err != nil {
			return 0, err
		}
		bare = append(bare, d)
		l, err := ex.Uprobe("main.tick", prog, nil)
		if err != nil {
			return 0, err
		}
		d, err = run()
		l.Close()
		if err != nil {
			return 0, err
		}
		probed = append(probed, d)
	}
	return (median(probed) - median(bare)) / n, nil
}
