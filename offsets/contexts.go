package offsets

import (
	"encoding/binary"
	"errors"
	"sort"
)

// Where a context.Context implementation keeps its parent. A probe finds a call's parent
// span by walking the call's context up its parents (bpf/include/spans.h): the standard
// contexts (cancelCtx, timerCtx, valueCtx, withoutCancelCtx, afterFuncCtx) and most
// wrappers keep the parent Context as their first field, which the walk reads by
// default. ContextParents finds the others in the binary, from what every Go program
// has, stripped or not: each type that is ever converted to context.Context has an itab
// for it (the word an interface holds, and what the walk sees of a layer), and the
// itab names the type, whose descriptor lists its fields with their types and offsets.

// ContextParent is a context type whose parent Context is not its first word.
type ContextParent struct {
	Itab uint64 // the link address of its itab for context.Context
	// Where its parent Context is, from the value the interface's data word points to:
	// at Offset; or, with Hop, at Offset in what the pointer at Hop - 1 points to (an
	// embedded pointer to a struct that holds it: Go 1.20's timerCtx embeds *cancelCtx).
	Hop, Offset uint64
	Type        string // its name, as %T prints it ("*main.holder"): for messages and tests
}

// maxContextParents bounds the result (the BPF map's size, spans.h); a program with more
// such types gets those with the lowest itab addresses.
const maxContextParents = 1024

// Kinds and layouts (internal/abi) ContextParents reads, unchanged from Go 1.20 to 1.27
// on 64-bit targets: an itab is Inter, Type, Hash (and padding), Fun[...]; an
// InterfaceType adds PkgPath (a Name) and Methods (a slice) to Type; a PtrType, Elem.
const (
	abiKindInterface     = 20
	abiKindPointer       = 22
	abiInterfaceTypeSize = abiTypeSize + 8 + 24
	abiPtrElemOff        = abiTypeSize
	abiItabFunOff        = 24
	maxEmbedDepth        = 4      // struct fields within struct fields followed looking for a Context
	abiNameEmbedded      = 1 << 3 // a field name's flag: the field is embedded
)

// ContextParents lists the context types of the binary whose parent Context is a field
// that is not at offset 0 - embedded after other fields, or a named field that is not
// the first - with where it is. A type with several Context fields gives its first (in
// field order); fields of struct type are looked into (a Context embedded in an embedded
// struct), and one embedded pointer to a struct is followed (struct{ *base }, base
// holding the Context); other pointer fields are not (gin's Context reaches its
// request's context through a Request *http.Request field: not followed). Types
// without a Context field, and those with it first, are not listed: the walk reads
// their first word as it does for the standard contexts. Addresses are link addresses
// (a position-independent app's are relocated once it runs).
func (b *Binary) ContextParents() (found []ContextParent, err error) {
	defer faultsArePanics()()
	defer recoverAs(&err, b.Path)
	return b.contextParents()
}

func (b *Binary) contextParents() ([]ContextParent, error) {
	ti, err := b.typeInfo()
	if err != nil {
		return nil, err
	}
	itabs, err := b.itabs(ti)
	if err != nil {
		return nil, err
	}
	isContext := map[uint64]bool{} // interface type address -> is it context.Context
	var ctxIface uint64
	var found []ContextParent
	for _, itab := range itabs {
		inter := ti.pointer(itab)
		is, seen := isContext[inter]
		if !seen {
			is = ti.isNamedInterface(inter, "context", "Context")
			isContext[inter] = is
		}
		if !is {
			continue
		}
		ctxIface = inter
		typ := ti.pointer(itab + 8)
		st := typ
		if ti.kind(typ) == abiKindPointer {
			st = ti.pointer(typ + abiPtrElemOff)
		}
		if ti.kind(st) != abiKindStruct {
			continue
		}
		if hop, off, ok := ti.fieldOfType(st, ctxIface, 0, false); ok && (hop != 0 || off != 0) {
			found = append(found, ContextParent{Itab: itab, Hop: hop, Offset: off, Type: ti.typeName(typ)})
		}
	}
	sort.Slice(found, func(i, j int) bool { return found[i].Itab < found[j].Itab })
	if len(found) > maxContextParents {
		found = found[:maxContextParents]
	}
	return found, nil
}

// itabs lists the link addresses of the binary's itabs: up to Go 1.26 the linker lists
// them in a section of their own (moduledata.itablinks); since 1.27 they sit in the type
// data, itabsize bytes from moduledata.types + itaboffset, one after another.
func (b *Binary) itabs(ti *typeInfo) ([]uint64, error) {
	for _, name := range []string{".itablink", ".data.rel.ro.itablink"} {
		sec, data := b.sectionData(name)
		if sec == nil {
			continue
		}
		if data == nil {
			return nil, errors.New(name + " is not in the file")
		}
		var out []uint64
		for off := uint64(0); off+8 <= uint64(len(data)); off += 8 {
			if p := ti.pointer(sec.Addr + off); p != 0 {
				out = append(out, p)
			}
		}
		return out, nil
	}
	t, err := b.pclntab()
	if err != nil {
		return nil, err
	}
	md := b.moduledata(t, t.addr)
	if md == nil {
		return nil, errors.New("runtime module data not found")
	}
	le := binary.LittleEndian
	if le.Uint64(md[(moduledataTypes+1)*8:]) >= ti.types { // before 1.27 that word is etypes: then a section lists them
		return nil, errors.New("no itab list (.itablink) in the file")
	}
	off, size := le.Uint64(md[(moduledataTypes+3)*8:]), le.Uint64(md[(moduledataTypes+4)*8:])
	if off > uint64(len(ti.region)) || size > uint64(len(ti.region))-off {
		return nil, errors.New("the itabs are not in the type data")
	}
	var out []uint64
	for p := off; p+abiItabFunOff+8 <= off+size; {
		itab := ti.types + p
		out = append(out, itab)
		n := uint64(1) // Fun[0] == 0: the type does not implement the interface, one word
		if le.Uint64(ti.region[p+abiItabFunOff:]) != 0 {
			n = ti.methods(ti.pointer(itab))
			if n == 0 || n > maxTypeInfoFields {
				return out, errors.New("an itab's interface has no methods, or too many")
			}
		}
		p += abiItabFunOff + 8*n
	}
	return out, nil
}

// kind is the kind of the type descriptor at addr, or 0 outside the type data.
func (ti *typeInfo) kind(addr uint64) int {
	if addr < ti.types || addr-ti.types+abiTypeSize > uint64(len(ti.region)) {
		return 0
	}
	return int(ti.region[addr-ti.types+abiTypeKindOff] & abiKindMask)
}

// methods is the number of methods of the interface type at addr.
func (ti *typeInfo) methods(addr uint64) uint64 {
	if ti.kind(addr) != abiKindInterface {
		return 0
	}
	head := ti.b.at(addr+abiTypeSize+8, 16)
	if head == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(head[8:])
}

// typeName is the name of the type at addr, as %T prints it.
func (ti *typeInfo) typeName(addr uint64) string {
	p := addr - ti.types
	name, ok := ti.nameAt(int32(binary.LittleEndian.Uint32(ti.region[p+abiTypeStrOff:])))
	if ok && ti.region[p+abiTypeTFlagOff]&abiTFlagExtraStar != 0 && len(name) > 0 && name[0] == '*' {
		name = name[1:]
	}
	return name
}

// isNamedInterface reports whether the type at addr is the named interface pkg.name
// (its package told by its path, not only by the name the runtime prints).
func (ti *typeInfo) isNamedInterface(addr uint64, pkgPath, name string) bool {
	if ti.kind(addr) != abiKindInterface {
		return false
	}
	p := addr - ti.types
	const flags = abiTFlagUncommon | abiTFlagNamed
	if ti.region[p+abiTypeTFlagOff]&flags != flags || p+abiInterfaceTypeSize+4 > uint64(len(ti.region)) {
		return false
	}
	if n := ti.typeName(addr); n != pkgPath+"."+name {
		return false
	}
	// A named type's UncommonType follows its kind's struct; its first word is its
	// package path's nameOff.
	path, ok := ti.nameAt(int32(binary.LittleEndian.Uint32(ti.region[p+abiInterfaceTypeSize:])))
	return ok && path == pkgPath
}

// fieldOfType finds, in the struct at addr, its first field whose type is the one at
// want, looking into fields of struct type (depth levels deep so far) and, unless
// hopped (one was followed already), through an embedded pointer to a struct. It
// returns where that field is: at off, or with hop at off in what the pointer at hop - 1
// points to.
func (ti *typeInfo) fieldOfType(addr, want uint64, depth int, hopped bool) (hop, off uint64, ok bool) {
	le := binary.LittleEndian
	head := ti.b.at(addr+abiStructFieldsOff, 24)
	if head == nil {
		return 0, 0, false
	}
	ptr, n := ti.pointer(addr+abiStructFieldsOff), le.Uint64(head[8:])
	if n > maxTypeInfoFields {
		return 0, 0, false
	}
	fields := ti.b.at(ptr, n*abiStructFieldSize)
	if n > 0 && fields == nil {
		return 0, 0, false
	}
	for i := uint64(0); i < n; i++ {
		typ := ti.pointer(ptr + i*abiStructFieldSize + 8)
		at := le.Uint64(fields[i*abiStructFieldSize+16:])
		if typ == want {
			return 0, at, true
		}
		if depth >= maxEmbedDepth {
			continue
		}
		switch ti.kind(typ) {
		case abiKindStruct:
			if hop, inner, ok := ti.fieldOfType(typ, want, depth+1, hopped); ok {
				if hop != 0 { // the pointer is in this field: its offset moves too
					return hop + at, inner, true
				}
				return 0, at + inner, true
			}
		case abiKindPointer:
			elem := ti.pointer(typ + abiPtrElemOff)
			if hopped || ti.kind(elem) != abiKindStruct || !ti.embedded(ti.pointer(ptr+i*abiStructFieldSize)) {
				continue
			}
			if hop, inner, ok := ti.fieldOfType(elem, want, depth+1, true); ok && hop == 0 {
				return at + 1, inner, true
			}
		}
	}
	return 0, 0, false
}

// embedded reports whether the field name at addr (an abi.Name) is an embedded field's.
func (ti *typeInfo) embedded(addr uint64) bool {
	flags := ti.b.at(addr, 1)
	return flags != nil && flags[0]&abiNameEmbedded != 0
}
