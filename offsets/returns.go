package offsets

import (
	"fmt"

	"golang.org/x/arch/arm64/arm64asm"
	"golang.org/x/arch/x86/x86asm"
)

// ReturnOffsets lists the file offsets of every RET instruction in fn. Go code is not
// probed with uretprobes (they rewrite the return address on a stack the runtime may
// move), so each return site gets its own uprobe.
func (b *Binary) ReturnOffsets(fn Func) ([]uint64, error) {
	if fn.End <= fn.Addr || fn.End-fn.Addr > 1<<24 {
		return nil, fmt.Errorf("%s: implausible size %d", fn.Name, int64(fn.End-fn.Addr))
	}
	code := b.at(fn.Addr, fn.End-fn.Addr)
	if code == nil {
		return nil, fmt.Errorf("%s: code outside the file", fn.Name)
	}
	rets, err := returnSites(b.Arch, code)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name, err)
	}
	if len(rets) == 0 {
		return nil, fmt.Errorf("%s: no RET instruction", fn.Name)
	}
	for i := range rets {
		rets[i] += fn.Offset
	}
	return rets, nil
}

// returnSites decodes code from its first byte and returns the offsets of its RETs.
// Functions end in padding (INT3 on amd64, zeros on arm64), which decodes harmlessly.
func returnSites(arch string, code []byte) ([]uint64, error) {
	var rets []uint64
	switch arch {
	case "amd64":
		for pc := 0; pc < len(code); {
			inst, err := x86asm.Decode(code[pc:], 64)
			if err != nil {
				if isPadding(code[pc:]) {
					return rets, nil
				}
				return nil, fmt.Errorf("cannot decode the instruction at +%#x: %v", pc, err)
			}
			if inst.Op == x86asm.RET {
				rets = append(rets, uint64(pc))
			}
			pc += inst.Len
		}
	case "arm64":
		for pc := 0; pc+4 <= len(code); pc += 4 {
			inst, err := arm64asm.Decode(code[pc:])
			if err == nil && inst.Op == arm64asm.RET {
				rets = append(rets, uint64(pc))
			}
		}
	default:
		return nil, fmt.Errorf("no disassembler for %s", arch)
	}
	return rets, nil
}

// isPadding reports whether the rest of the function is alignment fill.
func isPadding(b []byte) bool {
	for _, c := range b {
		if c != 0xcc && c != 0x00 {
			return false
		}
	}
	return true
}
