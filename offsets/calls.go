package offsets

import (
	"fmt"

	"golang.org/x/arch/arm64/arm64asm"
	"golang.org/x/arch/x86/x86asm"
)

// CallOffsets lists the file offsets of the direct calls fn makes to any of callees
// (CALL rel32 on amd64, BL on arm64). A probe there sees the callee's arguments in
// their registers, as the callee's entry would, but only for calls from fn: what a
// router hands sync.(*Pool).Put at the end of its ServeHTTP, and nobody else's.
//
// Why a call and not another instruction: the kernel emulates a relative call (one
// trap, as the entry probe's branch, EntryProbeOffset), where most instructions are
// single-stepped out of line (two).
func (b *Binary) CallOffsets(fn Func, callees ...Func) ([]uint64, error) {
	if fn.End <= fn.Addr || fn.End-fn.Addr > 1<<24 {
		return nil, fmt.Errorf("%s: implausible size %d", fn.Name, int64(fn.End-fn.Addr))
	}
	code := b.at(fn.Addr, fn.End-fn.Addr)
	if code == nil {
		return nil, fmt.Errorf("%s: code outside the file", fn.Name)
	}
	targets := map[uint64]bool{}
	for _, c := range callees {
		targets[c.Addr] = true
	}
	sites, err := callSites(b.Arch, code, fn.Addr, targets)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name, err)
	}
	for i := range sites {
		sites[i] += fn.Offset
	}
	return sites, nil
}

// callSites decodes code, which starts at address base, and returns the offsets of its
// direct calls to the addresses in targets.
func callSites(arch string, code []byte, base uint64, targets map[uint64]bool) ([]uint64, error) {
	var sites []uint64
	switch arch {
	case "amd64":
		for pc := 0; pc < len(code); {
			inst, err := x86asm.Decode(code[pc:], 64)
			if err != nil {
				if isPadding(code[pc:]) {
					return sites, nil
				}
				return nil, fmt.Errorf("cannot decode the instruction at +%#x: %v", pc, err)
			}
			if rel, ok := inst.Args[0].(x86asm.Rel); ok && inst.Op == x86asm.CALL {
				if targets[base+uint64(pc+inst.Len)+uint64(int64(rel))] {
					sites = append(sites, uint64(pc))
				}
			}
			pc += inst.Len
		}
	case "arm64":
		for pc := 0; pc+4 <= len(code); pc += 4 {
			inst, err := arm64asm.Decode(code[pc:])
			if err != nil || inst.Op != arm64asm.BL {
				continue
			}
			if rel, ok := inst.Args[0].(arm64asm.PCRel); ok && targets[base+uint64(pc)+uint64(int64(rel))] {
				sites = append(sites, uint64(pc))
			}
		}
	default:
		return nil, fmt.Errorf("no disassembler for %s", arch)
	}
	return sites, nil
}
