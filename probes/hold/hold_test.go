package hold

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/otel-go-launcher/otel-go-launcher/bpf"
	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
	"github.com/otel-go-launcher/otel-go-launcher/offsets"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.Cleanup()
	os.Exit(code)
}

// syncBuffer is the app's stdout, read while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// state is process pid's state letter (/proc/PID/stat): T when stopped.
func state(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "gone"
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])[0]
}

// The app is stopped at its first call of a held function, before that function's
// entry probe address; a probe attached while it is stopped sees that call, and
// Release lets it finish. No call is missed.
func TestHoldStopsBeforeTheEntryProbe(t *testing.T) {
	testenv.RequireRoot(t)
	path := testenv.Build(t, "./probes/hold/testdata/held")
	bin, err := offsets.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	fns, err := bin.Functions("main.work")
	if err != nil {
		t.Fatal(err)
	}
	work := fns["main.work"]
	entry := bin.EntryProbeOffset(work)
	bin.Close()
	if entry == work.Offset {
		t.Fatalf("main.work's entry probe is at its first instruction (%#x): the test needs a stack check", entry)
	}

	app := exec.Command(path)
	stdin, err := app.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	app.Stdout = &out
	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Process.Kill(); app.Wait() })
	pid := app.Process.Pid

	h, err := Attach(path, pid, []uint64{work.Offset}, nil)
	if err != nil {
		t.Fatal(err)
	}
	stdin.Write([]byte("go\n"))
	for deadline := time.Now().Add(10 * time.Second); state(pid) != "T"; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the app was not stopped at main.work: state %s, output %q", state(pid), out.String())
		}
	}
	if got := out.String(); got != "" {
		t.Fatalf("the stopped app printed %q: it ran past its first call", got)
	}

	seen, prog := callsSeen(t)
	links, err := bpf.AttachUprobes(path, pid, bpf.Uprobe{Symbol: "main.work", Program: prog, Offsets: []uint64{entry}})
	if err != nil {
		t.Fatal(err)
	}
	defer bpf.CloseAll(links)

	held, err := h.Release()
	if err != nil {
		t.Fatal(err)
	}
	if !held {
		t.Error("Release says the app was not held")
	}
	if err := app.Wait(); err != nil {
		t.Fatalf("the app: %v (output %q)", err, out.String())
	}
	if got, want := out.String(), "work 0\nwork 1\nwork 2\nmore 3\n"; got != want {
		t.Errorf("the app printed %q, want %q", got, want)
	}
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
	testenv.RequireRoot(t)
	path := testenv.Build(t, "./probes/hold/testdata/held")
	bin, err := offsets.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	fns, err := bin.Functions("main.work")
	bin.Close()
	if err != nil {
		t.Fatal(err)
	}
	app := exec.Command(path)
	stdin, err := app.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	app.Stdout = &out
	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Process.Kill(); app.Wait() })
	h, err := Attach(path, app.Process.Pid, []uint64{fns["main.work"].Offset}, nil)
	if err != nil {
		t.Fatal(err)
	}
	held, err := h.Release()
	if err != nil || held {
		t.Fatalf("Release before any call: held %v, err %v", held, err)
	}
	stdin.Write([]byte("go\n"))
	if err := app.Wait(); err != nil {
		t.Fatalf("the app: %v (output %q)", err, out.String())
	}
	if got := out.String(); got != "work 0\nwork 1\nwork 2\nmore 3\n" {
		t.Errorf("the app printed %q", got)
	}
}

// Later points are held after the core is released: the app runs through the core
// points, stops at a later one (and Later says so), and goes on once all is released.
// Stopped at a later point before the core is released, it stays stopped then.
func TestHoldLater(t *testing.T) {
	testenv.RequireRoot(t)
	path := testenv.Build(t, "./probes/hold/testdata/held")
	bin, err := offsets.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	fns, err := bin.Functions("main.work", "main.more")
	bin.Close()
	if err != nil {
		t.Fatal(err)
	}
	work, more := []uint64{fns["main.work"].Offset}, []uint64{fns["main.more"].Offset}
	for _, c := range []struct {
		name        string
		core, later []uint64
		afterCore   string // the app's output, stopped, once the core is released
	}{
		{"later point reached after the core is released", work, more, "work 0\nwork 1\nwork 2\n"},
		{"later point reached first", more, work, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			app := exec.Command(path)
			stdin, err := app.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			var out syncBuffer
			app.Stdout = &out
			if err := app.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { app.Process.Kill(); app.Wait() })
			pid := app.Process.Pid
			h, err := Attach(path, pid, c.core, c.later)
			if err != nil {
				t.Fatal(err)
			}
			stopped := func(want string) {
				t.Helper()
				for deadline := time.Now().Add(10 * time.Second); state(pid) != "T" || out.String() != want; time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("the app is not stopped after %q: state %s, output %q", want, state(pid), out.String())
					}
				}
			}
			stdin.Write([]byte("go\n"))
			stopped("")
			if _, err := h.ReleaseCore(); err != nil {
				t.Fatal(err)
			}
			stopped(c.afterCore)
			select {
			case <-h.Later():
			case <-time.After(10 * time.Second):
				t.Fatal("stopped at a later point, and Later is not closed")
			}
			time.Sleep(50 * time.Millisecond) // were it wrongly continued, it would run on now
			stopped(c.afterCore)
			if held, err := h.Release(); err != nil || !held {
				t.Fatalf("Release: continued %v, err %v", held, err)
			}
			if err := app.Wait(); err != nil {
				t.Fatalf("the app: %v (output %q)", err, out.String())
			}
			if got := out.String(); got != "work 0\nwork 1\nwork 2\nmore 3\n" {
				t.Errorf("the app printed %q", got)
			}
		})
	}
}
