package offsets

import (
	"bufio"
	"bytes"
	"os"
	"testing"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// The parsers must survive any input. These targets call the inner functions, without
// the recover() that guards the public API, so that a panic is a finding. Seeds are
// real Go binaries built for the test; `make test` runs each target briefly.

// fuzzSpecs is a probe's worth of needs, without importing the probes.
var fuzzSpecs = []Spec{{
	Name: "fuzz", Module: "std", MinVersion: "go1.20",
	Functions: []FuncSpec{{Symbols: []string{"main.main", "runtime.main"}, Returns: true}},
	Fields:    []FieldSpec{{FieldRef: FieldRef{"runtime.g", "m"}}, {FieldRef: FieldRef{"os.File", "file"}, Optional: true}},
}}

func seedBinary(f *testing.F) []byte {
	f.Helper()
	path, err := testenv.BuildProgram("./e2e/testdata/hello", "CGO_ENABLED=0")
	if err != nil {
		f.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	return data
}

func FuzzParse(f *testing.F) {
	data := seedBinary(f)
	f.Add(data)
	f.Add(data[:4096])
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := parse("fuzz", data)
		if err != nil {
			return
		}
		analyze(b, fuzzSpecs)
		b.contextParents()
		b.SymtabFunctions("main.main")
		b.PclntabFunctions("main.main")
	})
}

func FuzzPclntab(f *testing.F) {
	b, err := parse("seed", seedBinary(f))
	if err != nil {
		f.Fatal(err)
	}
	_, tab := b.sectionData(".gopclntab")
	f.Add(tab)
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := parsePclntab(data)
		if err != nil {
			return
		}
		p.forEach(func([]byte, uint64, uint64, uint8) bool { return true })
	})
}

func FuzzDWARF(f *testing.F) {
	b, err := parse("seed", seedBinary(f))
	if err != nil {
		f.Fatal(err)
	}
	abbrev, err := b.readAllSection("abbrev")
	if err != nil {
		f.Fatal(err)
	}
	info, err := b.readAllSection("info")
	if err != nil {
		f.Fatal(err)
	}
	// A real unit is large for a fuzzer; a hand-made one reaches every path in a few
	// dozen bytes: a "runtime" unit with a struct os.File holding a member file at 8.
	f.Add(abbrev, info[:min(len(info), 4096)])
	synthAbbrev := []byte{
		1, 0x11, 1, 0x03, 0x08, 0, 0, // compile_unit, children: name string
		2, 0x13, 1, 0x03, 0x08, 0, 0, // structure_type, children: name string
		3, 0x0d, 0, 0x03, 0x08, 0x38, 0x0f, 0, 0, // member: name string, location udata
		0,
	}
	body := []byte{4, 0, 0, 0, 0, 0, 8} // DWARF 4, abbrev offset 0, 8-byte addresses
	body = append(body, 1)
	body = append(body, "runtime\x00"...)
	body = append(body, 2)
	body = append(body, "os.File\x00"...)
	body = append(body, 3)
	body = append(body, "file\x00"...)
	body = append(body, 8, 0, 0)
	synthInfo := append([]byte{byte(len(body)), 0, 0, 0}, body...)
	f.Add(synthAbbrev, synthInfo)
	f.Fuzz(func(t *testing.T, abbrev, info []byte) {
		w := &dwarfWalker{
			r:       &countingReader{r: bufio.NewReader(bytes.NewReader(info))},
			abbrevs: map[uint64]abbrevTable{},
			abbrev:  abbrev,
			want:    map[string]map[string]bool{"runtime.g": {"m": true}, "os.File": {"file": true}},
			found:   map[FieldRef]uint64{},
			strs:    func(string) ([]byte, error) { return nil, nil },
		}
		w.run()
	})
}

// The hand-made unit of FuzzDWARF is read as intended.
func TestDWARFWalkerSynthetic(t *testing.T) {
	abbrev := []byte{1, 0x11, 1, 0x03, 0x08, 0, 0, 2, 0x13, 1, 0x03, 0x08, 0, 0, 3, 0x0d, 0, 0x03, 0x08, 0x38, 0x0f, 0, 0, 0}
	body := append([]byte{4, 0, 0, 0, 0, 0, 8, 1}, "runtime\x00"...)
	body = append(append(body, 2), "os.File\x00"...)
	body = append(append(body, 3), "file\x00"...)
	body = append(body, 8, 0, 0)
	info := append([]byte{byte(len(body)), 0, 0, 0}, body...)
	w := &dwarfWalker{
		r: &countingReader{r: bufio.NewReader(bytes.NewReader(info))}, abbrevs: map[uint64]abbrevTable{}, abbrev: abbrev,
		want: map[string]map[string]bool{"os.File": {"file": true}}, found: map[FieldRef]uint64{},
	}
	if err := w.run(); err != nil || w.found[FieldRef{"os.File", "file"}] != 8 || len(w.found) != 1 {
		t.Errorf("found %v, err %v", w.found, err)
	}
}

// FuzzTypeInfo runs the type descriptor search on any types section: the seed is the
// real one of a binary without DWARF, in which it finds os.File and runtime.g.
func FuzzTypeInfo(f *testing.F) {
	path, err := testenv.BuildProgram("./e2e/testdata/hello", "CGO_ENABLED=0", "GOFLAGS=-ldflags=-w")
	if err != nil {
		f.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	b, err := parse("seed", data)
	if err != nil {
		f.Fatal(err)
	}
	types, etypes, err := b.typeRange()
	if err != nil {
		f.Fatal(err)
	}
	fields := []FieldRef{{"os.File", "file"}, {"runtime.g", "m"}, {"internal/poll.FD", "Sysfd"}}
	seed := &typeInfo{b: b, region: b.at(types, etypes-types), types: types}
	found := map[FieldRef]uint64{}
	if seed.find(fields, found); len(found) == 0 {
		f.Fatal("the seed's type descriptors have none of the fields")
	}
	f.Add(seed.region)
	f.Fuzz(func(t *testing.T, region []byte) {
		ti := &typeInfo{b: b, region: region, types: types}
		ti.find(fields, map[FieldRef]uint64{})
	})
}
