package hold

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/otel-go-launcher/otel-go-launcher/bpf"
	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
	"github.com/otel-go-launcher/otel-go-launcher/offsets"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.Cleanup()
	os.Exit(code)
}

// all is what the held program prints when it runs to its end.
const all = "work 0\nwork 1\nwork 2\nmore 3\n"

// heldApp is the held program (testdata/held), started and waiting for a line on
// stdin before its calls.
type heldApp struct {
	t          *testing.T
	path       string
	pid        int
	work, more offsets.Func
	entry      uint64 // where main.work's entry probe goes
	cmd        *exec.Cmd
	stdin      io.Writer
	out        testenv.SyncBuffer
}

func startHeld(t *testing.T) *heldApp {
	t.Helper()
	testenv.RequireRoot(t)
	a := &heldApp{t: t, path: testenv.Build(t, "./probes/hold/testdata/held")}
	bin, err := offsets.Open(a.path)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	fns, err := bin.Functions("main.work", "main.more")
	if err != nil {
		t.Fatal(err)
	}
	a.work, a.more = fns["main.work"], fns["main.more"]
	if a.entry = bin.EntryProbeOffset(a.work); a.entry == a.work.Offset {
		t.Fatalf("main.work's entry probe is at its first instruction (%#x): the tests need a stack check", a.entry)
	}
	a.cmd = exec.Command(a.path)
	stdin, err := a.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	a.stdin = stdin
	a.cmd.Stdout = &a.out
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.cmd.Process.Kill(); a.cmd.Wait() })
	a.pid = a.cmd.Process.Pid
	return a
}

// run lets it make its calls.
func (a *heldApp) run() { a.stdin.Write([]byte("go\n")) }

// state is its state letter (/proc/PID/stat): T when stopped.
func (a *heldApp) state() string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", a.pid))
	if err != nil {
		return "gone"
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])[0]
}

// stopped waits until it is stopped, having printed printed.
func (a *heldApp) stopped(printed string) {
	a.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); a.state() != "T" || a.out.String() != printed; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			a.t.Fatalf("the app is not stopped after printing %q: state %s, output %q", printed, a.state(), a.out.String())
		}
	}
}

// finished waits for its exit and checks that it printed all.
func (a *heldApp) finished() {
	a.t.Helper()
	if err := a.cmd.Wait(); err != nil {
		a.t.Fatalf("the app: %v (output %q)", err, a.out.String())
	}
	if got := a.out.String(); got != all {
		a.t.Errorf("the app printed %q, want %q", got, all)
	}
}

// The app is stopped at its first call of a held function, before that function's
// entry probe address; a probe attached while it is stopped sees that call, and
// Release lets it finish. No call is missed.
func TestHoldStopsBeforeTheEntryProbe(t *testing.T) {
	a := startHeld(t)
	h, err := Attach(a.path, a.pid, []uint64{a.work.Offset}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.run()
	a.stopped("")
	seen, prog := callsSeen(t)
	links, err := bpf.AttachUprobes(a.path, a.pid, bpf.Uprobe{Symbol: "main.work", Program: prog, Offsets: []uint64{a.entry}})
	if err != nil {
		t.Fatal(err)
	}
	defer bpf.CloseAll(links)
	if continued, err := h.Release(); err != nil || !continued {
		t.Fatalf("Release: continued %v, err %v", continued, err)
	}
	a.finished()
	for n := range uint32(3) {
		var v uint64
		if err := seen.Lookup(n, &v); err != nil {
			t.Fatal(err)
		}
		if v != 1 {
			t.Errorf("the entry probe did not see work(%d): the held call was missed", n)
		}
	}
}

// callsSeen loads a program for main.work's entry probe that marks the calls it sees
// by their argument, n (0, 1 or 2): seen[n] = 1. Marks, not counts: a call can pass its
// stack check twice (the runtime asks a goroutine to yield there, then reruns the
// function's start), as the app continued after a stop is likely to.
func callsSeen(t *testing.T) (*ebpf.Map, *ebpf.Program) {
	testenv.Require(t, runtime.GOARCH == "amd64", "the program reads main.work's argument from RAX")
	const raxOffset = 10 * 8 // struct pt_regs: r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax
	seen, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seen.Close() })
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.Kprobe, AttachType: ebpf.AttachTraceUprobeMulti, License: "GPL",
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R6, asm.R1, raxOffset, asm.DWord),
			asm.StoreMem(asm.RFP, -4, asm.R6, asm.Word),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.LoadMapPtr(asm.R1, seen.FD()),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "out"),
			asm.Mov.Imm(asm.R1, 1),
			asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
			asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prog.Close() })
	return seen, prog
}

// An app that reaches no held function before Release is never stopped, and Release
// says so.
func TestHoldReleasedBeforeAnyCall(t *testing.T) {
	a := startHeld(t)
	h, err := Attach(a.path, a.pid, []uint64{a.work.Offset}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if continued, err := h.Release(); err != nil || continued {
		t.Fatalf("Release before any call: continued %v, err %v", continued, err)
	}
	a.run()
	a.finished()
}

// Later points are held after the core is released: the app runs through the core
// points, stops at a later one (and Later says so), and goes on once all is released.
// Stopped at a later point before the core is released, it stays stopped then.
func TestHoldLater(t *testing.T) {
	for _, c := range []struct {
		name      string
		later     bool   // main.work is the later point, main.more the core one
		afterCore string // the app's output, stopped, once the core is released
	}{
		{"later point reached after the core is released", false, "work 0\nwork 1\nwork 2\n"},
		{"later point reached first", true, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := startHeld(t)
			core, later := []uint64{a.work.Offset}, []uint64{a.more.Offset}
			if c.later {
				core, later = later, core
			}
			h, err := Attach(a.path, a.pid, core, later)
			if err != nil {
				t.Fatal(err)
			}
			a.run()
			a.stopped("")
			if _, err := h.ReleaseCore(); err != nil {
				t.Fatal(err)
			}
			a.stopped(c.afterCore)
			// The core's link goes (each hit would cost the app a trap); the later
			// points' stays.
			for deadline := time.Now().Add(10 * time.Second); holdLinks(t, h) != 1; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%d links of the hold after the core's release, want 1", holdLinks(t, h))
				}
			}
			select {
			case <-h.Later():
			case <-time.After(10 * time.Second):
				t.Fatal("stopped at a later point, and Later is not closed")
			}
			time.Sleep(50 * time.Millisecond) // were it wrongly continued, it would run on now
			a.stopped(c.afterCore)
			if continued, err := h.Release(); err != nil || !continued {
				t.Fatalf("Release: continued %v, err %v", continued, err)
			}
			a.finished()
		})
	}
}

// holdLinks counts the BPF links of h's program in the system.
func holdLinks(t *testing.T, h *Hold) int {
	t.Helper()
	prog, err := h.objs.Program("hold")
	if err != nil {
		t.Fatal(err)
	}
	info, err := prog.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	n := 0
	var it link.Iterator
	for it.Next() {
		if li, err := it.Link.Info(); err == nil && li.Program == id {
			n++
		}
	}
	return n
}
