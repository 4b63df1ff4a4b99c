package offsets_test

import (
	"bytes"
	"fmt"
	"go/version"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
	"github.com/otel-go-launcher/otel-go-launcher/offsets"
	"github.com/otel-go-launcher/otel-go-launcher/probes"
)

var (
	sourceTargetsOnce sync.Once
	sourceTargets_    []testenv.Target
)

// sourceTargets are targets() plus plain and stripped builds with the releases between
// them: every Go minor release from 1.21 to 1.27.
func sourceTargets(t *testing.T) []testenv.Target {
	all := targets(t)
	sourceTargetsOnce.Do(func() {
		sourceTargets_ = append(slices.Clone(all), testenv.BuildTargets(t, "httpserver", testenv.MoreToolchains, []testenv.Variant{testenv.Plain, testenv.Stripped})...)
	})
	return sourceTargets_
}

// stdSpecs are the probes of standard library packages: all that the httpserver
// target (a program of the standard library alone) can enable.
func stdSpecs() []offsets.Spec {
	var specs []offsets.Spec
	for _, s := range probes.Specs() {
		if s.Module == "std" {
			specs = append(specs, s)
		}
	}
	return specs
}

// probeFields are the standard library fields any probe reads in a binary of Go
// version v: the standard library's probes' and those other probes read of standard
// library types (a gRPC probe's TCP addresses, Go 1.27's HTTP/2 server request under
// x/net's spec). A standard library field's Since and Before are Go releases, whatever
// the spec's module.
func probeFields(v string) []offsets.FieldRef {
	var fields []offsets.FieldRef
	for _, s := range probes.Specs() {
		for _, f := range s.Fields {
			switch {
			case !offsets.IsStd(f.Package()), slices.Contains(fields, f.FieldRef):
			case (f.Since == "" || version.Compare(v, f.Since) >= 0) && (f.Before == "" || version.Compare(v, f.Before) < 0):
				fields = append(fields, f.FieldRef)
			}
		}
	}
	return fields
}

// withDWARF pairs each target that has DWARF with its stripped twin, if built, and the
// field offsets its DWARF gives.
func withDWARF(t *testing.T, tgs []testenv.Target) (pairs []struct {
	plain, stripped testenv.Target
	hasStripped     bool
	dwarf           map[offsets.FieldRef]uint64
	goVersion       string
}) {
	for _, tg := range tgs {
		b := open(t, tg.Path)
		if !b.DWARF {
			continue
		}
		dw, err := b.DWARFFieldOffsets(probeFields(b.GoVersion))
		if err != nil {
			t.Fatalf("%s: %v", tg, err)
		}
		p := struct {
			plain, stripped testenv.Target
			hasStripped     bool
			dwarf           map[offsets.FieldRef]uint64
			goVersion       string
		}{plain: tg, dwarf: dw, goVersion: b.GoVersion}
		if v, ok := testenv.StrippedTwin(tg.Variant); ok {
			p.stripped, p.hasStripped = find(tgs, tg.Toolchain, v)
		}
		pairs = append(pairs, p)
	}
	return pairs
}

// Type metadata gives every field the probes read, at the offset DWARF gives: on every
// Go release from 1.20 to 1.27, stripped or not, PIE, cgo (external link), arm64.
func TestTypeInfoAgreesWithDWARF(t *testing.T) {
	covered := map[string]bool{}
	defer func() {
		for minor := 21; minor <= 27; minor++ {
			if !covered[fmt.Sprintf("go1.%d", minor)] {
				t.Errorf("no stripped build of Go 1.%d checked", minor)
			}
		}
	}()
	for _, p := range withDWARF(t, sourceTargets(t)) {
		covered[version.Lang(p.goVersion)] = covered[version.Lang(p.goVersion)] || p.hasStripped
		want := probeFields(p.goVersion)
		if len(p.dwarf) != len(want) {
			t.Errorf("%s: DWARF has %d of the %d fields: %v", p.plain, len(p.dwarf), len(want), p.dwarf)
		}
		check := []testenv.Target{p.plain}
		if p.hasStripped {
			check = append(check, p.stripped)
		}
		for _, tg := range check {
			got, err := open(t, tg.Path).TypeInfoFieldOffsets(want)
			if err != nil {
				t.Errorf("%s: %v", tg, err)
				continue
			}
			for f, off := range p.dwarf {
				if g, ok := got[f]; !ok || g != off {
					t.Errorf("%s: %s: typeinfo %d (found %v), DWARF %d", tg, f, g, ok, off)
				}
			}
			if len(got) != len(p.dwarf) {
				t.Errorf("%s: typeinfo found %d fields, DWARF %d", tg, len(got), len(p.dwarf))
			}
		}
	}
}

// The embedded database agrees with the DWARF of every binary the tests build with a
// release it covers, field by field, and knows each of those releases exactly.
func TestDatabaseAgreesWithDWARF(t *testing.T) {
	db, err := offsets.EmbeddedDatabase()
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, p := range withDWARF(t, sourceTargets(t)) {
		if version.Compare(p.goVersion, "go1.21") < 0 {
			continue // older than the database
		}
		for _, f := range probeFields(p.goVersion) {
			off, exact, ok := db.Lookup("std", p.goVersion, f)
			dw, inDWARF := p.dwarf[f]
			if !exact || ok != inDWARF || off != dw {
				t.Errorf("%s: %s: database %d (exact %v, found %v), DWARF %d (found %v)", p.plain, f, off, exact, ok, dw, inDWARF)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("nothing checked")
	}
}

// The database is well formed: releases from go1.21.0 in order, every field's runs
// ordered, not overlapping, not adjacent with equal offsets (collapsed), and encoding
// it again gives the committed file byte for byte.
func TestDatabaseIsCanonical(t *testing.T) {
	db, err := offsets.EmbeddedDatabase()
	if err != nil {
		t.Fatal(err)
	}
	std := db.Modules["std"]
	if std == nil || len(std.Versions) < 60 || std.Versions[0] != "go1.21.0" {
		t.Fatalf("std versions: %v", std)
	}
	index := map[string]int{}
	for i, v := range std.Versions {
		index[v] = i
	}
	for f, runs := range std.Fields {
		for i, r := range runs {
			from, ok1 := index[r.From]
			to, ok2 := index[r.To]
			if !ok1 || !ok2 || from > to {
				t.Errorf("%s: run %+v", f, r)
			}
			if i > 0 {
				prev := runs[i-1]
				if index[prev.To] >= from || (index[prev.To]+1 == from && prev.Offset == r.Offset) {
					t.Errorf("%s: runs %+v then %+v", f, prev, r)
				}
			}
		}
	}
	again, err := db.Filter(func(string, string) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	enc, err := again.Encode()
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile("database.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(append(enc, '\n'), committed) {
		t.Errorf("re-encoding the database changes it: the tracker's output is not canonical")
	}
}

// Merge collapses equal runs, keeps a field absent from a version out of its runs, and
// refuses a field measured at only some versions.
func TestDatabaseMerge(t *testing.T) {
	db := &offsets.Database{}
	m := func(v string, offs map[string]uint64) offsets.Measured {
		return offsets.Measured{Module: "std", Version: v, Wanted: []string{"p.T.a", "p.T.b"}, Offsets: offs}
	}
	err := db.Merge(m("go1.22.0", map[string]uint64{"p.T.a": 8}), m("go1.21.0", map[string]uint64{"p.T.a": 8, "p.T.b": 16}),
		m("go1.22.1", map[string]uint64{"p.T.a": 16, "p.T.b": 24}), m("go1.23.0", map[string]uint64{"p.T.a": 16, "p.T.b": 24}))
	if err != nil {
		t.Fatal(err)
	}
	// A field never measured, which a version's merge alone would refuse: the tracker
	// measures every version again.
	if got := db.Missing("std", []string{"p.T.a", "p.T.c"}); len(got) != 1 || got[0] != "p.T.c" {
		t.Errorf("missing %v, want [p.T.c]", got)
	}
	if err := db.Merge(offsets.Measured{Module: "std", Version: "go1.23.0", Wanted: []string{"p.T.a", "p.T.b", "p.T.c"}, Offsets: map[string]uint64{"p.T.c": 0}}); err == nil {
		t.Error("a new field merged at one version of four")
	}
	a, b := offsets.FieldRef{Struct: "p.T", Field: "a"}, offsets.FieldRef{Struct: "p.T", Field: "b"}
	if got := db.Modules["std"].Fields["p.T.a"]; len(got) != 2 || got[0] != (offsets.OffsetRange{From: "go1.21.0", To: "go1.22.0", Offset: 8}) ||
		got[1] != (offsets.OffsetRange{From: "go1.22.1", To: "go1.23.0", Offset: 16}) {
		t.Errorf("a: %+v", got)
	}
	cases := []struct {
		v             string
		f             offsets.FieldRef
		off           uint64
		exact, exists bool
	}{
		{"go1.21.0", b, 16, true, true},
		{"go1.22.0", b, 0, true, false}, // measured: not there
		{"go1.22.1", a, 16, true, true},
		{"go1.22.5", a, 16, false, true}, // not measured: the nearest below is a guess
		{"go1.30.0", b, 24, false, true},
		{"go1.20.0", a, 8, false, true},
	}
	for _, c := range cases {
		off, exact, ok := db.Lookup("std", c.v, c.f)
		if off != c.off || exact != c.exact || ok != c.exists {
			t.Errorf("Lookup(%s, %s) = %d %v %v, want %d %v %v", c.v, c.f, off, exact, ok, c.off, c.exact, c.exists)
		}
	}
	err = db.Merge(offsets.Measured{Module: "std", Version: "go1.24.0", Wanted: []string{"p.T.a", "p.T.b", "p.T.c"}})
	if err == nil || !strings.Contains(err.Error(), "p.T.c was not measured at go1.21.0") {
		t.Errorf("a new field measured at one version only: %v", err)
	}
	// A build that measured some of a version's fields (another module's, which
	// reaches a few of them) replaces those and keeps the rest: b is gone from go1.23.0,
	// a is still there.
	if err := db.Merge(offsets.Measured{Module: "std", Version: "go1.23.0", Wanted: []string{"p.T.b"}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		f      offsets.FieldRef
		exists bool
	}{{a, true}, {b, false}} {
		if _, exact, ok := db.Lookup("std", "go1.23.0", c.f); !exact || ok != c.exists {
			t.Errorf("after a partial merge, Lookup(go1.23.0, %s) = %v %v, want true %v", c.f, exact, ok, c.exists)
		}
	}
	if err := db.Merge(offsets.Measured{Module: "std", Version: "go1.25.0", Wanted: []string{"p.T.a"}, Offsets: map[string]uint64{"p.T.a": 16}}); err == nil {
		t.Error("a new version with some of the fields only merged")
	}
}

// dbWithout is the embedded database without the versions drop selects.
func dbWithout(t *testing.T, drop func(v string) bool) *offsets.Database {
	db, err := offsets.EmbeddedDatabase()
	if err != nil {
		t.Fatal(err)
	}
	out, err := db.Filter(func(_, v string) bool { return !drop(v) })
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Stripped binaries of a Go release the database has get every offset from it; of a
// release it lacks (here: the database without it), from their type metadata. Either
// way the offsets are the unstripped twin's DWARF offsets and every probe is enabled.
func TestStrippedBinarySources(t *testing.T) {
	for _, unknown := range []bool{false, true} {
		for _, p := range withDWARF(t, sourceTargets(t)) {
			if !p.hasStripped {
				continue
			}
			wantSource := offsets.SourceDB
			if version.Compare(p.goVersion, "go1.21") < 0 {
				wantSource = offsets.SourceTypeInfo // older than the database
			}
			restore := func() {}
			if unknown {
				minor := version.Lang(p.goVersion)
				restore = offsets.SetDatabase(dbWithout(t, func(v string) bool { return version.Lang(v) == minor }))
				wantSource = offsets.SourceTypeInfo
			}
			r, err := offsets.Analyze(open(t, p.stripped.Path), stdSpecs())
			restore()
			if err != nil {
				t.Fatalf("%s: %v", p.stripped, err)
			}
			for _, pr := range r.Probes {
				if !pr.Enabled {
					t.Errorf("%s (release known: %v): %s disabled: %s", p.stripped, !unknown, pr.Name, pr.Reason)
				}
				for _, f := range pr.Fields {
					ref := fieldRef(f.Name)
					want, inDWARF := p.dwarf[ref]
					if !inDWARF {
						if f.Source != offsets.SourceMissing {
							t.Errorf("%s: %s from %s, but DWARF has no such field", p.stripped, f.Name, f.Source)
						}
						continue
					}
					if f.Source != wantSource || f.Offset == nil || *f.Offset != want {
						got := "none"
						if f.Offset != nil {
							got = fmt.Sprint(*f.Offset)
						}
						t.Errorf("%s (release known: %v): %s = %s from %s, want %d from %s", p.stripped, !unknown, f.Name, got, f.Source, want, wantSource)
					}
				}
			}
		}
	}
}

// fieldRef parses "net/http.Request.Method".
func fieldRef(name string) offsets.FieldRef {
	last := strings.LastIndexByte(name, '.')
	return offsets.FieldRef{Struct: name[:last], Field: name[last+1:]}
}

// A release newer than the database, for a field its type metadata lacks: the nearest
// release's offset is a guess, so the probe is refused with the reason, never guessed.
func TestNearestGuessRefused(t *testing.T) {
	tg, ok := find(sourceTargets(t), "go1.27.3", testenv.Stripped)
	if !ok {
		t.Fatal("no stripped go1.27.3 target")
	}
	ghost := offsets.FieldRef{Struct: "net/http.noSuchType", Field: "x"}
	db := &offsets.Database{}
	if err := db.Merge(offsets.Measured{Module: "std", Version: "go1.26.0", Wanted: []string{ghost.String()}, Offsets: map[string]uint64{ghost.String(): 8}}); err != nil {
		t.Fatal(err)
	}
	defer offsets.SetDatabase(db)()
	spec := offsets.Spec{Name: "test.guess", Module: "std", Functions: probes.Specs()[0].Functions, Fields: []offsets.FieldSpec{{FieldRef: ghost}}}
	r, err := offsets.Analyze(open(t, tg.Path), []offsets.Spec{spec})
	if err != nil {
		t.Fatal(err)
	}
	p := r.Probes[0]
	if p.Enabled || len(p.Fields) != 1 || p.Fields[0].Source != offsets.SourceMissing || p.Fields[0].Offset != nil ||
		!strings.Contains(p.Reason, "go1.27.3 is not in the offsets database (newest go1.26.0)") || !strings.Contains(p.Reason, "not guessing") {
		t.Errorf("guess: enabled %v, fields %+v, reason %q", p.Enabled, p.Fields, p.Reason)
	}
}

// BenchmarkParseDatabase: what the launcher spends, once and in the background, on the
// embedded database.
func BenchmarkParseDatabase(b *testing.B) {
	data, err := os.ReadFile("database.json")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := offsets.ParseDatabase(data); err != nil {
			b.Fatal(err)
		}
	}
}

// GOEXPERIMENT builds: the version is the release without the suffix, the experiments
// are listed; an experiment that switches the map layout the probes read
// (noswissmap, Go 1.24) disables them with the reason; another (jsonv2) leaves them
// enabled, but its offsets come from the binary's type descriptors, not the database,
// which measured default builds - and equal DWARF's.
func TestExperimentBuilds(t *testing.T) {
	noswiss := testenv.Variant{Name: "noswissmap", Env: []string{"GOEXPERIMENT=noswissmap"}}
	jsonv2 := testenv.Variant{Name: "jsonv2-stripped", Env: []string{"GOEXPERIMENT=jsonv2"}, Flags: []string{"-ldflags=-s -w"}}
	tgs := append(testenv.BuildTargets(t, "httpserver", []string{"go1.24.11"}, []testenv.Variant{noswiss}),
		testenv.BuildTargets(t, "httpserver", []string{"go1.26.8"}, []testenv.Variant{jsonv2})...)

	b := open(t, tgs[0].Path)
	if b.GoVersion != "go1.24.11" || !slices.Equal(b.Experiments, []string{"noswissmap"}) {
		t.Errorf("%s: version %q, experiments %q", tgs[0], b.GoVersion, b.Experiments)
	}
	r, err := offsets.Analyze(b, stdSpecs())
	if err != nil {
		t.Fatal(err)
	}
	readsMaps := map[string]bool{} // the probes the experiment changes: those that read maps
	for _, s := range stdSpecs() {
		readsMaps[s.Name] = slices.Contains(s.Experiments, "noswissmap")
	}
	for _, p := range r.Probes {
		if disabled := !p.Enabled && strings.Contains(p.Reason, "GOEXPERIMENT=noswissmap"); disabled != readsMaps[p.Name] {
			t.Errorf("%s: %s enabled %v: %q", tgs[0], p.Name, p.Enabled, p.Reason)
		}
	}

	b = open(t, tgs[1].Path)
	if b.GoVersion != "go1.26.8" || !slices.Equal(b.Experiments, []string{"jsonv2"}) {
		t.Errorf("%s: version %q, experiments %q", tgs[1], b.GoVersion, b.Experiments)
	}
	plain, ok := find(sourceTargets(t), "go1.26.8", testenv.Plain)
	if !ok {
		t.Fatal("no plain go1.26.8 target")
	}
	want, err := open(t, plain.Path).DWARFFieldOffsets(probeFields("go1.26.8"))
	if err != nil {
		t.Fatal(err)
	}
	if r, err = offsets.Analyze(b, stdSpecs()); err != nil {
		t.Fatal(err)
	}
	for _, p := range r.Probes {
		if !p.Enabled {
			t.Errorf("%s: %s disabled: %s", tgs[1], p.Name, p.Reason)
		}
		for _, f := range p.Fields {
			if w, ok := want[fieldRef(f.Name)]; ok && (f.Source != offsets.SourceTypeInfo || *f.Offset != w) {
				t.Errorf("%s: %s = %v from %s, want %d from typeinfo", tgs[1], f.Name, f.Offset, f.Source, w)
			}
		}
	}
}

// The descriptors of pointer types found from their struct's PtrToThis are types
// named *T, as the runtime names them, in every Go release tested, stripped or not.
// (That they are the very words an interface holds, e2e's database/sql spans show: a
// server address is read only when they match.)
func TestPointerTypeAddrsNameTheirTypes(t *testing.T) {
	structs := map[string]string{"net/http.Request": "*http.Request", "net.TCPConn": "*net.TCPConn",
		"net.TCPAddr": "*net.TCPAddr", "database/sql.Stmt": "*sql.Stmt"}
	for _, tg := range sourceTargets(t) {
		if strings.HasPrefix(tg.Variant.Name, "pie") {
			continue // the names need the process's load address
		}
		got, err := open(t, tg.Path).PointerTypeAddrs(slices.Collect(maps.Keys(structs)))
		if err != nil {
			t.Fatalf("%s: %v", tg, err)
		}
		names := offsets.NewTypeNames(tg.Path)
		for st, want := range structs {
			if name := names.Name(0, got[st]); name != want {
				t.Errorf("%s: %s: the type at %#x is %q, want %q", tg, st, got[st], name, want)
			}
		}
		names.Close()
	}
}
