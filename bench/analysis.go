package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"time"

	"github.com/otel-go-launcher/otel-go-launcher/offsets"
	"github.com/otel-go-launcher/otel-go-launcher/probes"
)

// analysis: time and peak heap of offsets.Open + Analyze with every probe's spec (what
// runs inside the start gate) on large real binaries: the launcher itself, and a
// generated Go program of over 100 MB that also serves HTTP, with and without DWARF.
func analysis(env *benchEnv) error {
	big, err := generatedBinary(180, 400, 60, true)
	if err != nil {
		return err
	}
	launcherDWARF := filepath.Join(os.TempDir(), "launch-with-dwarf")
	if out, err := exec.Command("go", "build", "-o", launcherDWARF, "./cmd/launch").CombinedOutput(); err != nil {
		return fmt.Errorf("build the launcher with DWARF: %v\n%s", err, out)
	}
	defer os.Remove(launcherDWARF)

	// The worst case for DWARF: a wanted type the binary does not have, so the whole
	// runtime unit (every type) is decoded.
	absent := append(probes.Specs(), offsets.Spec{Name: "absent", Module: "std",
		Fields: []offsets.FieldSpec{{FieldRef: offsets.FieldRef{Struct: "example.com/absent.T", Field: "x"}}}})
	// A release the offsets database lacks: the embedded one without the binary's.
	embedded, err := offsets.EmbeddedDatabase()
	if err != nil {
		return err
	}
	goVersion := runtime.Version()
	unknown, err := embedded.Filter(func(_, v string) bool { return v != goVersion })
	if err != nil {
		return err
	}
	unknownFile := filepath.Join(os.TempDir(), "offsets-without-"+goVersion+".json")
	if data, err := unknown.Encode(); err != nil {
		return err
	} else if err := os.WriteFile(unknownFile, data, 0o644); err != nil {
		return err
	}
	defer os.Remove(unknownFile)
	bins := []struct {
		name, path string
		specs      []offsets.Spec
		db         *offsets.Database
	}{
		{"launcher (make build: stripped)", env.launch, probes.Specs(), embedded},
		{"launcher with DWARF", launcherDWARF, probes.Specs(), embedded},
		{"generated HTTP server", big.plain, probes.Specs(), embedded},
		{"generated HTTP server, a type it lacks (worst case)", big.plain, absent, embedded},
		{"generated HTTP server, -s -w: offsets from the database", big.stripped, probes.Specs(), embedded},
		{"generated HTTP server, -s -w, release not in the database: type descriptors", big.stripped, probes.Specs(), unknown},
	}
	fmt.Println("### Binary analysis (offsets.Open + Analyze, all probes)")
	fmt.Println()
	fmt.Println("| binary | size | probes enabled | median time | p90 | peak heap | allocated |")
	fmt.Println("|---|---:|---|---:|---:|---:|---:|")
	for _, b := range bins {
		st, err := os.Stat(b.path)
		if err != nil {
			return err
		}
		var times []time.Duration
		var peak, allocated uint64
		var enabled string
		offsets.UseDatabase(b.db)
		for i := 0; i < 20; i++ {
			d, p, a, r, err := measureAnalysis(b.path, b.specs)
			if err != nil {
				return fmt.Errorf("%s: %w", b.name, err)
			}
			times = append(times, d)
			peak, allocated = max(peak, p), a
			var on []string
			for _, p := range r.Probes {
				if p.Enabled && p.Name != "absent" {
					on = append(on, p.Name)
				}
			}
			enabled = strings.Join(on, ", ")
			if enabled == "" {
				enabled = "none"
			}
		}
		fmt.Printf("| %s | %.1f MB | %s | %s | %s | %.1f MB | %.1f MB |\n", b.name, float64(st.Size())/1e6, enabled,
			ms(median(times)), ms(pct(times, 90)), float64(peak)/1e6, float64(allocated)/1e6)
	}
	offsets.UseDatabase(embedded)
	fmt.Printf("\nGenerated program: %s.\n\n", big.describe)

	// What a user sees: the whole `launch inspect` process, start to exit.
	fmt.Println("| `launch inspect` on | size | offsets from | median wall | p90 | max RSS |")
	fmt.Println("|---|---:|---|---:|---:|---:|")
	for _, c := range []struct {
		name, path, source string
		flags              []string
	}{
		{"generated HTTP server", big.plain, "dwarf", nil},
		{"generated HTTP server, -s -w", big.stripped, "db", nil},
		{"generated HTTP server, -s -w, release not in the database", big.stripped, "typeinfo", []string{"--offsets-db", unknownFile}},
	} {
		st, err := os.Stat(c.path)
		if err != nil {
			return err
		}
		var times []time.Duration
		for i := 0; i < 20; i++ {
			cmd := exec.Command(env.launch, append(c.flags, "inspect", "--json", c.path)...)
			begin := time.Now()
			out, err := cmd.Output()
			times = append(times, time.Since(begin))
			if err != nil {
				return fmt.Errorf("launch inspect %s: %v", c.path, err)
			}
			if !strings.Contains(string(out), `"source": "`+c.source+`"`) {
				return fmt.Errorf("launch inspect %s: no field from %s:\n%s", c.path, c.source, out)
			}
		}
		kib, err := peakRSS(nil, append(append([]string{env.launch}, c.flags...), "inspect", "--json", c.path)...)
		if err != nil {
			return err
		}
		rss := fmt.Sprintf("%.1f MB", float64(kib)/1024)
		fmt.Printf("| %s | %.1f MB | %s | %s | %s | %s |\n", c.name, float64(st.Size())/1e6, c.source, ms(median(times)), ms(pct(times, 90)), rss)
	}
	fmt.Println()
	return nil
}

// measureAnalysis analyses path once, sampling the live heap every 100 µs for its peak.
func measureAnalysis(path string, specs []offsets.Spec) (time.Duration, uint64, uint64, *offsets.Report, error) {
	runtime.GC()
	base, before := heapLive(), totalAlloc()
	var peak atomic.Uint64
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(100 * time.Microsecond)
		defer t.Stop()
		for {
			if h := heapLive(); h > base && h-base > peak.Load() {
				peak.Store(h - base)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	begin := time.Now()
	b, err := offsets.Open(path)
	if err != nil {
		close(stop)
		return 0, 0, 0, nil, err
	}
	r, err := offsets.Analyze(b, specs)
	b.Close()
	d := time.Since(begin)
	close(stop)
	if h := heapLive(); h > base && h-base > peak.Load() {
		peak.Store(h - base)
	}
	return d, peak.Load(), totalAlloc() - before, r, err
}

var heapSample = []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/allocs:bytes"}}

func heapLive() uint64   { metrics.Read(heapSample); return heapSample[0].Value.Uint64() }
func totalAlloc() uint64 { metrics.Read(heapSample); return heapSample[1].Value.Uint64() }

type generated struct{ plain, stripped, describe string }

// generatedBinary generates (once; cached on disk) a Go HTTP server - that also makes
// HTTP calls, if client - with the given numbers of packages, functions and struct
// types, and builds it with and without DWARF. 180, 400, 60 make a binary of over 100 MB. With BENCH_MAIN=1 it prints
// CLOCK_MONOTONIC at the start of main and exits.
func generatedBinary(packages, funcsPerPkg, typesPerPkg int, client bool) (*generated, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	kind, describe := "server", "a net/http server"
	if client {
		kind, describe = "client", "a net/http server and client"
	}
	dir := filepath.Join(cache, "otel-go-launcher", fmt.Sprintf("generated-v3-%s-%d-%d-%d-%s", kind, packages, funcsPerPkg, typesPerPkg, runtime.Version()))
	g := &generated{
		plain:    filepath.Join(dir, "server"),
		stripped: filepath.Join(dir, "server-stripped"),
		describe: fmt.Sprintf("%d packages of %d functions and %d struct types each, plus %s", packages, funcsPerPkg, typesPerPkg, describe),
	}
	if _, err := os.Stat(g.stripped); err == nil {
		return g, nil
	}
	fmt.Fprintf(os.Stderr, "bench: generating and building a Go program in %s (minutes, once)\n", dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	write := func(name, text string) error {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		return os.WriteFile(p, []byte(text), 0o644)
	}
	write("go.mod", "module example.com/big\n\ngo 1.22\n\nrequire golang.org/x/sys v0.50.0\n")
	var imports, calls strings.Builder
	for p := 0; p < packages; p++ {
		name := fmt.Sprintf("p%03d", p)
		fmt.Fprintf(&imports, "\t%q\n", "example.com/big/"+name)
		fmt.Fprintf(&calls, "\tsink += %s.F0(len(os.Args), \"x\")\n", name)
		var src strings.Builder
		fmt.Fprintf(&src, "package %s\n\nimport (\n\t\"fmt\"\n\t\"strings\"\n)\n\n", name)
		for t := 0; t < typesPerPkg; t++ {
			fmt.Fprintf(&src, "type T%d struct {\n\tID int\n\tName string\n\tTags []string\n\tAttrs map[string]int\n\tNext *T%d\n\tSum%d float64\n\tFlag%d bool\n}\n\n", t, (t+1)%typesPerPkg, t, t)
		}
		for f := 0; f < funcsPerPkg; f++ {
			fmt.Fprintf(&src, `func F%[1]d(n int, s string) int {
	v := &T%[2]d{ID: n + %[1]d, Name: s + %[3]q, Attrs: map[string]int{%[3]q: n}}
	for i := 0; i < n%%7; i++ {
		v.Tags = append(v.Tags, fmt.Sprintf("%%s-%%d-%[3]s", s, i))
		if strings.HasPrefix(v.Name, %[4]q) {
			v.Sum%[2]d += float64(i) * 1.%[1]d
		}
	}
	switch n %% 5 {
	case 0:
		v.Flag%[2]d = true
	case 1:
		v.Name = strings.ToUpper(v.Name)
	case 2:
		v.Attrs[s] = len(v.Tags)
	}
	if n > %[1]d && n < 1000 {
		return F%[5]d(n+1, v.Name) + len(v.Tags)
	}
	return v.ID + len(v.Name) + v.Attrs[%[3]q]
}

`, f, f%typesPerPkg, fmt.Sprintf("%s.F%d", name, f), fmt.Sprintf("%s_%d", name, f%13), (f+1)%funcsPerPkg)
		}
		if err := write(filepath.Join(name, "gen.go"), src.String()); err != nil {
			return nil, err
		}
	}
	main := fmt.Sprintf(`package main

import (
	"fmt"
	"net/http"
	"os"

	"golang.org/x/sys/unix"

%s)

var sink int

func main() {
	if os.Getenv("BENCH_MAIN") == "1" {
		var ts unix.Timespec
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
		fmt.Println("MAIN", ts.Nano())
		return
	}
%s	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
%s		fmt.Fprintln(w, sink)
	})
	http.ListenAndServe("127.0.0.1:0", nil)
}
`, imports.String(), calls.String(), clientCall(client))
	if err := write("main.go", main); err != nil {
		return nil, err
	}
	for _, b := range []struct {
		out   string
		flags []string
	}{{g.plain, nil}, {g.stripped, []string{"-ldflags=-s -w"}}} {
		cmd := exec.Command("go", append(append([]string{"build", "-o", b.out}, b.flags...), ".")...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false -mod=mod", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build the generated program: %v\n%s", err, out)
		}
	}
	return g, nil
}

// clientCall is the handler's outgoing call, in a generated program that makes them.
func clientCall(client bool) string {
	if !client {
		return ""
	}
	return `		if up := os.Getenv("UPSTREAM"); up != "" {
			if resp, err := http.Get(up); err == nil {
				resp.Body.Close()
			}
		}
`
}
