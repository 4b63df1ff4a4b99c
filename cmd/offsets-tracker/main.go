// Command tracker refreshes the offsets database (offsets/database.json): for every
// release of every instrumented library - Go toolchains from go1.21 for the standard
// library, `go list -m -versions` for modules - it builds the probes' small program
// (offsets.Spec.Program) and reads the fields the probes use from its DWARF. Versions
// the database already has are skipped; builds run in parallel. `make offsets` runs it.
//
// Toolchains come from the module proxy (GOTOOLCHAIN=go1.X.Y) into a cache of the
// tracker's own, and each is deleted after use unless -keep-toolchains: all of them
// would take 20 GB.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/semver"

	"github.com/otel-go-launcher/otel-go-launcher/offsets"
	"github.com/otel-go-launcher/otel-go-launcher/probes"
)

// minGo is the oldest Go release tracked: older ones are out of support.
const minGo = "go1.21.0"

func main() {
	dbPath := flag.String("db", "offsets/database.json", "the database to refresh")
	jobs := flag.Int("j", runtime.NumCPU(), "builds at once")
	only := flag.String("versions", "", "comma-separated versions to measure (default: every release)")
	module := flag.String("module", "", "measure only this module (\"std\" for the Go releases); with -versions, releases its proxy list omits may be named")
	force := flag.Bool("force", false, "measure again versions the database has")
	keep := flag.Bool("keep-toolchains", false, "keep downloaded toolchains (about 300 MB each)")
	cache := flag.String("cache", defaultCache(), "where toolchains and modules are downloaded")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: tracker [flags]\n\nRefreshes the offsets database from the DWARF of a program built with every\nrelease of every instrumented library. Skips versions it already has.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	t := &tracker{dbPath: *dbPath, specs: probes.Specs(), jobs: max(*jobs, 1), force: *force, keep: *keep, cache: *cache, log: os.Stderr, module: *module}
	if *only != "" {
		t.only = strings.Split(*only, ",")
	}
	if err := t.run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "tracker:", err)
		os.Exit(1)
	}
}

func defaultCache() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "otel-go-launcher", "tracker")
}

type tracker struct {
	dbPath    string
	specs     []offsets.Spec
	log       io.Writer
	jobs      int
	only      []string
	module    string // "": every module
	force     bool
	keep      bool
	cache     string
	mu        sync.Mutex // db and its file
	db        *offsets.Database
	hostArch  string
	completed int
	targets   map[string]*target    // by module
	measuring map[[2]string]*flight // by module and version: measured in this run
}

// flight is one version's measure, which other jobs may wait for.
type flight struct {
	done chan struct{}
	err  error
}

// target is one module's specs: what to build and which fields to read.
type target struct {
	module   string
	programs []string
	fields   []offsets.FieldRef
	minVer   string
}

type job struct {
	target  *target
	version string
}

func (t *tracker) run(ctx context.Context) error {
	start := time.Now()
	t.hostArch = runtime.GOARCH
	t.completed, t.measuring = 0, nil
	t.db = &offsets.Database{}
	if data, err := os.ReadFile(t.dbPath); err == nil {
		if t.db, err = offsets.ParseDatabase(data); err != nil {
			return fmt.Errorf("%s: %w (delete it to start afresh)", t.dbPath, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	targets := t.targetsOf()
	var todo []job
	have := 0
	matched := map[string]bool{}
	if t.module != "" {
		targets = slices.DeleteFunc(targets, func(tg *target) bool { return tg.module != t.module })
		if len(targets) == 0 {
			return fmt.Errorf("-module: no spec instruments %s", t.module)
		}
	}
	for _, tg := range targets {
		versions, err := t.versions(ctx, tg)
		if err != nil {
			return fmt.Errorf("%s: list versions: %w", tg.module, err)
		}
		// A field new to the database must be measured at every version before it
		// can be merged at any (Database.Merge): the module starts afresh.
		// The versions other modules' builds chose (grpc's pseudo-versions of x/net)
		// are measured again as well.
		if added := t.db.Missing(tg.module, tg.own()); len(added) > 0 && t.only == nil && t.db.Modules[tg.module] != nil {
			fmt.Fprintf(t.log, "tracker: %s: new fields (%s): measuring every version again\n", tg.module, strings.Join(added, ", "))
			for _, v := range t.db.Modules[tg.module].Versions {
				if !slices.Contains(versions, v) {
					versions = append(versions, v)
				}
			}
			delete(t.db.Modules, tg.module)
		}
		for _, v := range versions {
			matched[v] = true
			if !t.force && t.db.Has(tg.module, v, tg.own()) {
				have++
				continue
			}
			todo = append(todo, job{tg, v})
		}
	}
	for _, v := range t.only {
		if !matched[v] {
			return fmt.Errorf("-versions: %s is not a served release of any instrumented module", v)
		}
	}
	fmt.Fprintf(t.log, "tracker: %d versions to measure, %d already in %s, %d at once\n", len(todo), have, t.dbPath, t.jobs)

	jobs := make(chan job)
	errs := make(chan error, len(todo))
	var wg sync.WaitGroup
	for range t.jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				errs <- t.ensure(ctx, j, len(todo))
			}
		}()
	}
	for _, j := range todo {
		if ctx.Err() != nil {
			break
		}
		jobs <- j
	}
	close(jobs)
	wg.Wait()
	close(errs)
	if err := t.save(); err != nil { // canonical form, even when nothing was measured
		return err
	}
	var failed []string
	for err := range errs {
		if err != nil {
			failed = append(failed, err.Error())
		}
	}
	fmt.Fprintf(t.log, "tracker: %d measured, %d skipped, %d failed in %s; %s is %d bytes\n",
		t.completed-len(failed), have, len(failed), time.Since(start).Round(time.Second), t.dbPath, fileSize(t.dbPath))
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "\n"))
	}
	return ctx.Err()
}

// targetsOf groups the specs by module, fields deduplicated and sorted. A field is
// measured with the builds of its own module: those of a standard library package with
// the Go releases (by the standard library specs' programs), those of a module some
// spec instruments with that module's versions (by its specs' programs, which must
// reach every such field), the others with the versions of the spec's module, each
// recorded under the module (and version) the build has for its package. A field of
// an instrumented module read by another module's spec is also recorded by that
// spec's builds, at the versions they choose (grpc's of golang.org/x/net, say): the
// module's own target then measures those versions too (measure).
func (t *tracker) targetsOf() []*target {
	byModule := map[string]*target{}
	var order []string
	targetOf := func(module string) *target {
		tg := byModule[module]
		if tg == nil {
			tg = &target{module: module}
			byModule[module] = tg
			order = append(order, module)
		}
		return tg
	}
	for _, s := range t.specs {
		tg := targetOf(s.Module)
		tg.minVer = s.MinVersion
		if s.Program != "" && !slices.Contains(tg.programs, s.Program) {
			tg.programs = append(tg.programs, s.Program)
		}
	}
	add := func(tg *target, f offsets.FieldRef) {
		if !slices.Contains(tg.fields, f) {
			tg.fields = append(tg.fields, f)
		}
	}
	for _, s := range t.specs {
		for _, f := range s.Fields {
			switch own := ownModule(byModule, f.Package()); {
			case offsets.IsStd(f.Package()):
				add(targetOf("std"), f.FieldRef)
			case own != "" && own != s.Module:
				add(byModule[own], f.FieldRef)
				add(byModule[s.Module], f.FieldRef)
			default:
				add(byModule[s.Module], f.FieldRef)
			}
		}
	}
	var out []*target
	t.targets = map[string]*target{}
	for _, m := range order {
		tg := byModule[m]
		sort.Slice(tg.fields, func(i, j int) bool { return tg.fields[i].String() < tg.fields[j].String() })
		if len(tg.programs) == 0 {
			fmt.Fprintf(t.log, "tracker: %s: no spec has a Program, skipped\n", m)
			continue
		}
		out = append(out, tg)
		t.targets[m] = tg
	}
	return out
}

// ownModule is the instrumented module that has pkg, "" if none does.
func ownModule(byModule map[string]*target, pkg string) string {
	best := ""
	for m := range byModule {
		if m != "std" && (pkg == m || strings.HasPrefix(pkg, m+"/")) && len(m) > len(best) {
			best = m
		}
	}
	return best
}

// own are the target's fields of its own module: those its versions are measured by.
func (tg *target) own() []string {
	var names []string
	for _, f := range tg.fields {
		pkg := f.Package()
		if tg.module == "std" && offsets.IsStd(pkg) || pkg == tg.module || strings.HasPrefix(pkg, tg.module+"/") {
			names = append(names, f.String())
		}
	}
	return names
}

// versions lists the releases to measure: Go toolchains served by the proxy for this
// host, or the module's versions.
func (t *tracker) versions(ctx context.Context, tg *target) ([]string, error) {
	var vs []string
	if tg.module == "std" {
		out, err := t.goCmd(ctx, "", nil, "list", "-m", "-versions", "golang.org/toolchain")
		if err != nil {
			return nil, err
		}
		suffix := ".linux-" + t.hostArch
		for _, f := range strings.Fields(out)[1:] {
			v, ok := strings.CutSuffix(strings.TrimPrefix(f, "v0.0.1-"), suffix)
			// Releases only: "go1.22.5", not "go1.23rc1" (never in production).
			if ok && strings.Count(v, ".") == 2 && !strings.ContainsAny(v, "rcbeta") && offsets.VersionAtLeast(v, minGo) {
				vs = append(vs, v)
			}
		}
	} else {
		dir, err := os.MkdirTemp("", "tracker-list-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module offsetstracker\n\ngo 1.21\n"), 0o644); err != nil {
			return nil, err
		}
		out, err := t.goCmd(ctx, dir, nil, "list", "-m", "-versions", tg.module)
		if err != nil {
			return nil, err
		}
		for _, v := range strings.Fields(out)[1:] {
			// Releases only: "v1.85.0", not "v1.85.0-dev" (never in production).
			if semver.Prerelease(v) == "" && (tg.minVer == "" || offsets.VersionAtLeast(v, tg.minVer)) {
				vs = append(vs, v)
			}
		}
	}
	if t.only != nil {
		var picked []string
		for _, v := range vs {
			if slices.Contains(t.only, v) {
				picked = append(picked, v)
			}
		}
		// The proxy's list of a module may omit releases it serves (kafka-go's lists
		// a few of its v0.4 tags): with -module, a release named is taken if the
		// proxy resolves it.
		if t.module == tg.module && tg.module != "std" {
			for _, v := range t.only {
				if slices.Contains(picked, v) || semver.Prerelease(v) != "" || (tg.minVer != "" && !offsets.VersionAtLeast(v, tg.minVer)) {
					continue
				}
				dir, err := os.MkdirTemp("", "tracker-list-")
				if err != nil {
					return nil, err
				}
				err = os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module offsetstracker\n\ngo 1.21\n"), 0o644)
				if err == nil {
					_, err = t.goCmd(ctx, dir, nil, "list", "-m", tg.module+"@"+v)
				}
				os.RemoveAll(dir)
				if err == nil {
					picked = append(picked, v)
				}
			}
		}
		vs = picked
	}
	sort.Slice(vs, func(i, j int) bool { return !offsets.VersionAtLeast(vs[i], vs[j]) })
	return vs, nil
}

// ensure measures j, once in a run: a job that needs a version measured already, or
// being measured, waits for that.
func (t *tracker) ensure(ctx context.Context, j job, total int) error {
	key := [2]string{j.target.module, j.version}
	t.mu.Lock()
	if t.measuring == nil {
		t.measuring = map[[2]string]*flight{}
	}
	f, started := t.measuring[key]
	if !started {
		f = &flight{done: make(chan struct{})}
		t.measuring[key] = f
	}
	t.mu.Unlock()
	if !started {
		f.err = t.measure(ctx, j, total)
		close(f.done)
		return f.err
	}
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// measure builds the target's programs with one version and records their offsets.
func (t *tracker) measure(ctx context.Context, j job, total int) (err error) {
	began := time.Now()
	label := j.target.module + " " + j.version
	defer func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		t.completed++
		status := "ok"
		if err != nil {
			status = "FAILED: " + err.Error()
			err = fmt.Errorf("%s: %w", label, err)
		}
		fmt.Fprintf(t.log, "[%d/%d] %-32s %s (%s)\n", t.completed, total, label, status, time.Since(began).Round(100*time.Millisecond))
	}()
	dir, err := os.MkdirTemp("", "tracker-build-")
	if err != nil {
		return err
	}
	defer removeAll(dir)
	gomod := "module offsetstracker\n\ngo 1.21\n"
	var env []string
	if j.target.module == "std" {
		// A build cache per release: 66 toolchains' caches would fill the disk.
		env = append(env, "GOTOOLCHAIN="+j.version, "GOCACHE="+filepath.Join(dir, "cache"))
		defer t.pruneToolchain(j.version)
	} else {
		// One toolchain: its standard library and a module's unchanged packages
		// compile once for all the module's versions.
		env = append(env, "GOTOOLCHAIN=local", "GOCACHE="+filepath.Join(t.cache, "gocache"))
		gomod += fmt.Sprintf("\nrequire %s %s\n", j.target.module, j.version)
	}
	// What each build measured, by module and version: the target's module, and
	// the modules its builds chose for the other fields' packages (golang.org/x/net
	// for grpc, say).
	measured := map[[2]string]*offsets.Measured{}
	for i, prog := range j.target.programs {
		src := filepath.Join(dir, fmt.Sprintf("p%d", i))
		if err := os.MkdirAll(src, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte(gomod), 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(prog), 0o644); err != nil {
			return err
		}
		if j.target.module != "std" {
			if _, err := t.goCmd(ctx, src, env, "mod", "tidy"); err != nil {
				return err
			}
		}
		bin := filepath.Join(dir, fmt.Sprintf("p%d.bin", i))
		if _, err := t.goCmd(ctx, src, env, "build", "-o", bin, "."); err != nil {
			return err
		}
		if err := measureBinary(bin, j.target, j.version, measured); err != nil {
			return err
		}
	}
	var ms []offsets.Measured
	found := 0
	for _, m := range measured {
		ms = append(ms, *m)
		found += len(m.Offsets)
	}
	if found == 0 {
		return errors.New("none of the fields is in the program's DWARF: does its Program reach the probed code?")
	}
	// A version of an instrumented module that this build chose (grpc's of x/net) is
	// measured by that module's own target first: this build reads some of its fields
	// only, and a version must have all.
	for key := range measured {
		own := t.targets[key[0]]
		if own == nil || own == j.target {
			continue
		}
		t.mu.Lock()
		has := t.db.Has(key[0], key[1], own.own())
		t.mu.Unlock()
		if !has {
			if err := t.ensure(ctx, job{own, key[1]}, total); err != nil {
				return fmt.Errorf("%s %s, which it has: %w", key[0], key[1], err)
			}
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.db.Merge(ms...); err != nil {
		return err
	}
	return t.save() // after each version: an interrupted run keeps what it measured
}

// measureBinary reads the target's fields from a build's DWARF into measured, each
// under the module and version the build has for the field's package; a field whose
// package is in no module of the build (an older release without it) is skipped.
func measureBinary(bin string, tg *target, version string, measured map[[2]string]*offsets.Measured) error {
	b, err := offsets.Open(bin)
	if err != nil {
		return err
	}
	defer b.Close()
	offs, err := b.DWARFFieldOffsets(tg.fields)
	if err != nil {
		return err
	}
	for _, f := range tg.fields {
		module, ver := b.PackageModule(f.Package())
		switch {
		case tg.module == "std" && module == "std":
			ver = version // the toolchain's release, without its build suffix
		case module == tg.module:
			ver = version
		case module == "" || module == "std" || tg.module == "std":
			continue // measured by the target of its own module
		}
		key := [2]string{module, ver}
		m := measured[key]
		if m == nil {
			m = &offsets.Measured{Module: module, Version: ver, Offsets: map[string]uint64{}}
			measured[key] = m
		}
		name := f.String()
		if !slices.Contains(m.Wanted, name) {
			m.Wanted = append(m.Wanted, name)
		}
		off, ok := offs[f]
		if !ok {
			continue
		}
		if prev, had := m.Offsets[name]; had && prev != off {
			return fmt.Errorf("%s is at %d in one program and %d in another", name, prev, off)
		}
		m.Offsets[name] = off
	}
	return nil
}

func (t *tracker) save() error {
	data, err := t.db.Encode()
	if err != nil {
		return err
	}
	tmp := t.dbPath + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, t.dbPath)
}

// goCmd runs the go command with the tracker's caches, returning its output.
func (t *tracker) goCmd(ctx context.Context, dir string, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOMODCACHE="+filepath.Join(t.cache, "mod"), "GOFLAGS=-mod=mod", "GOWORK=off",
		"CGO_ENABLED=0", "GOOS=linux", "GOARCH="+t.hostArch)
	cmd.Env = append(cmd.Env, env...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out.String(), nil
}

// pruneToolchain deletes a downloaded toolchain and its zip.
func (t *tracker) pruneToolchain(version string) {
	if t.keep {
		return
	}
	name := "v0.0.1-" + version + ".linux-" + t.hostArch
	mod := filepath.Join(t.cache, "mod")
	removeAll(filepath.Join(mod, "golang.org", "toolchain@"+name))
	matches, _ := filepath.Glob(filepath.Join(mod, "cache", "download", "golang.org", "toolchain", "@v", name+".*"))
	for _, m := range matches {
		os.Remove(m)
	}
}

// removeAll removes a tree the module cache made read-only.
func removeAll(dir string) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
	os.RemoveAll(dir)
}

func fieldNames(fs []offsets.FieldRef) []string {
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.String()
	}
	return names
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}
