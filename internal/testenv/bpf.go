package testenv

import (
	"regexp"
	"strconv"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// MaxVerifiedInsns bounds the verifier's work per program: loading happens while the
// app waits at the start gate, and a program near the kernel's limit (1M) takes a
// second to verify, or stops loading after a compiler update.
const MaxVerifiedInsns = 50_000

// ProgramsLoad checks that every program of a BPF object loads on this kernel, each
// alone, within MaxVerifiedInsns.
func ProgramsLoad(t *testing.T, spec *ebpf.CollectionSpec) {
	t.Helper()
	RequireRoot(t)
	processed := regexp.MustCompile(`processed (\d+) insns`)
	for name := range spec.Programs {
		one := spec.Copy()
		for n := range one.Programs {
			if n != name {
				delete(one.Programs, n)
			}
		}
		coll, err := ebpf.NewCollectionWithOptions(one, ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats}})
		if err != nil {
			t.Errorf("%s: %+v", name, err)
			continue
		}
		m := processed.FindStringSubmatch(coll.Programs[name].VerifierLog)
		coll.Close()
		if m == nil {
			t.Errorf("%s: no instruction count in the verifier's log", name)
			continue
		}
		n, _ := strconv.Atoi(m[1])
		t.Logf("%s: %d instructions verified", name, n)
		if n > MaxVerifiedInsns {
			t.Errorf("%s: the verifier walked %d instructions (budget %d)", name, n, MaxVerifiedInsns)
		}
	}
}

// RunCounter is a uprobe program that only counts its runs: for tests and benchmarks
// that need to know how often a site is hit, at the least cost a program can have.
type RunCounter struct {
	Program *ebpf.Program
	runs    *ebpf.Map
}

// NewRunCounter loads a RunCounter for attach (AttachNone for perf-event uprobes,
// AttachTraceUprobeMulti for uprobe_multi links).
func NewRunCounter(attach ebpf.AttachType) (*RunCounter, error) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		return nil, err
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
		return nil, err
	}
	return &RunCounter{Program: p, runs: m}, nil
}

// Runs is how many times the program ran so far.
func (c *RunCounter) Runs() (uint64, error) {
	var n uint64
	err := c.runs.Lookup(uint32(0), &n)
	return n, err
}

func (c *RunCounter) Close() {
	c.Program.Close()
	c.runs.Close()
}
