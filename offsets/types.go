package offsets

import (
	"bufio"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// TypeNames names the Go types of one running executable by their address in the
// process, as fmt's %T would ("*net.OpError"): a probe sees an error's dynamic type as
// a pointer to the runtime's type descriptor. It reads the runtime's own type data
// (moduledata.types), so it needs neither symbols nor DWARF. The executable is read on
// the first use, not while the app waits at the start gate.
type TypeNames struct {
	path string

	mu            sync.Mutex
	initErr       error
	f             *os.File
	loads         []elf.ProgHeader
	types, etypes uint64 // link-time addresses
	bias          uint64 // load address - link address, once known
	biasKnown     bool
	names         map[uint64]string
}

const maxTypeNames = 1024 // cache bound: error types are few

// NewTypeNames names the types of processes running the executable at path.
func NewTypeNames(path string) *TypeNames {
	return &TypeNames{path: path, names: map[uint64]string{}}
}

func (tn *TypeNames) open() (err error) {
	b, err := Open(tn.path)
	if err != nil {
		return err
	}
	defer b.Close()
	defer faultsArePanics()()
	defer recoverAs(&err, b.Path)
	if tn.types, tn.etypes, err = b.typeRange(); err != nil {
		return err
	}
	for _, p := range b.elf.Progs {
		if p.Type == elf.PT_LOAD {
			tn.loads = append(tn.loads, p.ProgHeader)
		}
	}
	tn.biasKnown = !b.PIE
	tn.f, err = os.Open(tn.path)
	return err
}

// Close releases the file.
func (tn *TypeNames) Close() error {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	if tn.f != nil {
		return tn.f.Close()
	}
	return nil
}

// Name names the type at addr in process pid, which runs the executable, or returns ""
// when addr is not one of its types.
func (tn *TypeNames) Name(pid int, addr uint64) string {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	if tn.ready(pid) != nil {
		return ""
	}
	if name, ok := tn.names[addr]; ok {
		return name
	}
	name := tn.read(addr - tn.bias)
	if len(tn.names) < maxTypeNames {
		tn.names[addr] = name
	}
	return name
}

// NameAtLink names the type whose descriptor is at link address addr in the executable,
// or returns "": no process needed (a probe that learnt the app's load bias itself
// reports link addresses, and may be read after the app exited).
func (tn *TypeNames) NameAtLink(addr uint64) string {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	if tn.f == nil && tn.initErr == nil {
		tn.initErr = tn.open()
	}
	if tn.initErr != nil || addr == 0 {
		return ""
	}
	return tn.read(addr)
}

// ready reads the executable, and where process pid loaded it, once.
func (tn *TypeNames) ready(pid int) error {
	if tn.f == nil && tn.initErr == nil {
		tn.initErr = tn.open()
	}
	if tn.initErr != nil {
		return tn.initErr
	}
	if !tn.biasKnown {
		bias, err := loadBias(pid, tn.path, tn.loads)
		if err != nil {
			return err
		}
		tn.bias, tn.biasKnown = bias, true
	}
	return nil
}

// Addresses are the addresses in process pid of the types at link addresses addrs
// (PointerTypeAddrs'), by the same keys.
func (tn *TypeNames) Addresses(pid int, addrs map[string]uint64) (map[string]uint64, error) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	if err := tn.ready(pid); err != nil {
		return nil, err
	}
	out := make(map[string]uint64, len(addrs))
	for k, a := range addrs {
		out[k] = a + tn.bias
	}
	return out, nil
}

func (tn *TypeNames) read(typ uint64) string {
	if typ < tn.types || typ >= tn.etypes {
		return ""
	}
	var hdr [abiTypeStrOff + 4]byte
	if !tn.readAt(hdr[:], typ) {
		return ""
	}
	str := int64(int32(binary.LittleEndian.Uint32(hdr[abiTypeStrOff:])))
	at := uint64(int64(tn.types) + str)
	if str <= 0 || at >= tn.etypes {
		return ""
	}
	// A name: a flags byte, its length as a varint, the bytes.
	var head [1 + binary.MaxVarintLen32]byte
	if !tn.readAt(head[:], at) {
		return ""
	}
	n, w := binary.Uvarint(head[1:])
	if w <= 0 || n == 0 || n > 1024 {
		return ""
	}
	name := make([]byte, n)
	if !tn.readAt(name, at+1+uint64(w)) {
		return ""
	}
	if hdr[abiTypeTFlagOff]&abiTFlagExtraStar != 0 && name[0] == '*' {
		name = name[1:]
	}
	return string(name)
}

// readAt reads at a link-time address.
func (tn *TypeNames) readAt(buf []byte, vaddr uint64) bool {
	for _, p := range tn.loads {
		if vaddr >= p.Vaddr && vaddr+uint64(len(buf)) <= p.Vaddr+p.Filesz {
			_, err := tn.f.ReadAt(buf, int64(p.Off+vaddr-p.Vaddr))
			return err == nil
		}
	}
	return false
}

// loadBias is where a position-independent executable was loaded in process pid,
// relative to its link addresses: from the mapping of its first loadable segment,
// found by device and inode (paths differ across mount namespaces and symlinks).
func loadBias(pid int, path string, loads []elf.ProgHeader) (uint64, error) {
	if len(loads) == 0 {
		return 0, errors.New("no loadable segments")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, err
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	first := loads[0]
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset major:minor inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		inode, _ := strconv.ParseUint(fields[4], 10, 64)
		off, _ := strconv.ParseUint(fields[2], 16, 64)
		if inode != st.Ino || !sameDevice(fields[3], st.Dev) || off != first.Off&^(first.Align-1) {
			continue
		}
		start, _ := strconv.ParseUint(strings.SplitN(fields[0], "-", 2)[0], 16, 64)
		return start - first.Vaddr&^(first.Align-1), nil
	}
	return 0, fmt.Errorf("%s is not mapped in process %d", path, pid)
}

// sameDevice compares a maps "major:minor" (hex) with a stat device number.
func sameDevice(majMin string, dev uint64) bool {
	parts := strings.SplitN(majMin, ":", 2)
	if len(parts) != 2 {
		return false
	}
	major, err1 := strconv.ParseUint(parts[0], 16, 32)
	minor, err2 := strconv.ParseUint(parts[1], 16, 32)
	if err1 != nil || err2 != nil {
		return false
	}
	// Linux's encoding of dev_t (glibc's makedev).
	return dev == (minor&0xff)|((major&0xfff)<<8)|((minor&^0xff)<<12)|((major&^0xfff)<<32)
}

// Relocation tells where a process has an executable's link addresses.
type Relocation struct {
	path  string
	pie   bool
	loads []elf.ProgHeader
}

// Relocation is where processes running b have its link addresses.
func (b *Binary) Relocation() Relocation {
	r := Relocation{path: b.Path, pie: b.PIE}
	for _, p := range b.elf.Progs {
		if p.Type == elf.PT_LOAD {
			r.loads = append(r.loads, p.ProgHeader)
		}
	}
	return r
}

// Bias is what to add to a link address for process pid: 0 for an executable at fixed
// addresses; for a position-independent one, an error until pid runs it (the app's
// exec at the gate's release).
func (r Relocation) Bias(pid int) (uint64, error) {
	if !r.pie {
		return 0, nil
	}
	return loadBias(pid, r.path, r.loads)
}
