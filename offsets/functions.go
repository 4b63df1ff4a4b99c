package offsets

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// Func is a function found in the binary.
type Func struct {
	Name   string
	Addr   uint64 // entry virtual address
	End    uint64 // first address past the function
	Offset uint64 // file offset of the entry: where a uprobe attaches
	rank   uint8  // pclntab: which of two same-named entries to prefer
}

// Functions finds the named functions: in the ELF symbol table when the binary has one,
// in the pclntab otherwise. Names not found are absent from the result.
func (b *Binary) Functions(names ...string) (map[string]Func, error) {
	if b.Stripped {
		return b.PclntabFunctions(names...)
	}
	return b.SymtabFunctions(names...)
}

// FunctionsEndingIn names the functions whose names end in suffix, from the pclntab
// (which stripping keeps): a walk of the whole table, for what no list of names asks
// (which types have a method of some name).
func (b *Binary) FunctionsEndingIn(suffix string) ([]string, error) {
	t, err := b.pclntab()
	if err != nil {
		return nil, err
	}
	var names []string
	err = t.forEach(func(name []byte, _, _ uint64, _ uint8) bool {
		if bytes.HasSuffix(name, []byte(suffix)) && !slices.Contains(names, string(name)) {
			names = append(names, string(name))
		}
		return true
	})
	return names, err
}

// SymtabFunctions finds functions in .symtab. The table is walked in place and names
// are compared without allocating: a large binary has hundreds of thousands of symbols.
func (b *Binary) SymtabFunctions(names ...string) (map[string]Func, error) {
	want := wantSet(names)
	symtab, syms := b.sectionData(".symtab")
	if symtab == nil {
		return nil, errors.New("no symbol table")
	}
	if syms == nil || symtab.Link == 0 || int(symtab.Link) >= len(b.elf.Sections) {
		return nil, errors.New("symbol table unreadable")
	}
	strs := b.slice(b.elf.Sections[symtab.Link].Offset, b.elf.Sections[symtab.Link].FileSize)
	if strs == nil {
		return nil, errors.New("symbol names unreadable")
	}
	found := map[string]Func{}
	le := binary.LittleEndian
	const entSize = 24 // Elf64_Sym
	for off := 0; off+entSize <= len(syms) && len(found) < len(want); off += entSize {
		e := syms[off : off+entSize]
		if elf.ST_TYPE(e[4]) != elf.STT_FUNC {
			continue
		}
		nameOff := le.Uint32(e)
		if int(nameOff) >= len(strs) {
			continue
		}
		name := cstring(strs[nameOff:])
		if _, ok := want[string(name)]; !ok { // no allocation: map lookup by []byte conversion
			continue
		}
		addr, size := le.Uint64(e[8:]), le.Uint64(e[16:])
		fn := Func{Name: string(name), Addr: addr, End: addr + size}
		var ok bool
		if fn.Offset, ok = b.FileOffset(addr); !ok {
			return nil, fmt.Errorf("%s at %#x is outside the file's segments", name, addr)
		}
		found[fn.Name] = fn
	}
	return found, nil
}

// PclntabFunctions finds functions in the Go runtime's own function table.
func (b *Binary) PclntabFunctions(names ...string) (map[string]Func, error) {
	t, err := b.pclntab()
	if err != nil {
		return nil, err
	}
	want := wantSet(names)
	found := map[string]Func{}
	best := 0 // names found with the best possible rank: no better entry can follow
	var outside error
	err = t.forEach(func(name []byte, entry, end uint64, rank uint8) bool {
		if _, ok := want[string(name)]; !ok {
			return true
		}
		if prev, ok := found[string(name)]; ok && prev.rank >= rank {
			return true
		}
		fn := Func{Name: string(name), Addr: entry, End: end, rank: rank}
		var ok bool
		if fn.Offset, ok = b.FileOffset(entry); !ok {
			outside = fmt.Errorf("%s at %#x is outside the file's segments", name, entry)
			return false
		}
		found[fn.Name] = fn
		if rank == rankBest {
			best++
		}
		return best < len(want)
	})
	if err == nil {
		err = outside
	}
	return found, err
}

// pclntab locates and parses the function table and settles runtime.text. Its section
// is .gopclntab, or .data.rel.ro.gopclntab in PIE builds of Go before 1.26.
func (b *Binary) pclntab() (*pclntab, error) {
	var sec *elf.Section
	var data []byte
	for _, name := range []string{".gopclntab", ".data.rel.ro.gopclntab"} {
		if sec, data = b.sectionData(name); sec != nil {
			break
		}
	}
	if sec == nil {
		return nil, errNoPclntab
	}
	if data == nil {
		return nil, errors.New("function table (.gopclntab) unreadable")
	}
	t, err := parsePclntab(data)
	if err != nil {
		return nil, err
	}
	t.addr = sec.Addr
	if t.textStart == 0 {
		if t.textStart, err = b.textStart(t, sec.Addr); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// textStart finds runtime.text when the pclntab header does not record it (Go 1.26+).
// It is not always the start of .text: an external (cgo) link puts C start-up code
// first. In order: the symbol table, the runtime's module data (which points to the
// pclntab and records text), and for an internal link, the .text section.
func (b *Binary) textStart(t *pclntab, pclntabAddr uint64) (uint64, error) {
	if b.text != 0 {
		return b.text, nil
	}
	if !b.Stripped {
		if v, ok := b.symbolValue("runtime.text"); ok {
			b.text = v
			return v, nil
		}
	}
	if v, ok := b.moduledataText(t, pclntabAddr); ok {
		b.text = v
		return v, nil
	}
	return 0, errors.New("cannot find where Go code starts (runtime.text): no symbol table and no module data")
}

// symbolValue returns the value of one symbol of any type from .symtab.
func (b *Binary) symbolValue(name string) (uint64, bool) {
	symtab, syms := b.sectionData(".symtab")
	if syms == nil || symtab.Link == 0 || int(symtab.Link) >= len(b.elf.Sections) {
		return 0, false
	}
	strs := b.slice(b.elf.Sections[symtab.Link].Offset, b.elf.Sections[symtab.Link].FileSize)
	le := binary.LittleEndian
	for off := 0; off+24 <= len(syms); off += 24 {
		if nameOff := le.Uint32(syms[off:]); int(nameOff) < len(strs) && string(cstring(strs[nameOff:])) == name {
			return le.Uint64(syms[off+8:]), true
		}
	}
	return 0, false
}

// moduledataText reads runtime.text from the runtime's module data; for an internal
// link without it, Go code starts at the start of .text.
func (b *Binary) moduledataText(t *pclntab, pclntabAddr uint64) (uint64, bool) {
	if md := b.moduledata(t, pclntabAddr); md != nil {
		return binary.LittleEndian.Uint64(md[moduledataText*8:]), true
	}
	if b.internallyLinked() {
		if s := b.elf.Section(".text"); s != nil {
			return s.Addr, true
		}
	}
	return 0, false
}

// Words of runtime.moduledata. Its head has kept this layout since Go 1.20: pcHeader,
// six slices (funcnametab, cutab, filetab, pctab, pclntable, ftab), findfunctab, minpc,
// maxpc, text, etext, then pairs for noptrdata, data, bss, noptrbss and covctrs, then
// end, gcdata, gcbss, types; etypes follows, or in Go 1.27+ typedesclen, etypes,
// itaboffset and itabsize (earlier releases have other words there: rodata, gofunc...).
const (
	moduledataMinpc = 1 + 6*3 + 1
	moduledataText  = moduledataMinpc + 2
	moduledataTypes = moduledataText + 2 + 5*2 + 3
	moduledataWords = moduledataTypes + 5
)

// moduledata finds runtime.firstmoduledata by its first word, a pointer to the
// pclntab, and returns its head (moduledataWords words), or nil. minpc - text must
// equal the first function's offset, which rules out a stray word that happens to hold
// the pclntab's address.
func (b *Binary) moduledata(t *pclntab, pclntabAddr uint64) []byte {
	le := binary.LittleEndian
	// Go 1.26 gives it a section of its own, .go.module; before, it sits in one of the
	// writable data sections.
	for _, sec := range b.dataSectionsModuledataFirst() {
		_, data := b.sectionData(sec.Name)
		for off := 0; off+moduledataWords*8 <= len(data); off += 8 {
			if le.Uint64(data[off:]) != pclntabAddr {
				continue
			}
			minpc := le.Uint64(data[off+moduledataMinpc*8:])
			text := le.Uint64(data[off+moduledataText*8:])
			if text != 0 && minpc >= text && minpc-text == t.firstEntryOff() {
				return data[off : off+moduledataWords*8]
			}
		}
	}
	return nil
}

func (b *Binary) dataSectionsModuledataFirst() []*elf.Section {
	var secs []*elf.Section
	for _, s := range b.elf.Sections {
		if s.Type == elf.SHT_PROGBITS && s.Flags&(elf.SHF_ALLOC|elf.SHF_WRITE) == elf.SHF_ALLOC|elf.SHF_WRITE {
			if s.Name == ".go.module" {
				secs = append([]*elf.Section{s}, secs...)
			} else {
				secs = append(secs, s)
			}
		}
	}
	return secs
}

// internallyLinked reports whether the Go linker alone produced the binary: an
// external link leaves the C toolchain's mark (.comment, or glibc start files).
func (b *Binary) internallyLinked() bool {
	return b.elf.Section(".comment") == nil && b.elf.Section(".init") == nil
}

func wantSet(names []string) map[string]struct{} {
	m := make(map[string]struct{}, len(names))
	for _, n := range names {
		m[n] = struct{}{}
	}
	return m
}

func cstring(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}
