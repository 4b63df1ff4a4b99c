package offsets

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// The runtime's type descriptors (internal/abi), unchanged from Go 1.20 to 1.27 on
// 64-bit targets: Type is 48 bytes (Size_, PtrBytes, Hash, TFlag at 20, Align_,
// FieldAlign_, Kind_ at 23, Equal, GCData, then Str, the name's offset from
// moduledata.types, at 40, and PtrToThis, *T's descriptor's, at 44); a StructType adds PkgPath (a Name) and Fields (a slice of
// StructField{Name, Typ, Offset}, 24 bytes each); a named type's UncommonType, whose
// first word is its package path's nameOff, follows.
const (
	abiTypeSize         = 48
	abiTypeTFlagOff     = 20
	abiTypeKindOff      = 23
	abiTypeStrOff       = 40
	abiTypePtrToThisOff = 44
	abiStructFieldsOff  = abiTypeSize + 8
	abiStructTypeSize   = abiTypeSize + 8 + 24
	abiStructFieldSize  = 24
	abiKindMask         = 1<<5 - 1
	abiKindStruct       = 25
	abiTFlagUncommon    = 1 << 0
	abiTFlagExtraStar   = 1 << 1 // the name has a '*' to drop: it is *T's, shared with T
	abiTFlagNamed       = 1 << 2
	maxTypeInfoFields   = 4096
	maxTypeInfoNameSize = 1 << 16
)

// typeRange is the runtime's type data, moduledata.types to etypes (link addresses):
// the descriptors and the names they refer to by offset.
func (b *Binary) typeRange() (types, etypes uint64, err error) {
	t, err := b.pclntab()
	if err != nil {
		return 0, 0, err
	}
	md := b.moduledata(t, t.addr)
	if md == nil {
		return 0, 0, errors.New("runtime module data not found")
	}
	le := binary.LittleEndian
	types, etypes = le.Uint64(md[moduledataTypes*8:]), le.Uint64(md[(moduledataTypes+1)*8:])
	if etypes < types { // Go 1.27+: that word is typedesclen
		etypes = le.Uint64(md[(moduledataTypes+2)*8:])
	}
	if types == 0 || etypes <= types {
		return 0, 0, fmt.Errorf("runtime module data has no type range (%#x-%#x)", types, etypes)
	}
	return types, etypes, nil
}

// TypeInfoFieldOffsets reads field offsets from the runtime type descriptors: Go keeps
// one, with every field's name and offset, for each struct type used through an
// interface or reflection (or behind a pointer type that is), stripped or not. This is
// how offsets are found for a version the database has never seen.
//
// A struct is found by its type string, which the named type T shares with *T
// ("*http.Request"; T's flag says to drop the star), then confirmed by its kind, its
// flags and its package path: a type of another package with the same name is not it.
func (b *Binary) TypeInfoFieldOffsets(fields []FieldRef) (found map[FieldRef]uint64, err error) {
	defer faultsArePanics()()
	defer recoverAs(&err, b.Path)
	return b.typeInfoFieldOffsets(fields)
}

// typeInfoFieldOffsets is TypeInfoFieldOffsets without the recover, for analysis
// (which recovers) and fuzzing (which must see panics).
func (b *Binary) typeInfoFieldOffsets(fields []FieldRef) (map[FieldRef]uint64, error) {
	found := map[FieldRef]uint64{}
	if len(fields) == 0 {
		return found, nil
	}
	ti, err := b.typeInfo()
	if err != nil {
		return found, err
	}
	ti.find(fields, found)
	return found, nil
}

// typeInfo reads the runtime's type data.
func (b *Binary) typeInfo() (*typeInfo, error) {
	types, etypes, err := b.typeRange()
	if err != nil {
		return nil, err
	}
	region := b.at(types, etypes-types)
	if region == nil {
		return nil, fmt.Errorf("type data %#x-%#x is not in the file", types, etypes)
	}
	return &typeInfo{b: b, region: region, types: types}, nil
}

// find adds to found the offsets of fields whose struct has a descriptor.
func (ti *typeInfo) find(fields []FieldRef, found map[FieldRef]uint64) {
	wanted := map[string][]FieldRef{}
	var structs []string
	for _, f := range fields {
		if wanted[f.Struct] == nil {
			structs = append(structs, f.Struct)
		}
		wanted[f.Struct] = append(wanted[f.Struct], f)
	}
	for st, p := range ti.structDescriptors(structs) {
		offs, ok := ti.structFields(ti.types + uint64(p))
		if !ok {
			continue
		}
		for _, f := range wanted[st] {
			if off, ok := offs[f.Field]; ok {
				found[f] = off
			}
		}
	}
}

// structDescriptors finds the descriptors of the structs named ("net/http.Request"):
// their offsets from moduledata.types.
func (ti *typeInfo) structDescriptors(structs []string) map[string]int {
	region := ti.region
	found := map[string]int{}
	// nameOff -> structs: packages of one name ("status" in grpc and in genproto)
	// spell their types alike.
	typeStrings := map[int32][]string{}
	for _, st := range structs {
		for _, off := range ti.typeStringOffs(st) {
			typeStrings[off] = append(typeStrings[off], st)
		}
	}
	if len(typeStrings) == 0 {
		return found
	}
	le := binary.LittleEndian
	for p := 0; p+abiStructTypeSize+4 <= len(region) && len(found) < len(structs); p += 8 {
		const flags = abiTFlagUncommon | abiTFlagExtraStar | abiTFlagNamed
		if region[p+abiTypeKindOff]&abiKindMask != abiKindStruct || region[p+abiTypeTFlagOff]&flags != flags {
			continue
		}
		candidates, ok := typeStrings[int32(le.Uint32(region[p+abiTypeStrOff:]))]
		if !ok {
			continue
		}
		pkgPath, ok := ti.nameAt(int32(le.Uint32(region[p+abiStructTypeSize:])))
		if !ok {
			continue
		}
		for _, c := range candidates {
			if _, done := found[c]; !done {
				if pkg, _ := splitStruct(c); pkg == pkgPath {
					if _, ok := ti.structFields(ti.types + uint64(p)); ok {
						found[c] = p
					}
				}
			}
		}
	}
	return found
}

// PointerTypeAddrs finds the runtime type descriptors of *T for the structs T named
// ("github.com/lib/pq.conn"), by link address: the type word of an interface that holds
// a *T, which a probe can compare with the one it reads. A struct whose pointer type
// the program never uses has none.
func (b *Binary) PointerTypeAddrs(structs []string) (found map[string]uint64, err error) {
	defer faultsArePanics()()
	defer recoverAs(&err, b.Path)
	found = map[string]uint64{}
	ti, err := b.typeInfo()
	if err != nil {
		return found, err
	}
	for st, p := range ti.structDescriptors(structs) {
		// abi.Type.PtrToThis: *T's descriptor, as an offset from types; 0 for none.
		if ptr := int32(binary.LittleEndian.Uint32(ti.region[p+abiTypePtrToThisOff:])); ptr > 0 && int(ptr) < len(ti.region) {
			found[st] = ti.types + uint64(ptr)
		}
	}
	return found, nil
}

// typeStringOffs finds the names that may be the type string of a pointer to the
// struct st: the runtime spells it with the package's name, "*http.Request" for
// "net/http.Request". A package named after its path's last element ("example.com/m/v2"
// is most often m) is looked up so; one whose name the path cannot tell
// ("github.com/redis/go-redis/v9" is redis) by the type's name alone, each package of
// that name then told apart by its path.
func (ti *typeInfo) typeStringOffs(st string) []int32 {
	pkg, name := splitStruct(st)
	elems := strings.Split(pkg, "/")
	last := elems[len(elems)-1]
	if len(elems) > 1 && len(last) > 1 && last[0] == 'v' && strings.Trim(last[1:], "0123456789") == "" {
		last = elems[len(elems)-2] // a major version suffix is not the package name
	}
	if isIdentifier(last) {
		return ti.nameOffs("*" + last + "." + name)
	}
	return ti.nameOffsEnding("." + name)
}

// isIdentifier reports whether s can be a Go package's name.
func isIdentifier(s string) bool {
	for i := 0; i < len(s); i++ {
		if !identifierByte(s[i]) {
			return false
		}
	}
	return s != "" && !(s[0] >= '0' && s[0] <= '9')
}

// identifierByte reports whether c may be in an ASCII identifier.
func identifierByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// splitStruct splits "net/http.Request" into "net/http" and "Request".
func splitStruct(st string) (pkg, name string) {
	slash := strings.LastIndexByte(st, '/')
	dot := strings.IndexByte(st[slash+1:], '.')
	if dot < 0 {
		return "", st
	}
	return st[:slash+1+dot], st[slash+1+dot+1:]
}

type typeInfo struct {
	b      *Binary
	region []byte // types..etypes
	types  uint64
	relocs map[uint64]uint64 // PIE pointers the file leaves zero, by address; built on need
}

// nameOffs finds the encoded name s (a flags byte, its length as a varint, the bytes)
// and returns the offsets of each copy from moduledata.types.
func (ti *typeInfo) nameOffs(s string) []int32 {
	enc := binary.AppendUvarint(nil, uint64(len(s)))
	enc = append(enc, s...)
	var offs []int32
	for at := 0; ; {
		i := bytes.Index(ti.region[at:], enc)
		if i < 0 {
			return offs
		}
		if pos := at + i; pos > 0 && ti.region[pos-1] < 1<<4 { // a flags byte
			offs = append(offs, int32(pos-1))
		}
		at += i + 1
	}
}

// nameOffsEnding finds the encoded names "*PKG" + suffix, PKG any identifier (a
// pointer type's string), and returns their offsets from moduledata.types.
func (ti *typeInfo) nameOffsEnding(suffix string) []int32 {
	var offs []int32
	for at := 0; ; {
		i := bytes.Index(ti.region[at:], []byte(suffix))
		if i < 0 {
			return offs
		}
		end := at + i + len(suffix)
		at += i + 1
		start := at - 1 // back over the package's name to its '*'
		for start > 0 && identifierByte(ti.region[start-1]) {
			start--
		}
		if start < 3 || ti.region[start-1] != '*' || start == at-1 {
			continue
		}
		// The '*' starts the name: a one-byte length before it (type strings are
		// short), and a flags byte before that.
		n := end - (start - 1)
		if n >= 1<<7 || int(ti.region[start-2]) != n || ti.region[start-3] >= 1<<4 {
			continue
		}
		offs = append(offs, int32(start-3))
	}
}

// nameAt reads the name at nameOff from moduledata.types.
func (ti *typeInfo) nameAt(off int32) (string, bool) {
	if off < 0 || int(off) >= len(ti.region) {
		return "", false
	}
	return decodeName(ti.region[off:])
}

// decodeName reads an abi.Name: flags, varint length, bytes.
func decodeName(data []byte) (string, bool) {
	if len(data) < 2 {
		return "", false
	}
	n, w := binary.Uvarint(data[1:])
	if w <= 0 || n > maxTypeInfoNameSize || uint64(len(data)-1-w) < n {
		return "", false
	}
	return string(data[1+w : 1+w+int(n)]), true
}

// structFields reads the field names and offsets of the StructType at addr.
func (ti *typeInfo) structFields(addr uint64) (map[string]uint64, bool) {
	le := binary.LittleEndian
	head := ti.b.at(addr+abiStructFieldsOff, 24)
	if head == nil {
		return nil, false
	}
	ptr, n, c := ti.pointer(addr+abiStructFieldsOff), le.Uint64(head[8:]), le.Uint64(head[16:])
	if n != c || n > maxTypeInfoFields {
		return nil, false
	}
	fields := ti.b.at(ptr, n*abiStructFieldSize)
	if n > 0 && fields == nil {
		return nil, false
	}
	offs := make(map[string]uint64, n)
	for i := uint64(0); i < n; i++ {
		name := ti.b.at(ti.pointer(ptr+i*abiStructFieldSize), 1+binary.MaxVarintLen32)
		if name == nil {
			return nil, false
		}
		n, w := binary.Uvarint(name[1:])
		full := ti.b.at(ti.pointer(ptr+i*abiStructFieldSize), 1+uint64(w)+n)
		s, ok := decodeName(full)
		if w <= 0 || !ok {
			return nil, false
		}
		offs[s] = le.Uint64(fields[i*abiStructFieldSize+16:])
	}
	return offs, true
}

// pointer reads the pointer at addr. A position-independent binary's pointers are
// relocated at load: Go's linker also writes the target in place, but other linkers
// may leave zero there and only the relocation entry knows it.
func (ti *typeInfo) pointer(addr uint64) uint64 {
	w := ti.b.at(addr, 8)
	if w == nil {
		return 0
	}
	if v := binary.LittleEndian.Uint64(w); v != 0 || !ti.b.PIE {
		return v
	}
	if ti.relocs == nil {
		ti.relocs = ti.b.relativeRelocations()
	}
	return ti.relocs[addr]
}

// relativeRelocations maps each address a R_*_RELATIVE relocation patches to its value.
func (b *Binary) relativeRelocations() map[uint64]uint64 {
	relocs := map[uint64]uint64{}
	for _, s := range b.elf.Sections {
		if s.Type != elf.SHT_RELA {
			continue
		}
		_, data := b.sectionData(s.Name)
		le := binary.LittleEndian
		for i := 0; i+24 <= len(data); i += 24 {
			typ := uint32(le.Uint64(data[i+8:]))
			if (b.elf.Machine == elf.EM_X86_64 && typ == uint32(elf.R_X86_64_RELATIVE)) ||
				(b.elf.Machine == elf.EM_AARCH64 && typ == uint32(elf.R_AARCH64_RELATIVE)) {
				relocs[le.Uint64(data[i:])] = le.Uint64(data[i+16:])
			}
		}
	}
	return relocs
}
