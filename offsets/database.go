package offsets

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"go/version"
	"os"
	"sort"
	"strings"
	"sync"
)

// Database holds struct field offsets the offsets tracker (cmd/offsets-tracker, `make
// offsets`) read from the DWARF of a small program built with every release of every
// instrumented library: the source of offsets for binaries without DWARF. It is
// embedded in the launcher; regenerate it when new releases come out.
type Database struct {
	// Modules by path; "std" is the standard library, versioned by Go release.
	Modules map[string]*ModuleOffsets `json:"modules"`
}

// ModuleOffsets are one module's field offsets across its versions.
type ModuleOffsets struct {
	// Versions are every version measured, oldest first. A field has an offset for
	// each of them or is known to be absent from it: only these are exact.
	Versions []string `json:"versions"`
	// Fields by name ("net/http.Request.Method"): runs of consecutive versions with
	// equal offsets. A version in no run does not have the field.
	Fields map[string][]OffsetRange `json:"fields"`
}

// OffsetRange is a field's offset over the measured versions From to To, inclusive.
type OffsetRange struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Offset uint64 `json:"offset"`
}

//go:embed database.json
var embeddedDatabase []byte

// EmbeddedDatabase is the database compiled into this program.
var EmbeddedDatabase = sync.OnceValues(func() (*Database, error) {
	return ParseDatabase(embeddedDatabase)
})

// database is the one analysis uses: the embedded one unless UseDatabase replaced it.
var database = EmbeddedDatabase

// CurrentDatabase is the database analysis uses.
func CurrentDatabase() (*Database, error) { return database() }

// UseDatabase makes analysis use db instead of the embedded database.
func UseDatabase(db *Database) { database = func() (*Database, error) { return db, nil } }

// UseDatabaseFile makes analysis use the database in a file (written by `make
// offsets`): offsets for releases newer than the launcher, without rebuilding it.
func UseDatabaseFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	db, err := ParseDatabase(data)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	UseDatabase(db)
	return nil
}

// ParseDatabase reads a database written by Encode.
func ParseDatabase(data []byte) (*Database, error) {
	db := &Database{}
	if err := json.Unmarshal(data, db); err != nil {
		return nil, fmt.Errorf("offsets database: %w", err)
	}
	for path, m := range db.Modules {
		if !sort.SliceIsSorted(m.Versions, func(i, j int) bool { return compareVersions(m.Versions[i], m.Versions[j]) < 0 }) {
			return nil, fmt.Errorf("offsets database: %s: versions out of order", path)
		}
	}
	return db, nil
}

// Encode writes the database deterministically and compactly: modules and fields
// sorted, a module's versions one line per minor release, a field's runs on one line,
// so that a refresh shows as a small diff.
func (db *Database) Encode() ([]byte, error) {
	var b strings.Builder
	q := func(s string) string { j, _ := json.Marshal(s); return string(j) }
	b.WriteString("{\n\t\"modules\": {")
	for i, path := range sortedKeys(db.Modules) {
		m := db.Modules[path]
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "\n\t\t%s: {\n\t\t\t\"versions\": [", q(path))
		for j, v := range m.Versions {
			switch {
			case j == 0:
				b.WriteString("\n\t\t\t\t")
			case version.Lang(v) != version.Lang(m.Versions[j-1]) || !strings.HasPrefix(v, "go"):
				b.WriteString(",\n\t\t\t\t")
			default:
				b.WriteString(", ")
			}
			b.WriteString(q(v))
		}
		b.WriteString("\n\t\t\t],\n\t\t\t\"fields\": {")
		for j, f := range sortedKeys(m.Fields) {
			if j > 0 {
				b.WriteString(",")
			}
			runs, err := json.Marshal(m.Fields[f])
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(&b, "\n\t\t\t\t%s: %s", q(f), runs)
		}
		b.WriteString("\n\t\t\t}\n\t\t}")
	}
	b.WriteString("\n\t}\n}")
	return []byte(b.String()), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Lookup finds field f of module at version. exact says version was measured: then ok
// says whether the field exists in it. For a version never measured (newer than the
// database, say) the offset is that of the nearest measured version below it, a guess
// the caller must confirm before use.
func (db *Database) Lookup(module, version string, f FieldRef) (offset uint64, exact, ok bool) {
	m := db.Modules[module]
	if m == nil || len(m.Versions) == 0 || version == "" {
		return 0, false, false
	}
	// The newest measured version at or below version; the oldest if none is.
	i := sort.Search(len(m.Versions), func(i int) bool { return compareVersions(m.Versions[i], version) > 0 })
	nearest := m.Versions[max(i-1, 0)]
	exact = i > 0 && compareVersions(nearest, version) == 0
	for _, r := range m.Fields[f.String()] {
		if compareVersions(r.From, nearest) <= 0 && compareVersions(nearest, r.To) <= 0 {
			return r.Offset, exact, true
		}
	}
	return 0, exact, false
}

// Newest is the newest version of module the database has measured.
func (db *Database) Newest(module string) string {
	if m := db.Modules[module]; m != nil && len(m.Versions) > 0 {
		return m.Versions[len(m.Versions)-1]
	}
	return ""
}

// Has reports whether the database measured every one of fields at version.
func (db *Database) Has(module, version string, fields []string) bool {
	m := db.Modules[module]
	if m == nil {
		return false
	}
	i := sort.Search(len(m.Versions), func(i int) bool { return compareVersions(m.Versions[i], version) >= 0 })
	if i == len(m.Versions) || m.Versions[i] != version {
		return false
	}
	for _, f := range fields {
		if _, ok := m.Fields[f]; !ok {
			return false
		}
	}
	return true
}

// Missing are those of fields the database has never measured for module.
func (db *Database) Missing(module string, fields []string) []string {
	m := db.Modules[module]
	var missing []string
	for _, f := range fields {
		if m == nil {
			missing = append(missing, f)
		} else if _, ok := m.Fields[f]; !ok {
			missing = append(missing, f)
		}
	}
	return missing
}

// Filter is the database with only the versions keep accepts.
func (db *Database) Filter(keep func(module, version string) bool) (*Database, error) {
	out := &Database{Modules: map[string]*ModuleOffsets{}}
	for _, path := range sortedKeys(db.Modules) {
		m := db.Modules[path]
		var ms []Measured
		for _, v := range m.Versions {
			if !keep(path, v) {
				continue
			}
			mv := Measured{Module: path, Version: v, Wanted: sortedKeys(m.Fields), Offsets: map[string]uint64{}}
			for f, runs := range m.Fields {
				for _, r := range runs {
					if compareVersions(r.From, v) <= 0 && compareVersions(v, r.To) <= 0 {
						mv.Offsets[f] = r.Offset
					}
				}
			}
			ms = append(ms, mv)
		}
		if err := out.Merge(ms...); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Measured is what one build of a module version showed: offsets by field name for the
// fields it has, and the names of all fields looked for.
type Measured struct {
	Module, Version string
	Wanted          []string
	Offsets         map[string]uint64
}

// Merge adds measurements, replacing what the database had for the fields each
// measured at its version (builds of two modules may each measure some fields of a
// third at one version), and collapses runs of equal offsets. A field new to the database must be measured at
// every version the module has, or it would read as absent from the others: Merge
// refuses that.
func (db *Database) Merge(ms ...Measured) error {
	if db.Modules == nil {
		db.Modules = map[string]*ModuleOffsets{}
	}
	byModule := map[string][]Measured{}
	for _, m := range ms {
		byModule[m.Module] = append(byModule[m.Module], m)
	}
	for module, ms := range byModule {
		old := db.Modules[module]
		if old == nil {
			old = &ModuleOffsets{Fields: map[string][]OffsetRange{}}
		}
		// Expand to version -> field -> offset, apply ms, collapse again.
		table := map[string]map[string]uint64{}
		wanted := map[string]map[string]bool{} // version -> fields looked for
		for _, v := range old.Versions {
			table[v] = map[string]uint64{}
			wanted[v] = map[string]bool{}
			for f := range old.Fields {
				wanted[v][f] = true
			}
		}
		for f, ranges := range old.Fields {
			for _, r := range ranges {
				for _, v := range old.Versions {
					if compareVersions(r.From, v) <= 0 && compareVersions(v, r.To) <= 0 {
						table[v][f] = r.Offset
					}
				}
			}
		}
		for _, m := range ms {
			if table[m.Version] == nil {
				table[m.Version], wanted[m.Version] = map[string]uint64{}, map[string]bool{}
			}
			for _, f := range m.Wanted {
				wanted[m.Version][f] = true
				if off, ok := m.Offsets[f]; ok {
					table[m.Version][f] = off
				} else {
					delete(table[m.Version], f) // measured: not in this version
				}
			}
		}
		next := &ModuleOffsets{Fields: map[string][]OffsetRange{}}
		fields := map[string]bool{}
		for v := range table {
			next.Versions = append(next.Versions, v)
			for f := range wanted[v] {
				fields[f] = true
			}
		}
		sort.Slice(next.Versions, func(i, j int) bool { return compareVersions(next.Versions[i], next.Versions[j]) < 0 })
		for f := range fields {
			for _, v := range next.Versions {
				if !wanted[v][f] {
					return fmt.Errorf("%s: field %s was not measured at %s: measure every version again", module, f, v)
				}
			}
			runs := []OffsetRange{} // a field absent from every version stays listed: measured
			prevHad := false
			for _, v := range next.Versions {
				off, ok := table[v][f]
				switch {
				case !ok:
				case prevHad && runs[len(runs)-1].Offset == off:
					runs[len(runs)-1].To = v
				default:
					runs = append(runs, OffsetRange{From: v, To: v, Offset: off})
				}
				prevHad = ok
			}
			next.Fields[f] = runs
		}
		db.Modules[module] = next
	}
	return nil
}
