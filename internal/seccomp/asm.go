package seccomp

import (
	"errors"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Classic BPF opcodes (linux/filter.h) used here.
const (
	ldAbsW = 0x20 // BPF_LD|BPF_W|BPF_ABS: A = word at K in seccomp_data
	andK   = 0x54 // BPF_ALU|BPF_AND|BPF_K
	ja     = 0x05 // BPF_JMP|BPF_JA
	jeqK   = 0x15 // BPF_JMP|BPF_JEQ|BPF_K
	jgtK   = 0x25 // BPF_JMP|BPF_JGT|BPF_K
	jgeK   = 0x35 // BPF_JMP|BPF_JGE|BPF_K
	retK   = 0x06 // BPF_RET|BPF_K

	maxInstructions = 4096 // BPF_MAXINSNS
)

// struct seccomp_data offsets; arguments are 64-bit, little-endian on every
// architecture handled here.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// asm assembles a program whose jumps all go forward to labels. Every conditional
// jump skips at most one instruction (an unconditional jump to its target follows),
// so no program is limited by the 8-bit offsets of conditional jumps.
type asm struct {
	prog   []Instruction
	labels []int       // label -> instruction index, -1 until placed
	jumps  map[int]int // instruction index -> label it jumps to
}

func (a *asm) label() int {
	a.labels = append(a.labels, -1)
	return len(a.labels) - 1
}

func (a *asm) place(l int) { a.labels[l] = len(a.prog) }

func (a *asm) emit(code uint16, k uint32) {
	a.prog = append(a.prog, Instruction{Code: code, K: k})
}

func (a *asm) jump(l int) {
	if a.jumps == nil {
		a.jumps = map[int]int{}
	}
	a.jumps[len(a.prog)] = l
	a.emit(ja, 0)
}

// branch goes to t when A op k holds, else to f.
func (a *asm) branch(op uint16, k uint32, t, f int) {
	a.prog = append(a.prog, Instruction{Code: op, K: k, Jt: 0, Jf: 1})
	a.jump(t)
	a.jump(f)
}

func (a *asm) load(off uint32) { a.emit(ldAbsW, off) }

func (a *asm) ret(v uint32) { a.emit(retK, v) }

func (a *asm) resolve() ([]Instruction, error) {
	for i, l := range a.jumps {
		to := a.labels[l]
		if to <= i {
			return nil, errors.New("seccomp: a backward or unplaced jump (a bug)")
		}
		a.prog[i].K = uint32(to - i - 1)
	}
	if len(a.prog) > maxInstructions {
		return nil, fmt.Errorf("%d instructions, over the kernel's %d: %w", len(a.prog), maxInstructions, ErrUnsupported)
	}
	return a.prog, nil
}

// assemble lays the program out: dispatch on the architecture, then on the call
// number, then each call's verdict. Anything not listed is allowed.
func assemble(arches []arch, verdicts map[string]verdict) ([]Instruction, error) {
	var a asm
	type block struct {
		arch  arch
		call  string
		label int
	}
	var audits []uint32
	byAudit := map[uint32][]arch{}
	for _, ar := range arches {
		if byAudit[ar.audit] == nil {
			audits = append(audits, ar.audit)
		}
		byAudit[ar.audit] = append(byAudit[ar.audit], ar)
	}
	a.load(offArch)
	archLabels := map[uint32]int{}
	for _, au := range audits {
		l, next := a.label(), a.label()
		archLabels[au] = l
		a.branch(jeqK, au, l, next)
		a.place(next)
	}
	a.ret(retAllow)
	var blocks []block
	for _, au := range audits {
		a.place(archLabels[au])
		a.load(offNr)
		for _, ar := range byAudit[au] {
			for _, call := range LauncherCalls {
				b := block{ar, call, a.label()}
				next := a.label()
				a.branch(jeqK, ar.number[call], b.label, next)
				a.place(next)
				blocks = append(blocks, b)
			}
		}
		a.ret(retAllow)
	}
	for _, b := range blocks {
		a.place(b.label)
		v := verdicts[b.call]
		if v.wide != nil {
			a.ret(*v.wide)
			continue
		}
		for _, conj := range v.cond {
			fail := a.label()
			for _, c := range conj {
				pass := a.label()
				a.test(c, b.arch.is32, pass, fail)
				a.place(pass)
			}
			a.ret(v.condRet)
			a.place(fail)
		}
		a.ret(v.fallback)
	}
	return a.resolve()
}

// test goes to t when the call's argument satisfies c, else to f. Values are compared
// unsigned, as libseccomp does: both 32-bit halves on 64-bit architectures, the low
// half only on 32-bit ones.
func (a *asm) test(c arg, is32 bool, t, f int) {
	lo, hi := uint32(offArgs+8*c.index), uint32(offArgs+8*c.index+4)
	vlo, vhi := uint32(c.value), uint32(c.value>>32)
	switch c.op {
	case specs.OpNotEqual:
		a.equal(lo, hi, vlo, vhi, is32, f, t)
	case specs.OpEqualTo:
		a.equal(lo, hi, vlo, vhi, is32, t, f)
	case specs.OpGreaterThan:
		a.above(lo, hi, vlo, vhi, is32, jgtK, t, f)
	case specs.OpGreaterEqual:
		a.above(lo, hi, vlo, vhi, is32, jgeK, t, f)
	case specs.OpLessThan: // not >=
		a.above(lo, hi, vlo, vhi, is32, jgeK, f, t)
	case specs.OpLessEqual: // not >
		a.above(lo, hi, vlo, vhi, is32, jgtK, f, t)
	case specs.OpMaskedEqual: // (arg & value) == valueTwo
		mlo, mhi := vlo, vhi
		dlo, dhi := uint32(c.value2), uint32(c.value2>>32)
		if !is32 {
			next := a.label()
			a.load(hi)
			a.emit(andK, mhi)
			a.branch(jeqK, dhi, next, f)
			a.place(next)
		}
		a.load(lo)
		a.emit(andK, mlo)
		a.branch(jeqK, dlo, t, f)
	}
}

// equal goes to t when the argument equals v, else to f.
func (a *asm) equal(lo, hi, vlo, vhi uint32, is32 bool, t, f int) {
	if !is32 {
		next := a.label()
		a.load(hi)
		a.branch(jeqK, vhi, next, f)
		a.place(next)
	}
	a.load(lo)
	a.branch(jeqK, vlo, t, f)
}

// above goes to t when the argument is greater than v (op jgtK) or at least v (jgeK):
// a higher high half decides, an equal one leaves it to the low half.
func (a *asm) above(lo, hi, vlo, vhi uint32, is32 bool, op uint16, t, f int) {
	if !is32 {
		notAbove, sameHigh := a.label(), a.label()
		a.load(hi)
		a.branch(jgtK, vhi, t, notAbove)
		a.place(notAbove)
		a.branch(jeqK, vhi, sameHigh, f)
		a.place(sameHigh)
	}
	a.load(lo)
	a.branch(op, vlo, t, f)
}
