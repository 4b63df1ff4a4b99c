package bpf

import (
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
	"github.com/otel-go-launcher/otel-go-launcher/offsets"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.Cleanup()
	os.Exit(code)
}

// counter loads a uprobe program that counts its runs.
func counter(t *testing.T, attach ebpf.AttachType) *testenv.RunCounter {
	t.Helper()
	c, err := testenv.NewRunCounter(attach)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func count(t *testing.T, c *testenv.RunCounter) uint64 {
	n, err := c.Runs()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Uprobes attached with either mechanism - uprobe_multi links (Linux 6.6+) and the
// perf-event uprobes older kernels fall back to - fire in the process they name and
// in no other, and stop when detached.
func TestAttachUprobes(t *testing.T) {
	testenv.RequireRoot(t)
	ticker, tick := buildTicker(t)

	run := func(name string, args ...string) *exec.Cmd {
		cmd := exec.Command(name, args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	traced, _ := run(ticker), run(ticker)
	bystander := run("sleep", "60") // a process that does not run the ticker

	modes := []struct {
		name   string
		multi  bool
		attach ebpf.AttachType
	}{{"perf-event uprobes", false, ebpf.AttachNone}}
	if haveUprobeMulti() {
		modes = append(modes, struct {
			name   string
			multi  bool
			attach ebpf.AttachType
		}{"uprobe_multi", true, ebpf.AttachTraceUprobeMulti})
	} else {
		t.Log("this kernel has no uprobe_multi links: only the fallback is tested")
	}
	saved := haveUprobeMulti
	defer func() { haveUprobeMulti = saved }()
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			haveUprobeMulti = func() bool { return mode.multi }
			c := counter(t, mode.attach)

			// Only in the process named: the two tickers are not it.
			links, err := AttachUprobes(ticker, bystander.Process.Pid, Uprobe{Symbol: "main.tick", Program: c.Program, Offsets: []uint64{tick}})
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			CloseAll(links)
			if n := count(t, c); n != 0 {
				t.Errorf("a uprobe for another process fired %d times", n)
			}
			links, err = AttachUprobes(ticker, traced.Process.Pid, Uprobe{Symbol: "main.tick", Program: c.Program, Offsets: []uint64{tick}})
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond)
			CloseAll(links)
			n := count(t, c)
			if n < 20 || n > 250 { // one ticker: about 200
				t.Errorf("%d hits in 200 ms of a function one process calls every millisecond", n)
			}
			time.Sleep(50 * time.Millisecond)
			if after := count(t, c); after != n {
				t.Errorf("%d hits after detaching", after-n)
			}
		})
	}
}

// The entry probe sits on the stack check's branch (offsets.EntryProbeOffset), where a
// hit costs one trap, not two. It must fire exactly when a probe at the first
// instruction does - also when the stack grows and morestack re-enters the function -
// and see the same argument registers.
func TestEntryProbeSeesTheEntry(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.Require(t, runtime.GOARCH == "amd64", "the entry probe moves on amd64 only (GOARCH=%s)", runtime.GOARCH)
	bin := testenv.Build(t, "./bpf/testdata/descend")
	b, err := offsets.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	fns, err := b.Functions("main.descend")
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	fn := fns["main.descend"]
	branch := b.EntryProbeOffset(fn)
	b.Close()
	if branch == fn.Offset {
		t.Fatalf("main.descend: no stack check branch found after its entry at %#x", fn.Offset)
	}

	cmd := exec.Command(bin)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	type site struct {
		name string
		at   uint64
		prog *ebpf.Program
		m    *ebpf.Map
	}
	sites := []*site{{name: "first instruction", at: fn.Offset}, {name: "stack check branch", at: branch}}
	for _, s := range sites {
		attach := ebpf.AttachNone
		if haveUprobeMulti() {
			attach = ebpf.AttachTraceUprobeMulti
		}
		s.prog, s.m = argSummer(t, attach)
		links, err := AttachUprobes(bin, cmd.Process.Pid, Uprobe{Symbol: "main.descend", Program: s.prog, Offsets: []uint64{s.at}})
		if err != nil {
			t.Fatal(err)
		}
		defer CloseAll(links)
	}
	stdin.Write([]byte("go\n"))
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	read := func(s *site) (hits, sum uint64) {
		if err := s.m.Lookup(uint32(0), &hits); err != nil {
			t.Fatal(err)
		}
		if err := s.m.Lookup(uint32(1), &sum); err != nil {
			t.Fatal(err)
		}
		return hits, sum
	}
	h0, s0 := read(sites[0])
	h1, s1 := read(sites[1])
	const calls = 50 * 101
	if h0 <= calls { // the stacks must have grown, or morestack was not tested
		t.Errorf("%s: %d hits for %d calls: the stacks never grew", sites[0].name, h0, calls)
	}
	if h1 != h0 || s1 != s0 {
		t.Errorf("%s: %d hits, arguments summing to %d; %s: %d hits, %d", sites[0].name, h0, s0, sites[1].name, h1, s1)
	}
	t.Logf("%d calls: %d hits at the entry and at the branch (morestack re-entries included)", calls, h0)
}

// argSummer counts its runs in slot 0 of its map and adds the first Go argument (RAX,
// amd64) to slot 1.
func argSummer(t *testing.T, attach ebpf.AttachType) (*ebpf.Program, *ebpf.Map) {
	t.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	const raxOffset = 10 * 8 // struct pt_regs: r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax
	add := func(key int32, value asm.Register, label string) asm.Instructions {
		return asm.Instructions{
			asm.StoreImm(asm.RFP, -4, int64(key), asm.Word),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.LoadMapPtr(asm.R1, m.FD()),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, label),
			asm.StoreXAdd(asm.R0, value, asm.DWord),
			asm.Mov.Imm(asm.R0, 0).WithSymbol(label),
		}
	}
	insns := asm.Instructions{
		asm.LoadMem(asm.R6, asm.R1, raxOffset, asm.DWord),
		asm.Mov.Imm(asm.R7, 1),
	}
	insns = append(insns, add(0, asm.R7, "counted")...)
	insns = append(insns, add(1, asm.R6, "summed")...)
	insns = append(insns, asm.Mov.Imm(asm.R0, 0), asm.Return())
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.Kprobe, AttachType: attach, License: "GPL", Instructions: insns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, m
}

// buildTicker builds the test program that calls main.tick in a loop, and finds the
// function's file offset, where the tests attach.
func buildTicker(t *testing.T) (path string, tick uint64) {
	t.Helper()
	path = testenv.Build(t, "./bpf/testdata/ticker")
	b, err := offsets.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	fns, err := b.Functions("main.tick")
	b.Close()
	if err != nil {
		t.Fatal(err)
	}
	return path, fns["main.tick"].Offset
}
