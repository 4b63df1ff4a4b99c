package offsets

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The pclntab is the Go runtime's own function table: every Go binary has it, stripped
// or not, because stack traces and the garbage collector need it. Layout (Go 1.18+,
// runtime/symtab.go pcHeader):
//
//	magic uint32, pad [2]byte, minLC uint8, ptrSize uint8
//	nfunc, nfiles, textStart, funcnameOffset, cuOffset, filetabOffset, pctabOffset,
//	pclnOffset uintptr
//
// At pclnOffset sits the function table: nfunc+1 pairs {entryOff, funcOff uint32},
// entryOff relative to runtime.text, funcOff to the table; the last pair's entryOff is
// the end of the last function. At funcOff, a _func starts {entryOff uint32,
// nameOff int32, ...}; nameOff indexes the NUL-terminated names at funcnameOffset.
//
// Go 1.26 stopped filling textStart (it is 0): the caller supplies runtime.text.
const (
	pclntabMagic118 = 0xfffffff0 // Go 1.18, 1.19
	pclntabMagic120 = 0xfffffff1 // Go 1.20 and later
	pcHeaderSize    = 8 + 8*8
)

type pclntab struct {
	addr        uint64 // its address
	textStart   uint64 // runtime.text: what function entry offsets are relative to
	headerText  uint64 // textStart as the header has it (0 since Go 1.26)
	nfunc       int
	funcnametab []byte
	functab     []byte // (nfunc+1) * 8 bytes
	pcln        []byte // from pclnOffset to the end: functab, then _func records
}

var errNoPclntab = errors.New("no Go function table (.gopclntab): not a Go program, or one this launcher cannot read")

func parsePclntab(data []byte) (*pclntab, error) {
	if len(data) < pcHeaderSize {
		return nil, errNoPclntab
	}
	le := binary.LittleEndian
	switch magic := le.Uint32(data); magic {
	case pclntabMagic118, pclntabMagic120:
	default:
		return nil, fmt.Errorf("function table has magic %#x; Go 1.18 or later writes %#x", magic, uint32(pclntabMagic120))
	}
	if data[4] != 0 || data[5] != 0 || data[7] != 8 {
		return nil, fmt.Errorf("function table header is not that of a 64-bit Go program")
	}
	word := func(i int) uint64 { return le.Uint64(data[8+8*i:]) }
	nfunc, textStart, funcnameOff, pclnOff := word(0), word(2), word(3), word(7)
	size := uint64(len(data))
	if funcnameOff >= size || pclnOff >= size || nfunc > size/8 {
		return nil, fmt.Errorf("function table header points outside the table")
	}
	t := &pclntab{
		headerText:  textStart,
		textStart:   textStart,
		nfunc:       int(nfunc),
		funcnametab: data[funcnameOff:],
		pcln:        data[pclnOff:],
	}
	if (nfunc+1)*8 > uint64(len(t.pcln)) {
		return nil, fmt.Errorf("function table truncated: %d functions do not fit", nfunc)
	}
	t.functab = t.pcln[:(nfunc+1)*8]
	return t, nil
}

// A name can appear twice in the table: a Go function called from assembly has an ABI0
// wrapper of the same name, and an assembly function called from Go an ABIInternal
// wrapper. The symbol table names the ABI0 one NAME.abi0 and the other NAME; this is
// the one a uprobe wants, since Go code calls it. It is the entry that is not assembly
// (_func.flag ASM) and, among those, an ordinary function (_func.funcID 0), not a
// compiler-made wrapper; ties go to the lower address. rank orders them so.
const (
	funcFlagASM  = 1 << 2
	funcIDNormal = 0
	rankBest     = 3
)

func rank(funcID, flag uint8) uint8 {
	r := uint8(0)
	if flag&funcFlagASM == 0 {
		r += 2
	}
	if funcID == funcIDNormal {
		r++
	}
	return r
}

// forEach calls fn with each function's name, entry and end addresses and rank, in
// address order, until fn returns false. Names alias the table: copy them to keep them.
func (t *pclntab) forEach(fn func(name []byte, entry, end uint64, rank uint8) bool) error {
	le := binary.LittleEndian
	for i := 0; i < t.nfunc; i++ {
		entryOff := le.Uint32(t.functab[i*8:])
		funcOff := le.Uint32(t.functab[i*8+4:])
		endOff := le.Uint32(t.functab[(i+1)*8:])
		const funcIDOff = 40 // _func: 10 32-bit fields, then funcID and flag
		if uint64(funcOff)+funcIDOff+2 > uint64(len(t.pcln)) {
			return fmt.Errorf("function %d: record outside the table", i)
		}
		nameOff := int32(le.Uint32(t.pcln[funcOff+4:]))
		if nameOff < 0 || int(nameOff) >= len(t.funcnametab) {
			return fmt.Errorf("function %d: name outside the table", i)
		}
		name := t.funcnametab[nameOff:]
		n := 0
		for n < len(name) && name[n] != 0 {
			n++
		}
		if !fn(name[:n], t.textStart+uint64(entryOff), t.textStart+uint64(endOff), rank(t.pcln[funcOff+funcIDOff], t.pcln[funcOff+funcIDOff+1])) {
			return nil
		}
	}
	return nil
}

// firstEntryOff is the offset of the first function from runtime.text.
func (t *pclntab) firstEntryOff() uint64 {
	return uint64(binary.LittleEndian.Uint32(t.functab))
}
