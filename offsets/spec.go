package offsets

import (
	"fmt"
	"go/version"
	"slices"
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
	// Package, for a Module that holds more than the probe instruments (std): a
	// program with none of its Functions does not use it, and the probe says so, its
	// functions being all Optional then (a program links only what it calls).
	Package   string
	Functions []FuncSpec
	Fields    []FieldSpec
	// Experiments are GOEXPERIMENTs that change what the probe reads (a runtime
	// layout): a binary built with one is refused, with the reason.
	Experiments []string
	// Program is a main package that reaches the functions and types above: the
	// offsets tracker builds it with each version of Module and reads the fields'
	// offsets from its DWARF. Specs of one module may share it.
	Program string
	// LeftTo says why, in the program b, another probe traces all this one would (a
	// driver's own probe under database/sql): the probe is then off, as for a
	// program that does not use it. "" (or nil) where it is needed.
	LeftTo func(b *Binary) string `json:"-"`
}

// FuncSpec is a function the probe attaches to.
type FuncSpec struct {
	Symbols     []string // alternative names across versions; the first present is used
	Returns     bool     // also attach at each of its RET instructions
	ReturnsOnly bool     // attach at its RETs only, not at its entry (implies Returns)
	Optional    bool     // the probe works without it (a program that does not use it lacks it)
	// Needs: probe it only in a program that also has one of these functions (where
	// they are what makes it the right place); without them it counts as absent.
	Needs []string
	// Unless: probe it only in a program that has none of these functions (where
	// another probe sees what it would, at less cost); with one, it counts as absent.
	Unless []string
	// Calls: probe its direct calls to these functions (CallOffsets) instead of its
	// entry - where the callee's arguments are in registers, in this caller only. A
	// function that makes none (the callee inlined) disables the probe, saying so.
	Calls []string
	// FramedEntry: the entry probe may sit after the frame pointer's set-up of a
	// function without a stack check (FramedEntryOffset: the compiler's wrappers),
	// where the stack is a word lower - the probe's program reads no stack there, or
	// knows it (Uprobe.EntryProbe past Offset says it is so).
	FramedEntry bool
}

// FieldSpec is a struct field the probe reads.
type FieldSpec struct {
	FieldRef
	// Versions of the field's own module (the Go release for a standard library
	// field, whatever the spec's Module): the first that has it, "" for all, and the
	// first that no longer has it, "" for none.
	Since    string
	Before   string
	Optional bool // the probe works without it
}

// Report is what analysis found: the `launch inspect` JSON contract.
type Report struct {
	Path      string `json:"path"`
	GoVersion string `json:"go_version"`
	// GOEXPERIMENTs beyond the release's defaults; absent when none.
	Experiments []string      `json:"experiments,omitempty"`
	Arch        string        `json:"arch"`
	PIE         bool          `json:"pie"`
	Stripped    bool          `json:"stripped"`
	DWARF       bool          `json:"dwarf"`
	Modules     Modules       `json:"modules"`
	Probes      []ProbeReport `json:"probes"`
}

// ProbeReport says whether one probe can be enabled, and with what.
type ProbeReport struct {
	Name     string   `json:"name"`
	Enabled  bool     `json:"enabled"`
	Reason   string   `json:"reason"` // why it is disabled; "" when enabled
	Uprobes  []Uprobe `json:"uprobes"`
	Fields   []Field  `json:"fields"`
	reasons  []string
	absences int // how many of the reasons say the program does not use something
}

// Unused reports whether the probe is disabled only because the program does not use
// what it probes (its module, or its functions): nothing to say to a user.
func (p *ProbeReport) Unused() bool {
	return !p.Enabled && p.absences > 0 && p.absences == len(p.reasons)
}

// Uprobe is one function to attach to, by ELF file offsets: its entry, where its entry
// probe goes (EntryProbeOffset: at or just after the entry; nil when the function is
// probed at its RETs only) and its RET instructions.
type Uprobe struct {
	Symbol     string   `json:"symbol"`
	Offset     uint64   `json:"offset"`
	EntryProbe *uint64  `json:"entry_probe"`
	Returns    []uint64 `json:"returns"`
	// Calls are its calls to the functions FuncSpec.Calls names, probed instead of
	// its entry; absent for the others.
	Calls []uint64 `json:"calls,omitempty"`
}

// Field is a resolved struct field offset. Offset is nil when Source is "missing".
type Field struct {
	Name   string  `json:"name"`
	Offset *uint64 `json:"offset"`
	Source string  `json:"source"` // dwarf, db, typeinfo or missing
}

// Field sources, in the order they are tried.
const (
	SourceDWARF    = "dwarf"    // the target's own debug information
	SourceDB       = "db"       // the embedded offsets database, for this exact version
	SourceTypeInfo = "typeinfo" // the target's runtime type descriptors
	SourceMissing  = "missing"
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

// SourceCount is how many of a report's fields came from one source.
type SourceCount struct {
	Source string
	Fields int
}

// FieldSources counts the fields of the probes by source, in order of first use.
func FieldSources(probes ...ProbeReport) []SourceCount {
	var counts []SourceCount
	for _, p := range probes {
		for _, f := range p.Fields {
			i := slices.IndexFunc(counts, func(c SourceCount) bool { return c.Source == f.Source })
			if i < 0 {
				i = len(counts)
				counts = append(counts, SourceCount{Source: f.Source})
			}
			counts[i].Fields++
		}
	}
	return counts
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
func Analyze(b *Binary, specs []Spec) (*Report, error) {
	r, err := AnalyzeFunctions(b, specs)
	if err != nil {
		return nil, err
	}
	return r, r.AddFields(b, specs)
}

// AnalyzeFunctions is the fast half of Analyze: versions and functions (from the symbol
// table or pclntab), no field offsets. The start gate attaches uprobes with it while
// AddFields reads DWARF.
func AnalyzeFunctions(b *Binary, specs []Spec) (r *Report, err error) {
	defer faultsArePanics()()
	defer recoverAs(&err, b.Path)
	r = &Report{Path: b.Path, GoVersion: b.GoVersion, Experiments: b.Experiments, Arch: b.Arch, PIE: b.PIE, Stripped: b.Stripped, DWARF: b.DWARF, Modules: b.Modules}
	var names []string
	for _, s := range specs {
		for _, f := range s.Functions {
			names = append(append(append(append(names, f.Symbols...), f.Needs...), f.Calls...), f.Unless...)
		}
	}
	funcs, funcErr := b.Functions(names...)
	for _, s := range specs {
		r.Probes = append(r.Probes, resolveFunctions(b, s, funcs, funcErr))
	}
	return r, nil
}

// AddFields resolves the field offsets of the probes still enabled (one pass over
// DWARF for all of them) and settles which probes are enabled. A probe whose functions
// are missing needs no offsets: reading DWARF for it would only delay the app.
func (r *Report) AddFields(b *Binary, specs []Spec) (err error) {
	defer faultsArePanics()()
	defer recoverAs(&err, b.Path)
	var fields []moduleField
	for i, s := range specs {
		if r.Probes[i].Enabled {
			fields = append(fields, s.fieldsFor(b)...)
		}
	}
	if len(fields) == 0 {
		return nil
	}
	res := resolveOffsets(b, fields)
	for i, s := range specs {
		if r.Probes[i].Enabled {
			resolveFields(b, s, &r.Probes[i], res)
		}
	}
	return nil
}

// moduleField is a field a spec of module at version needs.
type moduleField struct {
	FieldRef
	module, version string
}

// offsetResolution is where each field's offset came from, and what each source said.
type offsetResolution struct {
	b           *Binary
	fields      map[FieldRef]resolvedOffset
	dwarfErr    error
	db          *Database
	dbErr       error
	typeinfoErr error
	guesses     map[FieldRef]uint64 // nearest-version offsets typeinfo did not confirm
}

type resolvedOffset struct {
	offset uint64
	source string
}

// resolveOffsets finds each field's offset: in the target's DWARF; else in the
// database, for exactly the target's version of the field's module; else in the
// target's type descriptors. A version the database has not measured (newer than it,
// say) gets no offset from it: its nearest version's offset is only a guess, and type
// descriptors that confirm it have the offset anyway. Never guess.
func resolveOffsets(b *Binary, fields []moduleField) offsetResolution {
	res := offsetResolution{b: b, fields: map[FieldRef]resolvedOffset{}, guesses: map[FieldRef]uint64{}}
	refs := make([]FieldRef, len(fields))
	for i, f := range fields {
		refs[i] = f.FieldRef
	}
	dwarf, err := b.DWARFFieldOffsets(refs)
	res.dwarfErr = err
	res.db, res.dbErr = database()
	var rest []FieldRef
	for _, f := range fields {
		if _, done := res.fields[f.FieldRef]; done {
			continue
		}
		if off, ok := dwarf[f.FieldRef]; ok {
			res.fields[f.FieldRef] = resolvedOffset{off, SourceDWARF}
			continue
		}
		// The database measured default builds; an experiment may move fields.
		if res.dbErr == nil && (f.module != "std" || len(b.Experiments) == 0) {
			off, exact, ok := res.db.Lookup(f.module, f.version, f.FieldRef)
			if ok && exact {
				res.fields[f.FieldRef] = resolvedOffset{off, SourceDB}
				continue
			}
			if ok {
				res.guesses[f.FieldRef] = off
			}
		}
		res.fields[f.FieldRef] = resolvedOffset{source: SourceMissing}
		rest = append(rest, f.FieldRef)
	}
	if len(rest) > 0 {
		typeinfo, err := b.typeInfoFieldOffsets(rest)
		res.typeinfoErr = err
		for _, f := range rest {
			if off, ok := typeinfo[f]; ok {
				res.fields[f] = resolvedOffset{off, SourceTypeInfo}
				delete(res.guesses, f)
			}
		}
	}
	return res
}

// why says why fields of module at version have no offset from any source.
func (res offsetResolution) why(module, version string) string {
	var parts []string
	switch {
	case !res.b.DWARF:
		parts = append(parts, "no DWARF (built with -ldflags=-w, or stripped)")
	case res.dwarfErr != nil:
		parts = append(parts, "DWARF: "+res.dwarfErr.Error())
	default:
		parts = append(parts, "not in its DWARF")
	}
	switch {
	case res.dbErr != nil:
		parts = append(parts, res.dbErr.Error())
	case module == "std" && len(res.b.Experiments) > 0:
		parts = append(parts, "built with GOEXPERIMENT="+strings.Join(res.b.Experiments, ",")+": the offsets database has default builds only")
	case version == "":
	default:
		_, exact, _ := res.db.Lookup(module, version, FieldRef{})
		switch newest := res.db.Newest(module); {
		case exact:
			parts = append(parts, "not in the offsets database for "+version)
		case newest == "":
			parts = append(parts, "the offsets database has no "+module)
		case len(res.guesses) > 0:
			parts = append(parts, fmt.Sprintf("%s is not in the offsets database (newest %s) and its nearest version's offsets are not confirmed: not guessing", version, newest))
		default:
			parts = append(parts, fmt.Sprintf("%s is not in the offsets database (newest %s)", version, newest))
		}
	}
	if res.typeinfoErr != nil {
		parts = append(parts, "type descriptors: "+res.typeinfoErr.Error())
	} else {
		parts = append(parts, "not in its type descriptors")
	}
	return strings.Join(parts, "; ")
}

// analyze is Analyze without the recover, for fuzzing.
func analyze(b *Binary, specs []Spec) *Report {
	r := &Report{}
	var names []string
	var fields []moduleField
	for _, s := range specs {
		for _, f := range s.Functions {
			names = append(append(append(append(names, f.Symbols...), f.Needs...), f.Calls...), f.Unless...)
		}
		fields = append(fields, s.fieldsFor(b)...)
	}
	funcs, funcErr := b.Functions(names...)
	res := resolveOffsets(b, fields)
	for _, s := range specs {
		p := resolveFunctions(b, s, funcs, funcErr)
		resolveFields(b, s, &p, res)
		r.Probes = append(r.Probes, p)
	}
	return r
}

// version is the version of the spec's module in b, "" if b does not have it.
func (s Spec) version(b *Binary) string {
	if s.Module == "std" {
		return b.GoVersion
	}
	return b.ModuleVersion(s.Module)
}

// fieldsFor lists the fields the spec needs in b: those its module's version has. A
// field of another version would never be found, and looking for it would read all of
// DWARF. Each field is looked up in the database under the module of its own package
// (a gRPC probe reads structs of grpc, of golang.org/x/net and of the standard
// library), at the version b has of that module.
func (s Spec) fieldsFor(b *Binary) []moduleField {
	var refs []moduleField
	for _, f := range s.Fields {
		if module, version := b.PackageModule(f.Package()); version == "" || inRange(version, f.Since, f.Before) {
			refs = append(refs, moduleField{f.FieldRef, module, version})
		}
	}
	return refs
}

func (p *ProbeReport) disable(format string, args ...any) {
	p.reasons = append(p.reasons, fmt.Sprintf(format, args...))
	p.Enabled = false
	p.Reason = strings.Join(p.reasons, "; ")
}

func resolveFunctions(b *Binary, s Spec, funcs map[string]Func, funcErr error) ProbeReport {
	p := ProbeReport{Name: s.Name, Enabled: true, Uprobes: []Uprobe{}, Fields: []Field{}}
	ver := s.version(b)
	tooOld := false
	switch {
	case ver == "":
		// Its functions are not there either: saying so for each would bury this.
		p.disable("the program does not use %s", s.Module)
		p.absences++
		return p
	case s.MinVersion != "" && compareVersions(ver, s.MinVersion) < 0:
		p.disable("%s %s is older than the oldest supported, %s", s.Module, ver, s.MinVersion)
		tooOld = true // what it lacks follows from that: not said too
	}
	if s.LeftTo != nil {
		if why := s.LeftTo(b); why != "" {
			p.disable("%s", why)
			p.absences++ // nothing is lost: nothing to say
			return p
		}
	}
	for _, e := range b.Experiments {
		if slices.Contains(s.Experiments, e) {
			p.disable("built with GOEXPERIMENT=%s, which changes what the probe reads: build without it", e)
		}
	}
	for _, f := range s.Functions {
		fn, ok := Func{}, false
		for _, sym := range f.Symbols {
			if fn, ok = funcs[sym]; ok {
				break
			}
		}
		if ok && len(f.Needs) > 0 && !slices.ContainsFunc(f.Needs, func(sym string) bool { _, has := funcs[sym]; return has }) {
			ok = false
		}
		excluded := ""
		for _, sym := range f.Unless {
			if _, has := funcs[sym]; ok && has {
				ok, excluded = false, sym
			}
		}
		switch {
		case funcErr != nil:
			p.disable("cannot read functions: %v", funcErr)
		case !ok && f.Optional, !ok && tooOld:
		case !ok && excluded != "":
			p.disable("%s is probed only in a program without %s, which this one has", strings.Join(f.Symbols, " or "), excluded)
			p.absences++
		case !ok:
			what := strings.Join(f.Symbols, " or ")
			if len(f.Needs) > 0 {
				what += " with " + strings.Join(f.Needs, " or ")
			}
			p.disable("%s not in the binary (the program does not use it)", what)
			p.absences++
		default:
			u := Uprobe{Symbol: fn.Name, Offset: fn.Offset, Returns: []uint64{}}
			if len(f.Calls) > 0 {
				u.Calls = resolveCalls(b, &p, fn, f.Calls, funcs)
			} else if !f.ReturnsOnly {
				entry := b.EntryProbeOffset(fn)
				if f.FramedEntry {
					entry = b.FramedEntryOffset(fn)
				}
				u.EntryProbe = &entry
			}
			if f.Returns || f.ReturnsOnly {
				rets, err := b.ReturnOffsets(fn)
				if err != nil {
					p.disable("return sites: %v", err)
				}
				u.Returns = append(u.Returns, rets...)
			}
			p.Uprobes = append(p.Uprobes, u)
		}
	}
	switch {
	case funcErr != nil || len(s.Functions) == 0 || len(p.Uprobes) > 0:
	case s.Package != "":
		p.disable("the program does not use %s", s.Package)
		p.absences++
	case p.Enabled: // the module is linked, but none of the probe's functions (all optional)
		p.disable("the program calls none of %s's functions the probe attaches to", s.Module)
		p.absences++
	}
	return p
}

// resolveCalls finds fn's direct calls to the functions named, disabling p where
// there is none: the callee was inlined into fn (or fn changed), and nothing else
// sees what the probe needs where it needs it.
func resolveCalls(b *Binary, p *ProbeReport, fn Func, names []string, funcs map[string]Func) []uint64 {
	var callees []Func
	for _, name := range names {
		if c, ok := funcs[name]; ok {
			callees = append(callees, c)
		}
	}
	what := strings.Join(names, " or ")
	if len(callees) == 0 {
		p.disable("%s calls %s, which is not in the binary (inlined?): nowhere to probe", fn.Name, what)
		return nil
	}
	sites, err := b.CallOffsets(fn, callees...)
	switch {
	case err != nil:
		p.disable("call sites: %v", err)
	case len(sites) == 0:
		p.disable("%s makes no call to %s (inlined?): nowhere to probe", fn.Name, what)
	}
	return sites
}

func resolveFields(b *Binary, s Spec, p *ProbeReport, res offsetResolution) {
	type moduleVersion struct{ module, version string }
	missing := map[moduleVersion][]string{}
	var order []moduleVersion
	for _, f := range s.Fields {
		module, version := b.PackageModule(f.Package())
		if version != "" && !inRange(version, f.Since, f.Before) {
			continue // the field does not exist in this version
		}
		fl := Field{Name: f.String(), Source: SourceMissing}
		if r, ok := res.fields[f.FieldRef]; ok && r.source != SourceMissing {
			off := r.offset
			fl.Offset, fl.Source = &off, r.source
		} else if !f.Optional {
			mv := moduleVersion{module, version}
			if _, seen := missing[mv]; !seen {
				order = append(order, mv)
			}
			missing[mv] = append(missing[mv], f.String())
		}
		p.Fields = append(p.Fields, fl)
	}
	for _, mv := range order {
		p.disable("field offsets unknown (%s): %s", strings.Join(missing[mv], ", "), res.why(mv.module, mv.version))
	}
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
