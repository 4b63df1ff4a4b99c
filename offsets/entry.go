package offsets

import (
	"golang.org/x/arch/x86/x86asm"
)

// EntryProbeOffset is the file offset where fn's entry probe goes: the conditional
// branch of its stack-bound check when the instructions before it write only flags and
// the scratch registers R12/R13, else its first instruction.
//
// Why not always the first instruction: the kernel executes most probed instructions
// out of line and single-steps them, a second trap; branches it emulates. On this VM a
// hit on the stack check's CMP costs 21 µs, on the JBE after it 5.7 µs (bench: trap).
// The branch sees the registers the entry sees (arguments, R14 = g, SP and the return
// address on the stack), and the morestack path re-enters at the first instruction, so
// the probe fires exactly when one at the entry would.
//
// arm64 keeps the entry: its B.LS is simulated too, but that is not measured here.
func (b *Binary) EntryProbeOffset(fn Func) uint64 {
	if b.Arch != "amd64" || fn.End <= fn.Addr {
		return fn.Offset
	}
	code := b.at(fn.Addr, min(fn.End-fn.Addr, 64))
	if code == nil {
		return fn.Offset
	}
	return fn.Offset + stackCheckBranch(code)
}

// FramedEntryOffset is EntryProbeOffset, but for a function without a stack check
// that begins by setting up its frame pointer - PUSHQ BP; MOVQ SP, BP -, then only
// tests and compares before a conditional branch, as the compiler's pointer-receiver
// wrappers of value methods do (their nil check): that branch's offset, an
// instruction the kernel emulates, where the arguments are still in their registers
// and the stack a word lower (BP pushed). The entry probe is then not at the
// function's first instruction, where the overlapped start's hold goes.
func (b *Binary) FramedEntryOffset(fn Func) uint64 {
	entry := b.EntryProbeOffset(fn)
	if b.Arch != "amd64" || entry != fn.Offset || fn.End <= fn.Addr {
		return entry
	}
	code := b.at(fn.Addr, min(fn.End-fn.Addr, 32))
	if code == nil {
		return entry
	}
	return fn.Offset + framedBranch(code)
}

// framedBranch returns the offset in code of the branch after PUSHQ BP; MOVQ SP, BP
// and tests or compares (at most 3), or 0 when code does not start so.
func framedBranch(code []byte) uint64 {
	for pc, n := 0, 0; pc < len(code) && n < 6; n++ {
		inst, err := x86asm.Decode(code[pc:], 64)
		if err != nil {
			return 0
		}
		switch {
		case n == 0:
			if inst.Op != x86asm.PUSH || inst.Args[0] != x86asm.RBP {
				return 0
			}
		case n == 1:
			if inst.Op != x86asm.MOV || inst.Args[0] != x86asm.RBP || inst.Args[1] != x86asm.RSP {
				return 0
			}
		case isConditionalJump(inst.Op):
			return uint64(pc)
		case inst.Op != x86asm.TEST && inst.Op != x86asm.CMP:
			return 0
		}
		pc += inst.Len
	}
	return 0
}

// stackCheckBranch returns the offset in code of the branch ending Go's amd64 stack
// check (CMPQ SP, 16(R14); JLS - or LEAQ -n(SP), R12 / MOVQ SP, R12; SUBQ $n, R12;
// JCS first - before CMPQ R12, 16(R14); JLS), or 0 when code does not start so.
func stackCheckBranch(code []byte) uint64 {
	for pc, n := 0, 0; pc < len(code) && n < 5; n++ {
		inst, err := x86asm.Decode(code[pc:], 64)
		if err != nil {
			return 0
		}
		switch {
		case isConditionalJump(inst.Op):
			return uint64(pc)
		case inst.Op == x86asm.CMP:
		case inst.Op == x86asm.LEA || inst.Op == x86asm.MOV || inst.Op == x86asm.SUB:
			if r, ok := inst.Args[0].(x86asm.Reg); !ok || (r != x86asm.R12 && r != x86asm.R13) {
				return 0
			}
		default:
			return 0
		}
		pc += inst.Len
	}
	return 0
}

func isConditionalJump(op x86asm.Op) bool {
	switch op {
	case x86asm.JA, x86asm.JAE, x86asm.JB, x86asm.JBE, x86asm.JE, x86asm.JG, x86asm.JGE,
		x86asm.JL, x86asm.JLE, x86asm.JNE, x86asm.JNO, x86asm.JNP, x86asm.JNS, x86asm.JO,
		x86asm.JP, x86asm.JS:
		return true
	}
	return false
}
