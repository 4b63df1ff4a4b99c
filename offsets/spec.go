package offsets

import (
	"fmt"
	"go/version"
	"strings"

	"golang.org/x/mod/semver"
)

// Spec declares what one probe needs from a target binary. Probe packages own their
// Spec; analysis resolves it without knowing what the probe does.
type Spec struct {
	Name string // "net/http.server"
	// Module whose version bounds the probe: "std" for the standard library (the
	// binary's Go version), else a module path.
	Module     string
	MinVersion string // oldest supported version of Module, "" for any
	Functions  []FuncSpec
	Fields     []FieldSpec
}

// FuncSpec is a function the probe attaches to.
type FuncSpec struct {
	Symbols []string // alternative names across versions; the first present is used
	Returns bool     // also attach at each of its RET instructions
}

// FieldSpec is a struct field the probe reads.
type FieldSpec struct {
	FieldRef
	Since    string // first version of Module that has the field, "" for all
	Before   string // first version that no longer has it, "" for none
	Optional bool   // the probe works without it
}

// Report is what analysis found: the `launch inspect` JSON contract.
type Report struct {
	Path      string        `json:"path"`
	GoVersion string        `json:"go_version"`
	Arch      string        `json:"arch"`
	PIE       bool          `json:"pie"`
	Stripped  bool          `json:"stripped"`
	DWARF     bool          `json:"dwarf"`
	Modules   []Module      `json:"modules"`
	Probes    []ProbeReport `json:"probes"`
}

// ProbeReport says whether one probe can be enabled, and with what.
type ProbeReport struct {
	Name    string   `json:"name"`
	Enabled bool     `json:"enabled"`
	Reason  string   `json:"reason"` // why it is disabled; "" when enabled
	Uprobes []Uprobe `json:"uprobes"`
	Fields  []Field  `json:"fields"`
}

// Uprobe is one function to attach to, by ELF file offset.
type Uprobe struct {
	Symbol  string   `json:"symbol"`
	Offset  uint64   `json:"offset"`
	Returns []uint64 `json:"returns"`
}

// Field is a resolved struct field offset. Offset is nil when Source is "missing".
type Field struct {
	Name   string  `json:"name"`
	Offset *uint64 `json:"offset"`
	Source string  `json:"source"` // dwarf, db, typeinfo or missing
}

// Field sources.
const (
	SourceDWARF   = "dwarf"
	SourceMissing = "missing"
)

// Uprobe returns the resolved function, if the probe has it.
func (p *ProbeReport) Uprobe(symbol string) (Uprobe, bool) {
	for _, u := range p.Uprobes {
		if u.Symbol == symbol {
			return u, true
		}
	}
	return Uprobe{}, false
}

// FieldOffset returns a resolved field's offset.
func (p *ProbeReport) FieldOffset(f FieldRef) (uint64, bool) {
	for _, fl := range p.Fields {
		if fl.Name == f.String() && fl.Offset != nil {
			return *fl.Offset, true
		}
	}
	return 0, false
}

// Analyze resolves every spec against the binary. One probe's failure never affects
// another's: each report says why it is disabled.
func Analyze(b *Binary, specs []Spec) (r *Report, err error) {
	defer faultsArePanics()()
	defer recoverAs(&err, b.Path)
	return analyze(b, specs), nil
}

func analyze(b *Binary, specs []Spec) *Report {
	r := &Report{Path: b.Path, GoVersion: b.GoVersion, Arch: b.Arch, PIE: b.PIE, Stripped: b.Stripped, DWARF: b.DWARF, Modules: b.Modules}

	// One pass over the function table and one over DWARF for all probes.
	var names []string
	var fields []FieldRef
	for _, s := range specs {
		for _, f := range s.Functions {
			names = append(names, f.Symbols...)
		}
		for _, f := range s.Fields {
			fields = append(fields, f.FieldRef)
		}
	}
	funcs, funcErr := b.Functions(names...)
	offsets, dwarfErr := b.DWARFFieldOffsets(fields)
	for _, s := range specs {
		r.Probes = append(r.Probes, resolve(b, s, funcs, funcErr, offsets, dwarfErr))
	}
	return r
}

func resolve(b *Binary, s Spec, funcs map[string]Func, funcErr error, offsets map[FieldRef]uint64, dwarfErr error) ProbeReport {
	p := ProbeReport{Name: s.Name, Uprobes: []Uprobe{}, Fields: []Field{}}
	var reasons []string
	disable := func(format string, args ...any) { reasons = append(reasons, fmt.Sprintf(format, args...)) }

	ver := b.GoVersion
	if s.Module != "std" {
		ver = b.ModuleVersion(s.Module)
	}
	switch {
	case ver == "":
		disable("the program does not use %s", s.Module)
	case s.MinVersion != "" && compareVersions(ver, s.MinVersion) < 0:
		disable("%s %s is older than the oldest supported, %s", s.Module, ver, s.MinVersion)
	}

	for _, f := range s.Functions {
		fn, ok := Func{}, false
		for _, sym := range f.Symbols {
			if fn, ok = funcs[sym]; ok {
				break
			}
		}
		switch {
		case funcErr != nil:
			disable("cannot read functions: %v", funcErr)
		case !ok:
			disable("%s not in the binary (the program does not use it)", strings.Join(f.Symbols, " or "))
		default:
			u := Uprobe{Symbol: fn.Name, Offset: fn.Offset, Returns: []uint64{}}
			if f.Returns {
				rets, err := b.ReturnOffsets(fn)
				if err != nil {
					disable("return sites: %v", err)
				}
				u.Returns = append(u.Returns, rets...)
			}
			p.Uprobes = append(p.Uprobes, u)
		}
	}

	var missing []string
	for _, f := range s.Fields {
		if ver != "" && !inRange(ver, f.Since, f.Before) {
			continue // the field does not exist in this version
		}
		fl := Field{Name: f.String(), Source: SourceMissing}
		if off, ok := offsets[f.FieldRef]; ok {
			fl.Offset, fl.Source = &off, SourceDWARF
		} else if !f.Optional {
			missing = append(missing, f.String())
		}
		p.Fields = append(p.Fields, fl)
	}
	if len(missing) > 0 {
		why := "not described in its DWARF"
		switch {
		case !b.DWARF:
			why = "no DWARF to read them from (built with -ldflags=-w, or stripped)"
		case dwarfErr != nil:
			why = dwarfErr.Error()
		}
		disable("field offsets unknown, %s: %s", why, strings.Join(missing, ", "))
	}
	p.Enabled = len(reasons) == 0
	p.Reason = strings.Join(reasons, "; ")
	return p
}

// compareVersions orders Go versions ("go1.22.3") or module versions ("v1.60.1").
func compareVersions(a, b string) int {
	if strings.HasPrefix(a, "go") {
		return version.Compare(a, b)
	}
	return semver.Compare(a, b)
}

// inRange reports whether since <= v < before, an empty bound being open.
func inRange(v, since, before string) bool {
	return (since == "" || compareVersions(v, since) >= 0) && (before == "" || compareVersions(v, before) < 0)
}

// VersionAtLeast reports whether v (a Go or module version) is min or later.
func VersionAtLeast(v, min string) bool { return compareVersions(v, min) >= 0 }
