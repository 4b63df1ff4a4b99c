package offsets

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/zlib"
)

// Struct field offsets from DWARF, read as a stream.
//
// debug/dwarf needs .debug_info whole and decompressed: 40 MB and more for a large
// binary, and most of the start gate's time. This walker decompresses it as a stream
// and decodes DIEs one by one, keeping nothing but the answers. The Go linker puts
// every type in the "runtime" compilation unit, so other units are skipped unparsed
// and the walk stops once every wanted type has been seen.

// FieldRef names a struct field: Struct is the DWARF type name ("net/http.Request").
type FieldRef struct {
	Struct string
	Field  string
}

func (f FieldRef) String() string { return f.Struct + "." + f.Field }

// Package is the import path of the package that declares the struct.
func (f FieldRef) Package() string {
	slash := strings.LastIndexByte(f.Struct, '/')
	if dot := strings.IndexByte(f.Struct[slash+1:], '.'); dot >= 0 {
		return f.Struct[:slash+1+dot]
	}
	return f.Struct
}

// DWARFFieldOffsets returns the byte offsets of the wanted fields that the binary's
// DWARF describes. Fields it lacks (or all, without DWARF) are absent from the result.
func (b *Binary) DWARFFieldOffsets(fields []FieldRef) (map[FieldRef]uint64, error) {
	if !b.DWARF {
		return map[FieldRef]uint64{}, nil
	}
	abbrevData, err := b.readAllSection("abbrev")
	if err != nil {
		return nil, err
	}
	info, err := b.openSection("info")
	if err != nil {
		return nil, err
	}
	defer info.Close()
	w := &dwarfWalker{
		r:       &countingReader{r: bufio.NewReaderSize(info, 64<<10)},
		abbrevs: map[uint64]abbrevTable{},
		abbrev:  abbrevData,
		want:    map[string]map[string]bool{},
		found:   map[FieldRef]uint64{},
		strs:    func(sec string) ([]byte, error) { return b.readAllSection(sec) },
	}
	for _, f := range fields {
		if w.want[f.Struct] == nil {
			w.want[f.Struct] = map[string]bool{}
		}
		w.want[f.Struct][f.Field] = true
	}
	if err := w.run(); err != nil {
		return nil, fmt.Errorf("DWARF: %w", err)
	}
	return w.found, nil
}

// openSection streams .debug_<name>: SHF_COMPRESSED (zlib), .zdebug_<name>, or plain.
func (b *Binary) openSection(name string) (io.ReadCloser, error) {
	if s, data := b.sectionData(".zdebug_" + name); s != nil {
		if data == nil || len(data) < 12 || string(data[:4]) != "ZLIB" {
			return nil, fmt.Errorf(".zdebug_%s: unreadable", name)
		}
		return zlib.NewReader(bytes.NewReader(data[12:]))
	}
	s := b.elf.Section(".debug_" + name)
	if s == nil {
		return nil, fmt.Errorf("no .debug_%s", name)
	}
	raw := b.slice(s.Offset, s.FileSize)
	if raw == nil || s.Type == elf.SHT_NOBITS {
		return nil, fmt.Errorf(".debug_%s: outside the file", name)
	}
	if s.Flags&elf.SHF_COMPRESSED == 0 {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}
	if len(raw) < 24 {
		return nil, fmt.Errorf(".debug_%s: truncated compression header", name)
	}
	switch t := elf.CompressionType(binary.LittleEndian.Uint32(raw)); t {
	case elf.COMPRESS_ZLIB:
		return zlib.NewReader(bytes.NewReader(raw[24:]))
	default:
		return nil, fmt.Errorf(".debug_%s: compressed with %v, which is not supported (zlib is)", name, t)
	}
}

// readAllSection reads a small DWARF section whole (abbreviations, strings).
func (b *Binary) readAllSection(name string) ([]byte, error) {
	r, err := b.openSection(name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

type countingReader struct {
	r *bufio.Reader
	n uint64
}

func (c *countingReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}

func (c *countingReader) skip(n uint64) error {
	for n > 0 {
		chunk := min(n, 1<<30)
		d, err := c.r.Discard(int(chunk))
		c.n += uint64(d)
		if err != nil {
			return err
		}
		n -= chunk
	}
	return nil
}

func (c *countingReader) read(n int) ([]byte, error) {
	buf := make([]byte, n)
	_, err := io.ReadFull(c.r, buf)
	c.n += uint64(n)
	return buf, err
}

type abbrevAttr struct {
	attr, form uint64
	implicit   int64 // DW_FORM_implicit_const's value
}

type abbrevEntry struct {
	tag      uint64
	children bool
	attrs    []abbrevAttr
}

type abbrevTable map[uint64]abbrevEntry

type dwarfWalker struct {
	r       *countingReader
	abbrev  []byte
	abbrevs map[uint64]abbrevTable
	want    map[string]map[string]bool
	found   map[FieldRef]uint64
	seen    int // wanted struct types seen
	strs    func(section string) ([]byte, error)
	strData map[string][]byte
	nameBuf []byte

	// the current unit
	version  uint16
	offSize  int // 4 or 8 (64-bit DWARF)
	addrSize int
}

const (
	tagCompileUnit   = 0x11
	tagStructureType = 0x13
	tagMember        = 0x0d
	attrName         = 0x03
	attrMemberLoc    = 0x38
	opPlusUconst     = 0x23
)

var errTruncated = errors.New("truncated .debug_info")

func (w *dwarfWalker) run() error {
	for w.seen < len(w.want) {
		start := w.r.n
		length, err := w.readUint(4)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return errTruncated
		}
		w.offSize = 4
		if length == 0xffffffff {
			w.offSize = 8
			if length, err = w.readUint(8); err != nil {
				return errTruncated
			}
		}
		end := w.r.n + length
		if err := w.unit(end); err != nil {
			return err
		}
		if w.r.n > end {
			return fmt.Errorf("unit at %#x overruns its length", start)
		}
		if err := w.r.skip(end - w.r.n); err != nil {
			return errTruncated
		}
	}
	return nil
}

// unit reads one unit's header and, if it is the runtime's, its DIEs.
func (w *dwarfWalker) unit(end uint64) error {
	v, err := w.readUint(2)
	if err != nil {
		return errTruncated
	}
	w.version = uint16(v)
	var abbrevOff uint64
	switch {
	case w.version >= 2 && w.version <= 4:
		if abbrevOff, err = w.readUint(w.offSize); err != nil {
			return errTruncated
		}
		a, err := w.r.ReadByte()
		if err != nil {
			return errTruncated
		}
		w.addrSize = int(a)
	case w.version == 5:
		unitType, err := w.r.ReadByte()
		if err != nil {
			return errTruncated
		}
		a, err := w.r.ReadByte()
		if err != nil {
			return errTruncated
		}
		w.addrSize = int(a)
		if abbrevOff, err = w.readUint(w.offSize); err != nil {
			return errTruncated
		}
		if unitType != 0x01 { // not DW_UT_compile: type, partial or split units
			return nil
		}
	default:
		return fmt.Errorf("DWARF version %d is not supported", w.version)
	}
	if w.addrSize != 4 && w.addrSize != 8 {
		return fmt.Errorf("address size %d", w.addrSize)
	}
	table, err := w.abbrevTable(abbrevOff)
	if err != nil {
		return err
	}

	// The unit's own DIE: skip every unit but the runtime's.
	code, err := w.readUleb()
	if err != nil || code == 0 {
		return err
	}
	ab, ok := table[code]
	if !ok || ab.tag != tagCompileUnit {
		return nil
	}
	name, _, err := w.attrs(ab)
	if err != nil || string(name) != "runtime" || !ab.children {
		return err
	}
	return w.runtimeUnit(table, end)
}

// runtimeUnit reads the runtime unit's DIEs: types are its children.
func (w *dwarfWalker) runtimeUnit(table abbrevTable, end uint64) error {
	depth := 1
	var current string // wanted struct type whose members are being read
	for depth > 0 && w.r.n < end && (w.seen < len(w.want) || current != "") {
		code, err := w.readUleb()
		if err != nil {
			return errTruncated
		}
		if code == 0 {
			depth--
			if depth == 1 {
				current = ""
			}
			continue
		}
		ab, ok := table[code]
		if !ok {
			return fmt.Errorf("unknown abbreviation %d", code)
		}
		name, loc, err := w.attrs(ab)
		if err != nil {
			return err
		}
		switch {
		case depth == 1 && ab.tag == tagStructureType && w.want[string(name)] != nil:
			if _, dup := w.found[FieldRef{string(name), ""}]; !dup {
				current = string(name)
				w.found[FieldRef{current, ""}] = 0 // marks the type seen; removed below
				w.seen++
			}
		case depth == 2 && ab.tag == tagMember && current != "" && w.want[current][string(name)] && loc >= 0:
			w.found[FieldRef{current, string(name)}] = uint64(loc)
		}
		if ab.children {
			depth++
		}
	}
	for s := range w.want {
		delete(w.found, FieldRef{s, ""})
	}
	return nil
}

// attrs reads a DIE's attributes, keeping its name and data member location (-1 if
// none or not a constant offset). The name is valid until the next call.
func (w *dwarfWalker) attrs(ab abbrevEntry) (name []byte, loc int64, err error) {
	loc = -1
	for _, a := range ab.attrs {
		form := a.form
		if form == 0x16 { // DW_FORM_indirect
			if form, err = w.readUleb(); err != nil {
				return nil, -1, errTruncated
			}
		}
		switch {
		case a.attr == attrName:
			if name, err = w.readString(form); err != nil {
				return nil, -1, err
			}
		case a.attr == attrMemberLoc:
			if loc, err = w.readLocation(form, a.implicit); err != nil {
				return nil, -1, err
			}
		default:
			if err := w.skipForm(form); err != nil {
				return nil, -1, err
			}
		}
	}
	return name, loc, nil
}

func (w *dwarfWalker) readString(form uint64) ([]byte, error) {
	switch form {
	case 0x08: // string, inline
		w.nameBuf = w.nameBuf[:0]
		for {
			c, err := w.r.ReadByte()
			if err != nil {
				return nil, errTruncated
			}
			if c == 0 {
				return w.nameBuf, nil
			}
			w.nameBuf = append(w.nameBuf, c)
		}
	case 0x0e, 0x1f: // strp, line_strp
		off, err := w.readUint(w.offSize)
		if err != nil {
			return nil, errTruncated
		}
		sec := "str"
		if form == 0x1f {
			sec = "line_str"
		}
		data, err := w.stringSection(sec)
		if err != nil || off >= uint64(len(data)) {
			return nil, nil // unnamed for our purposes
		}
		return cstring(data[off:]), nil
	}
	return nil, w.skipForm(form) // strx and others: not resolvable here, treated as unnamed
}

func (w *dwarfWalker) stringSection(sec string) ([]byte, error) {
	if data, ok := w.strData[sec]; ok {
		return data, nil
	}
	data, err := w.strs(sec)
	if w.strData == nil {
		w.strData = map[string][]byte{}
	}
	w.strData[sec] = data
	return data, err
}

func (w *dwarfWalker) readLocation(form uint64, implicit int64) (int64, error) {
	switch form {
	case 0x0b, 0x05, 0x06, 0x07: // data1, data2, data4, data8
		v, err := w.readUint(dataSize(form))
		return int64(v), err
	case 0x0f:
		v, err := w.readUleb()
		return int64(v), err
	case 0x0d:
		v, err := sleb(w.r)
		if err != nil {
			return -1, errTruncated
		}
		return v, nil
	case 0x21:
		return implicit, nil
	case 0x18, 0x0a, 0x09: // exprloc, block1, block: DW_OP_plus_uconst N
		var n uint64
		var err error
		if form == 0x0a {
			var c byte
			c, err = w.r.ReadByte()
			n = uint64(c)
		} else {
			n, err = w.readUleb()
		}
		if err != nil || n > 1<<20 {
			return -1, errTruncated
		}
		expr, err := w.r.read(int(n))
		if err != nil {
			return -1, errTruncated
		}
		if len(expr) > 1 && expr[0] == opPlusUconst {
			v, k := binary.Uvarint(expr[1:])
			if k > 0 && 1+k == len(expr) {
				return int64(v), nil
			}
		}
		return -1, nil
	}
	return -1, w.skipForm(form)
}

// skipForm passes over one attribute value.
func (w *dwarfWalker) skipForm(form uint64) error {
	var n uint64
	switch form {
	case 0x0c, 0x0b, 0x11, 0x25, 0x29: // flag, data1, ref1, strx1, addrx1
		n = 1
	case 0x05, 0x12, 0x26, 0x2a: // data2, ref2, strx2, addrx2
		n = 2
	case 0x27, 0x2b: // strx3, addrx3
		n = 3
	case 0x06, 0x13, 0x1c, 0x28, 0x2c: // data4, ref4, ref_sup4, strx4, addrx4
		n = 4
	case 0x07, 0x14, 0x20, 0x24: // data8, ref8, ref_sig8, ref_sup8
		n = 8
	case 0x1e: // data16
		n = 16
	case 0x01: // addr
		n = uint64(w.addrSize)
	case 0x10: // ref_addr: an address in DWARF 2, an offset after
		n = uint64(w.offSize)
		if w.version == 2 {
			n = uint64(w.addrSize)
		}
	case 0x0e, 0x17, 0x1d, 0x1f, 0x1f20, 0x1f21: // strp, sec_offset, strp_sup, line_strp, GNU alt refs
		n = uint64(w.offSize)
	case 0x19, 0x21: // flag_present, implicit_const: no data
		return nil
	case 0x0d, 0x0f, 0x15, 0x1a, 0x1b, 0x22, 0x23, 0x1f01, 0x1f02: // LEB128 values
		for { // any length: a signed value may not fit a uint64 decoder
			c, err := w.r.ReadByte()
			if err != nil {
				return errTruncated
			}
			if c&0x80 == 0 {
				return nil
			}
		}
	case 0x08: // string
		for {
			c, err := w.r.ReadByte()
			if err != nil {
				return errTruncated
			}
			if c == 0 {
				return nil
			}
		}
	case 0x0a: // block1
		c, err := w.r.ReadByte()
		if err != nil {
			return errTruncated
		}
		n = uint64(c)
	case 0x03: // block2
		v, err := w.readUint(2)
		if err != nil {
			return err
		}
		n = v
	case 0x04: // block4
		v, err := w.readUint(4)
		if err != nil {
			return err
		}
		n = v
	case 0x09, 0x18: // block, exprloc
		v, err := w.readUleb()
		if err != nil {
			return err
		}
		n = v
	default:
		return fmt.Errorf("unknown attribute form %#x", form)
	}
	if err := w.r.skip(n); err != nil {
		return errTruncated
	}
	return nil
}

func (w *dwarfWalker) readUint(n int) (uint64, error) {
	var v uint64
	for i := 0; i < n; i++ {
		c, err := w.r.ReadByte()
		if err != nil {
			if i == 0 {
				return 0, err
			}
			return 0, errTruncated
		}
		v |= uint64(c) << (8 * i)
	}
	return v, nil
}

func (w *dwarfWalker) readUleb() (uint64, error) {
	v, err := binary.ReadUvarint(w.r)
	if err != nil {
		return 0, errTruncated
	}
	return v, nil
}

func dataSize(form uint64) int {
	switch form {
	case 0x0b:
		return 1
	case 0x05:
		return 2
	case 0x06:
		return 4
	}
	return 8
}

// sleb reads a signed LEB128 number (DWARF's, not Go's zigzag varint).
func sleb(r io.ByteReader) (int64, error) {
	var v int64
	var shift uint
	for {
		c, err := r.ReadByte()
		if err != nil {
			return 0, err
		}
		if shift > 63 {
			return 0, errors.New("LEB128 overflow")
		}
		v |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return v, nil
		}
	}
}

// abbrevTable parses (and caches) the abbreviation table at off.
func (w *dwarfWalker) abbrevTable(off uint64) (abbrevTable, error) {
	if t, ok := w.abbrevs[off]; ok {
		return t, nil
	}
	if off >= uint64(len(w.abbrev)) {
		return nil, fmt.Errorf("abbreviation table offset %#x outside .debug_abbrev", off)
	}
	r := bytes.NewReader(w.abbrev[off:])
	uleb := func() uint64 {
		v, err := binary.ReadUvarint(r)
		if err != nil {
			return 0
		}
		return v
	}
	t := abbrevTable{}
	for {
		code := uleb()
		if code == 0 {
			break
		}
		e := abbrevEntry{tag: uleb()}
		c, err := r.ReadByte()
		if err != nil {
			return nil, errors.New("truncated .debug_abbrev")
		}
		e.children = c != 0
		for {
			a := abbrevAttr{attr: uleb(), form: uleb()}
			if a.attr == 0 && a.form == 0 {
				break
			}
			if a.form == 0x21 {
				v, err := sleb(r)
				if err != nil {
					return nil, errors.New("truncated .debug_abbrev")
				}
				a.implicit = v
			}
			if r.Len() == 0 {
				return nil, errors.New("truncated .debug_abbrev")
			}
			e.attrs = append(e.attrs, a)
		}
		t[code] = e
	}
	w.abbrevs[off] = t
	return t, nil
}
