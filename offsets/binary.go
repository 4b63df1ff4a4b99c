// Package offsets knows where things are in a Go executable, without running it: its
// Go and module versions, function addresses (from the symbol table, or from the
// pclntab when stripped), RET sites, and struct field offsets. Probes declare what they
// need as a Spec; Analyze resolves it.
//
// The file is memory-mapped and read in place: analysis runs inside the start gate, so
// it must be fast and must not copy a 100 MB binary onto the heap.
package offsets

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"fmt"
	"go/version"
	"os"
	"runtime/debug"
	"strings"

	"golang.org/x/sys/unix"
)

// MinGoVersion is the oldest Go release whose binaries can be analysed (the pclntab
// layout and register ABI the probes rely on).
const MinGoVersion = "go1.20"

// Binary is a Go executable opened for analysis.
type Binary struct {
	Path      string
	GoVersion string // "go1.26.8", without the GOEXPERIMENT suffix
	// Experiments are the GOEXPERIMENTs the binary was built with, beyond its
	// release's defaults ("go1.24.11 X:noswissmap", "go1.26.8-X:jsonv2").
	Experiments []string
	Arch        string  // "amd64" or "arm64"
	PIE         bool    // position-independent (ET_DYN)
	Stripped    bool    // no ELF symbol table
	DWARF       bool    // has .debug_info (compressed or not)
	Modules     Modules // the main module first, then dependencies
	data        []byte  // the whole file, mapped
	unmap       func()
	elf         *elf.File
	text        uint64 // runtime.text, the base of pclntab offsets; 0 until needed
}

// Module is a module compiled into the binary.
type Module struct {
	Path    string `json:"path"`
	Version string `json:"version"`
}

// Error says what is wrong with the file at Path.
type Error struct {
	Path string
	Err  error
}

func (e *Error) Error() string { return e.Path + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Open maps the file at path and reads its headers and build information.
func Open(path string) (*Binary, error) {
	// Non-blocking: opening a FIFO for reading would wait for a writer; the mode
	// check below refuses it instead.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, &Error{path, describeOpenError(err)}
	}
	defer f.Close()
	st, err := f.Stat()
	switch {
	case err != nil:
		return nil, &Error{path, err}
	case st.IsDir():
		return nil, &Error{path, errors.New("is a directory, not a program")}
	case !st.Mode().IsRegular():
		return nil, &Error{path, errors.New("not a regular file")}
	case st.Size() == 0:
		return nil, &Error{path, errors.New("empty file, not a program")}
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, &Error{path, fmt.Errorf("map it into memory: %w", err)}
	}
	b, err := Parse(path, data)
	if err != nil {
		unix.Munmap(data)
		return nil, err
	}
	b.unmap = func() { unix.Munmap(data) }
	return b, nil
}

func describeOpenError(err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return errors.New("no such file")
	case errors.Is(err, os.ErrPermission):
		return errors.New("permission denied: the launcher cannot read it")
	}
	return err
}

// Close releases the mapping. Nothing read from the Binary may be used afterwards.
func (b *Binary) Close() {
	if b.unmap != nil {
		b.unmap()
		b.unmap = nil
	}
}

// Parse reads a binary already in memory. It never panics, whatever data holds.
func Parse(path string, data []byte) (b *Binary, err error) {
	defer faultsArePanics()()
	defer recoverAs(&err, path)
	return parse(path, data)
}

func parse(path string, data []byte) (*Binary, error) {
	if len(data) < 4 || string(data[:4]) != elf.ELFMAG {
		return nil, &Error{path, errors.New("not an ELF file (not a Linux program)")}
	}
	ef, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, &Error{path, fmt.Errorf("corrupt or truncated ELF file: %w", err)}
	}
	b := &Binary{Path: path, data: data, elf: ef}
	switch {
	case ef.Class != elf.ELFCLASS64 || ef.Data != elf.ELFDATA2LSB:
		return nil, &Error{path, fmt.Errorf("%v %v ELF: only 64-bit little-endian programs are supported", ef.Class, ef.Data)}
	case ef.Machine == elf.EM_X86_64:
		b.Arch = "amd64"
	case ef.Machine == elf.EM_AARCH64:
		b.Arch = "arm64"
	default:
		return nil, &Error{path, fmt.Errorf("architecture %v is not supported (amd64 and arm64 are)", ef.Machine)}
	}
	b.PIE = ef.Type == elf.ET_DYN
	b.Stripped = ef.Section(".symtab") == nil
	b.DWARF = ef.Section(".debug_info") != nil || ef.Section(".zdebug_info") != nil

	bi, err := buildinfo.Read(bytes.NewReader(data))
	if err != nil {
		return nil, &Error{path, fmt.Errorf("not a Go program, or built without build information: %v", err)}
	}
	b.GoVersion, b.Experiments = splitGoVersion(bi.GoVersion)
	if !version.IsValid(b.GoVersion) {
		return nil, &Error{path, fmt.Errorf("unrecognised Go version %q", bi.GoVersion)}
	}
	if version.Compare(b.GoVersion, MinGoVersion) < 0 {
		return nil, &Error{path, fmt.Errorf("built with %s; the oldest Go supported is %s", b.GoVersion, MinGoVersion)}
	}
	b.Modules = append(b.Modules, Module{Path: bi.Main.Path, Version: bi.Main.Version})
	for _, m := range bi.Deps {
		if m.Replace != nil {
			m = m.Replace
		}
		b.Modules = append(b.Modules, Module{Path: m.Path, Version: m.Version})
	}
	return b, nil
}

// splitGoVersion splits the experiments off a build's Go version: the go command
// writes "go1.24.11 X:noswissmap" (before 1.26) or "go1.26.8-X:jsonv2,foo".
func splitGoVersion(v string) (release string, experiments []string) {
	for _, sep := range []string{" X:", "-X:"} {
		if rel, exps, ok := strings.Cut(v, sep); ok {
			return rel, strings.Split(exps, ",")
		}
	}
	return v, nil
}

// recoverAs turns a panic (a parser bug on hostile input, or a fault reading a mapped
// file that shrank under us) into an error: analysis runs in the launcher, which must
// go on and start the app.
func recoverAs(err *error, path string) {
	r := recover()
	if r == nil {
		return
	}
	// A fault reading the mapping (debug.SetPanicOnFault) comes with its address; a
	// bug's panic does not. The usual cause: the file was cut short while mapped.
	if _, fault := r.(interface{ Addr() uintptr }); fault {
		*err = &Error{path, errors.New("the file changed while it was being read (truncated or rewritten in place): read it again once it is complete")}
		return
	}
	*err = &Error{path, fmt.Errorf("cannot analyse (internal error: %v)", r)}
}

// ModuleVersion returns the version of module path compiled in, or "".
func (b *Binary) ModuleVersion(path string) string { return b.Modules.Version(path) }

// Modules are the modules compiled into a binary.
type Modules []Module

// Version is the version of module path, "" if it is not among them.
func (ms Modules) Version(path string) string {
	for _, m := range ms {
		if m.Path == path {
			return m.Version
		}
	}
	return ""
}

// PackageModule is the module that holds package pkg in b, and its version: "std" and
// the Go release for the standard library (vendored copies included); "", "" when no
// module of b holds it.
func (b *Binary) PackageModule(pkg string) (path, version string) {
	best := -1
	for i, m := range b.Modules {
		if (pkg == m.Path || strings.HasPrefix(pkg, m.Path+"/")) && (best < 0 || len(m.Path) > len(b.Modules[best].Path)) {
			best = i
		}
	}
	switch {
	case best >= 0:
		return b.Modules[best].Path, b.Modules[best].Version
	case IsStd(pkg):
		return "std", b.GoVersion
	}
	return "", ""
}

// IsStd reports whether pkg is a standard library package: its first path element has
// no dot ("net/http", "vendor/golang.org/x/net/http2/hpack").
func IsStd(pkg string) bool {
	first, _, _ := strings.Cut(pkg, "/")
	return !strings.Contains(first, ".")
}

// sectionData returns an uncompressed section's bytes in place, or nil if the section
// is absent, has no file contents, or lies outside the file.
func (b *Binary) sectionData(name string) (*elf.Section, []byte) {
	s := b.elf.Section(name)
	if s == nil || s.Type == elf.SHT_NOBITS || s.Flags&elf.SHF_COMPRESSED != 0 {
		return s, nil
	}
	return s, b.slice(s.Offset, s.FileSize)
}

// slice returns data[off:off+n], or nil if that is not inside the file.
func (b *Binary) slice(off, n uint64) []byte {
	if off > uint64(len(b.data)) || n > uint64(len(b.data))-off {
		return nil
	}
	return b.data[off : off+n]
}

// FileOffset converts a virtual address to the file offset a uprobe attaches at:
// vaddr - segment vaddr + segment offset, for the loadable segment holding it.
func (b *Binary) FileOffset(vaddr uint64) (uint64, bool) {
	for _, p := range b.elf.Progs {
		if p.Type == elf.PT_LOAD && vaddr >= p.Vaddr && vaddr-p.Vaddr < p.Filesz {
			return vaddr - p.Vaddr + p.Off, true
		}
	}
	return 0, false
}

// at returns n bytes of the file at virtual address vaddr, or nil.
func (b *Binary) at(vaddr, n uint64) []byte {
	off, ok := b.FileOffset(vaddr)
	if !ok {
		return nil
	}
	return b.slice(off, n)
}

// faultsArePanics makes a fault on the mapping (the file shrank) a recoverable panic
// in this goroutine; call the returned function to restore.
func faultsArePanics() func() {
	old := debug.SetPanicOnFault(true)
	return func() { debug.SetPanicOnFault(old) }
}
