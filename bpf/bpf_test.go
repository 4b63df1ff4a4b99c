package bpf

import (
	"os"
	"os/exec"
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

// counter loads a uprobe program that counts its runs in a one-slot array.
func counter(t *testing.T, attach ebpf.AttachType) (*ebpf.Program, *ebpf.Map) {
	t.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.Kprobe, AttachType: attach, License: "GPL",
		Instructions: asm.Instructions{
			asm.StoreImm(asm.RFP, -4, 0, asm.Word),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.LoadMapPtr(asm.R1, m.FD()),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "out"),
			asm.Mov.Imm(asm.R1, 1),
			asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
			asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
			asm.Return(),
		},
	})
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	return p, m
}

func count(t *testing.T, m *ebpf.Map) uint64 {
	var n uint64
	if err := m.Lookup(uint32(0), &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Uprobes attached with either mechanism - uprobe_multi links (Linux 6.6+) and the
// perf-event uprobes older kernels fall back to - fire in the process they name and
// in no other, and stop when detached.
func TestAttachUprobes(t *testing.T) {
	testenv.RequireRoot(t)
	ticker := testenv.Build(t, "./bpf/testdata/ticker")
	b, err := offsets.Open(ticker)
	if err != nil {
		t.Fatal(err)
	}
	fns, err := b.Functions("main.tick")
	b.Close()
	if err != nil {
		t.Fatal(err)
	}
	tick := fns["main.tick"].Offset

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
			prog, m := counter(t, mode.attach)
			defer prog.Close()
			defer m.Close()

			// Only in the process named: the two tickers are not it.
			links, err := AttachUprobes(ticker, bystander.Process.Pid, Uprobe{Symbol: "main.tick", Program: prog, Offsets: []uint64{tick}})
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			CloseAll(links)
			if n := count(t, m); n != 0 {
				t.Errorf("a uprobe for another process fired %d times", n)
			}
			links, err = AttachUprobes(ticker, traced.Process.Pid, Uprobe{Symbol: "main.tick", Program: prog, Offsets: []uint64{tick}})
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond)
			CloseAll(links)
			n := count(t, m)
			if n < 20 || n > 250 { // one ticker: about 200
				t.Errorf("%d hits in 200 ms of a function one process calls every millisecond", n)
			}
			time.Sleep(50 * time.Millisecond)
			if after := count(t, m); after != n {
				t.Errorf("%d hits after detaching", after-n)
			}
		})
	}
}
