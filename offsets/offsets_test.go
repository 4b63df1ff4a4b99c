package offsets_test

import (
	"bytes"
	"debug/dwarf"
	"debug/elf"
	"encoding/json"
	"go/version"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/arch/arm64/arm64asm"
	"golang.org/x/arch/x86/x86asm"
	"golang.org/x/sys/unix"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
	"github.com/otel-go-launcher/otel-go-launcher/offsets"
	"github.com/otel-go-launcher/otel-go-launcher/probes"
	"github.com/otel-go-launcher/otel-go-launcher/probes/nethttp"
)

var (
	targetsOnce sync.Once
	allTargets  []testenv.Target
)

// targets builds the HTTP server target across toolchains and build modes: every
// toolchain from Go 1.20 plain, stripped and with -trimpath; PIE and cgo (external
// link) with the oldest, the first with Go 1.26's pclntab and the newest; arm64 with
// the oldest and newest.
func targets(t *testing.T) []testenv.Target {
	t.Helper()
	testenv.RequireCommand(t, "go")
	targetsOnce.Do(func() {
		all := append(slices.Clone(testenv.OldToolchains), testenv.Toolchains...)
		edge := []string{all[0], "go1.26.8", all[len(all)-1]}
		ends := []string{all[0], all[len(all)-1]}
		allTargets = append(allTargets, testenv.BuildTargets(t, "httpserver", all, []testenv.Variant{testenv.Plain, testenv.Stripped, testenv.Trimpath})...)
		allTargets = append(allTargets, testenv.BuildTargets(t, "httpserver", edge, []testenv.Variant{testenv.PIE, testenv.PIEStripped, testenv.Cgo, testenv.CgoStripped})...)
		allTargets = append(allTargets, testenv.BuildTargets(t, "httpserver", ends, []testenv.Variant{testenv.ARM64, testenv.ARM64Stripped})...)
	})
	if len(allTargets) == 0 {
		t.Fatal("no targets built")
	}
	return allTargets
}

func find(ts []testenv.Target, toolchain string, v testenv.Variant) (testenv.Target, bool) {
	for _, t := range ts {
		if t.Toolchain == toolchain && t.Variant.Name == v.Name {
			return t, true
		}
	}
	return testenv.Target{}, false
}

func open(t *testing.T, path string) *offsets.Binary {
	t.Helper()
	b, err := offsets.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

func TestOpenReadsVersionsAndKind(t *testing.T) {
	for _, tg := range targets(t) {
		b := open(t, tg.Path)
		stripped := strings.Contains(tg.Variant.Name, "stripped")
		wantArch := "amd64"
		if strings.HasPrefix(tg.Variant.Name, "arm64") {
			wantArch = "arm64"
		}
		if b.GoVersion != tg.Toolchain || b.Arch != wantArch || b.PIE != strings.HasPrefix(tg.Variant.Name, "pie") ||
			b.Stripped != stripped || b.DWARF == stripped {
			t.Errorf("%s: go %s arch %s pie %v stripped %v dwarf %v", tg, b.GoVersion, b.Arch, b.PIE, b.Stripped, b.DWARF)
		}
		if len(b.Modules) == 0 || b.Modules[0].Path != "example.com/httpserver" {
			t.Errorf("%s: modules %v", tg, b.Modules)
		}
	}
}

// Every Go function the symbol table lists is at the same address in the pclntab, and
// a stripped binary's pclntab gives the same file offsets as its unstripped twin's
// symbol table.
func TestPclntabMatchesSymbolTable(t *testing.T) {
	ts := targets(t)
	for _, tg := range ts {
		if strings.Contains(tg.Variant.Name, "stripped") {
			continue
		}
		ef, err := elf.Open(tg.Path)
		if err != nil {
			t.Fatal(err)
		}
		syms, err := ef.Symbols()
		ef.Close()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		want := map[string]uint64{}
		seen := map[string]int{}
		for _, s := range syms {
			seen[s.Name]++
		}
		for _, s := range syms {
			if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Size > 0 && samePclntabName(s.Name) && seen[s.Name] == 1 {
				names = append(names, s.Name)
				want[s.Name] = s.Value
			}
		}
		b := open(t, tg.Path)
		fromPclntab, err := b.PclntabFunctions(names...)
		if err != nil {
			t.Fatalf("%s: %v", tg, err)
		}
		for _, name := range names {
			if fn, ok := fromPclntab[name]; !ok || fn.Addr != want[name] {
				t.Errorf("%s: %s at %#x (found: %v) in the pclntab, %#x in the symbol table", tg, name, fn.Addr, ok, want[name])
			}
		}
		if len(names) < 4000 {
			t.Errorf("%s: only %d functions compared", tg, len(names))
		}

		twin, ok := testenv.StrippedTwin(tg.Variant)
		if !ok {
			continue
		}
		st, ok := find(ts, tg.Toolchain, twin)
		if !ok {
			continue
		}
		probeNames := []string{"net/http.serverHandler.ServeHTTP", "main.main", "net/http.(*conn).serve", "runtime.main", "net/http.(*Server).Serve"}
		fromSymtab, err := b.SymtabFunctions(probeNames...)
		if err != nil {
			t.Fatal(err)
		}
		fromStripped, err := open(t, st.Path).Functions(probeNames...)
		if err != nil {
			t.Fatalf("%s: %v", st, err)
		}
		for _, n := range probeNames {
			if fromSymtab[n].Offset == 0 || fromStripped[n].Offset != fromSymtab[n].Offset {
				t.Errorf("%s: %s at file offset %#x stripped, %#x in the unstripped twin's symbol table", st, n, fromStripped[n].Offset, fromSymtab[n].Offset)
			}
		}
	}
}

// samePclntabName reports whether a symbol-table name is also the function's pclntab
// name: Go functions written by people. Left out: C code (cgo objects' "pkg(.text)",
// gcc's ".cold" parts, names without a dot), NAME.abi0 (the pclntab calls that wrapper
// NAME), compiler-made equality functions and generic instantiations (their local names
// and Go 1.20's "[...]" shorthand differ between the two tables).
func samePclntabName(name string) bool {
	return strings.Contains(name, ".") && !strings.HasPrefix(name, "_") && !strings.HasPrefix(name, "x_cgo") &&
		!strings.Contains(name, "(.text") && !strings.HasSuffix(name, ".cold") && !strings.HasSuffix(name, ".abi0") &&
		!strings.HasPrefix(name, "type:") && !strings.HasPrefix(name, "type..") && !strings.Contains(name, "[")
}

// Every listed return offset decodes to a RET, and for amd64 the set equals what
// `go tool objdump` (the Go toolchain's own disassembler) lists.
func TestReturnOffsetsAreRETs(t *testing.T) {
	names := []string{"net/http.serverHandler.ServeHTTP", "net/http.(*conn).serve", "net/http.(*conn).readRequest", "main.routes"}
	for _, tg := range targets(t) {
		b := open(t, tg.Path)
		funcs, err := b.Functions(names...)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(tg.Path)
		for _, n := range names {
			fn, ok := funcs[n]
			if !ok {
				t.Errorf("%s: %s not found", tg, n)
				continue
			}
			rets, err := b.ReturnOffsets(fn)
			if err != nil {
				t.Errorf("%s: %v", tg, err)
				continue
			}
			for _, off := range rets {
				if !isRET(b.Arch, data[off:]) {
					t.Errorf("%s: %s: offset %#x is not a RET: % x", tg, n, off, data[off:off+4])
				}
			}
			if tg.Variant.Name == "plain" {
				if want := objdumpRETs(t, tg.Path, n, fn); !equalUints(rets, want) {
					t.Errorf("%s: %s: RETs %#x, objdump lists %#x", tg, n, rets, want)
				}
			}
		}
	}
}

func isRET(arch string, code []byte) bool {
	if arch == "arm64" {
		inst, err := arm64asm.Decode(code)
		return err == nil && inst.Op == arm64asm.RET
	}
	inst, err := x86asm.Decode(code, 64)
	return err == nil && inst.Op == x86asm.RET
}

var objdumpLine = regexp.MustCompile(`^\s+\S+:\d+\s+0x([0-9a-f]+)\s+[0-9a-f]+\s+(RET|RETQ)\b`)

// objdumpRETs lists fn's RET file offsets as go tool objdump disassembles them.
func objdumpRETs(t *testing.T, path, name string, fn offsets.Func) []uint64 {
	out, err := exec.Command("go", "tool", "objdump", "-s", "^"+regexp.QuoteMeta(name)+"$", path).Output()
	if err != nil {
		t.Fatalf("go tool objdump: %v", err)
	}
	var rets []uint64
	for _, line := range strings.Split(string(out), "\n") {
		if m := objdumpLine.FindStringSubmatch(line); m != nil {
			addr, _ := strconv.ParseUint(m[1], 16, 64)
			rets = append(rets, addr-fn.Addr+fn.Offset)
		}
	}
	return rets
}

func equalUints(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// DWARF field offsets equal what reflect reports inside the program (run it), for
// every field the probes read.
func TestDWARFFieldOffsetsMatchReflect(t *testing.T) {
	var refs []offsets.FieldRef
	for _, s := range probes.Specs() {
		for _, f := range s.Fields {
			if offsets.IsStd(f.Package()) {
				refs = append(refs, f.FieldRef)
			}
		}
	}
	for _, tg := range targets(t) {
		if strings.Contains(tg.Variant.Name, "stripped") || strings.HasPrefix(tg.Variant.Name, "arm64") && runtime.GOARCH != "arm64" {
			continue
		}
		out, err := exec.Command(tg.Path, "offsets").Output()
		if err != nil {
			t.Fatalf("%s offsets: %v", tg, err)
		}
		var want map[string]uint64
		if err := json.Unmarshal(out, &want); err != nil {
			t.Fatal(err)
		}
		got, err := open(t, tg.Path).DWARFFieldOffsets(refs)
		if err != nil {
			t.Fatalf("%s: %v", tg, err)
		}
		// reflect cannot see the runtime's own map structures, nor the HTTP/2
		// server's response writer without an HTTP/2 connection: those are checked
		// against debug/dwarf's reading of the same binary.
		var runtimeTypes []string
		for _, r := range refs {
			if strings.HasPrefix(r.Struct, "runtime.") || strings.HasPrefix(r.Struct, "internal/runtime/") || strings.Contains(r.Struct, "http2") {
				runtimeTypes = append(runtimeTypes, r.Struct)
			}
		}
		for r, off := range debugDWARFMembers(t, tg.Path, runtimeTypes) {
			want[r.String()] = off
		}
		for _, r := range refs {
			w, inProgram := want[r.String()]
			g, inDWARF := got[r]
			if inProgram != inDWARF || w != g {
				t.Errorf("%s: %s: DWARF %d (%v), reflect %d (%v)", tg, r, g, inDWARF, w, inProgram)
			}
		}
		if len(want) < 9 {
			t.Errorf("%s: reflect reported only %v", tg, want)
		}
	}
}

// The streaming DWARF walker agrees with debug/dwarf (which parses everything) on every
// member of some large types, for each toolchain's DWARF.
func TestDWARFWalkerMatchesDebugDWARF(t *testing.T) {
	types := []string{"runtime.g", "runtime.m", "net/http.Server", "net/http.Request", "net/http.conn", "net/http.response", "net/url.URL", "os.File"}
	for _, tg := range targets(t) {
		if tg.Variant.Name != "plain" {
			continue
		}
		want := debugDWARFMembers(t, tg.Path, types)
		if len(want) < 100 {
			t.Fatalf("%s: debug/dwarf found only %d members", tg, len(want))
		}
		var refs []offsets.FieldRef
		for r := range want {
			refs = append(refs, r)
		}
		got, err := open(t, tg.Path).DWARFFieldOffsets(refs)
		if err != nil {
			t.Fatal(err)
		}
		for r, w := range want {
			if g, ok := got[r]; !ok || g != w {
				t.Errorf("%s: %s: walker %d (%v), debug/dwarf %d", tg, r, g, ok, w)
			}
		}
	}
}

// debugDWARFMembers lists the members of the named struct types with debug/dwarf.
func debugDWARFMembers(t *testing.T, path string, types []string) map[offsets.FieldRef]uint64 {
	ef, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	d, err := ef.DWARF()
	if err != nil {
		t.Fatal(err)
	}
	want := map[offsets.FieldRef]uint64{}
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil || e == nil {
			break
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		if e.Tag != dwarf.TagStructType || !contains(types, name) {
			continue
		}
		for {
			m, err := r.Next()
			if err != nil || m == nil || m.Tag == 0 {
				break
			}
			if m.Tag == dwarf.TagMember {
				fname, _ := m.Val(dwarf.AttrName).(string)
				loc, _ := m.Val(dwarf.AttrDataMemberLoc).(int64)
				want[offsets.FieldRef{Struct: name, Field: fname}] = uint64(loc)
			}
			if m.Children {
				r.SkipChildren()
			}
		}
	}
	return want
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

// The net/http server probe resolves on every build, stripped or not: offsets come
// from DWARF, else the database, else type metadata (sources_test.go checks which).
func TestAnalyzeServerProbe(t *testing.T) {
	for _, tg := range targets(t) {
		b := open(t, tg.Path)
		r, err := offsets.Analyze(b, []offsets.Spec{nethttp.ServerSpec})
		if err != nil {
			t.Fatalf("%s: %v", tg, err)
		}
		p := r.Probes[0]
		if !p.Enabled {
			t.Errorf("%s: disabled: %s", tg, p.Reason)
		}
		// No RETs: serverHandler's entry begins the span; finishRequest's, conn.serve's
		// deferred function's (and, optional, Hijack's and HTTP/2's handlerDone's) end
		// it, or the one call that resets a panicked HTTP/2 stream.
		var syms []string
		for _, u := range p.Uprobes {
			syms = append(syms, u.Symbol)
			entry := u.EntryProbe != nil && len(u.Calls) == 0
			if strings.HasSuffix(u.Symbol, ".runHandler.func1") {
				entry = u.EntryProbe == nil && len(u.Calls) == 1
			}
			if !entry || len(u.Returns) > 0 {
				t.Errorf("%s: %s not an entry alone (or its one call): %+v", tg, u.Symbol, u)
			}
		}
		if len(syms) < 3 || syms[0] != "net/http.serverHandler.ServeHTTP" || syms[1] != "net/http.(*response).finishRequest" ||
			syms[2] != "net/http.(*conn).serve.func1" {
			t.Errorf("%s: uprobes %v", tg, syms)
		}
		// The closures probed by their names are the deferred functions that recover
		// a handler's panic: conn.serve's, and HTTP/2's runHandler's.
		for _, sym := range syms {
			if !strings.HasSuffix(sym, ".func1") {
				continue
			}
			fns, err := b.Functions(sym, "runtime.gorecover")
			if err != nil {
				t.Fatal(err)
			}
			if calls, err := b.CallOffsets(fns[sym], fns["runtime.gorecover"]); err != nil || len(calls) != 1 {
				t.Errorf("%s: %s calls recover at %v (%v), want once: not the deferred function", tg, sym, calls, err)
			}
		}
		// Pattern arrived in Go 1.23.
		_, hasPattern := p.FieldOffset(offsets.FieldRef{Struct: "net/http.Request", Field: "Pattern"})
		if hasPattern != (version.Compare(tg.Toolchain, "go1.23") >= 0) {
			t.Errorf("%s: Request.Pattern resolved: %v", tg, hasPattern)
		}
	}
}

// Bad input gives one clear error naming the file and the cause, never a panic.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	goBin, err := os.ReadFile(targets(t)[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	// The Go version is recorded in .go.buildinfo; rewrite it there.
	old := bytes.Clone(goBin)
	ef, err := elf.NewFile(bytes.NewReader(goBin))
	if err != nil {
		t.Fatal(err)
	}
	bi := ef.Section(".go.buildinfo")
	i := bytes.Index(old[bi.Offset:bi.Offset+bi.Size], []byte("go1.20.14"))
	if i < 0 {
		t.Fatal("no version string in .go.buildinfo")
	}
	copy(old[int(bi.Offset)+i:], "go1.19.14")
	class32 := bytes.Clone(goBin)
	class32[elf.EI_CLASS] = byte(elf.ELFCLASS32)
	noPclntab := bytes.Clone(goBin)
	if j := bytes.Index(noPclntab, []byte(".gopclntab")); j >= 0 {
		copy(noPclntab[j:], ".xxpclntab")
	}

	cases := []struct {
		name, path, want string
	}{
		{"text file", write("text", []byte("hello, world\n")), "not an ELF file"},
		{"empty", write("empty", nil), "empty file"},
		{"directory", dir, "is a directory"},
		{"missing", filepath.Join(dir, "nope"), "no such file"},
		{"truncated header", write("trunc64", goBin[:64]), "corrupt or truncated ELF"},
		{"truncated half", write("trunchalf", goBin[:len(goBin)/2]), ""},
		{"C program", "/bin/true", "not a Go program"},
		{"old Go", write("old", old), "built with go1.19.14; the oldest Go supported is go1.20"},
		{"32-bit", write("class32", class32), ""},
	}
	for _, c := range cases {
		b, err := offsets.Open(c.path)
		if err == nil {
			// Some damage only shows when the parts are read: analysis must say so.
			r, aerr := offsets.Analyze(b, stdSpecs())
			b.Close()
			if aerr == nil && c.want == "" && !r.Probes[0].Enabled {
				continue
			}
			if aerr == nil {
				t.Errorf("%s: no error", c.name)
				continue
			}
			err = aerr
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, c.path+": ") || !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") {
			t.Errorf("%s: error %q, want one line naming the file and %q", c.name, msg, c.want)
		}
	}
	// A binary whose function table is gone still opens; looking up functions in it
	// says why that cannot work.
	b, err := offsets.Open(write("nopclntab", noPclntab))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.PclntabFunctions("main.main"); err == nil || !strings.Contains(err.Error(), "function table") {
		t.Errorf("no pclntab: %v", err)
	}
}

// Opening a FIFO fails at once instead of waiting for a writer.
func TestOpenFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		b, err := offsets.Open(fifo)
		if err == nil {
			b.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || err.Error() != fifo+": not a regular file" {
			t.Errorf("FIFO: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("opening a FIFO blocks")
	}
}

// A file cut short while it is mapped and read gives a plain error saying so.
func TestTruncatedWhileRead(t *testing.T) {
	data, err := os.ReadFile(targets(t)[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "app")
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := offsets.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := os.Truncate(path, 4096); err != nil { // past the headers Open read
		t.Fatal(err)
	}
	_, err = offsets.Analyze(b, stdSpecs())
	if err == nil || !strings.Contains(err.Error(), path+": the file changed while it was being read") {
		t.Errorf("analysing a truncated mapping: %v", err)
	}
}

// TypeNames names error types by the addresses of their runtime descriptors in a running
// process as %T does, for every build mode: stripped (no symbols), PIE (loaded at a
// random address), cgo.
func TestTypeNamesMatchFmt(t *testing.T) {
	for _, tg := range targets(t) {
		if strings.HasPrefix(tg.Variant.Name, "arm64") && runtime.GOARCH != "arm64" {
			continue
		}
		cmd := exec.Command(tg.Path, "types")
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var addrs map[string]uint64
		err = json.NewDecoder(out).Decode(&addrs)
		if err == nil {
			tn := offsets.NewTypeNames(tg.Path)
			for name, addr := range addrs {
				if got := tn.Name(cmd.Process.Pid, addr); got != name {
					t.Errorf("%s: type at %#x: %q, want %q", tg, addr, got, name)
				}
			}
			if got := tn.Name(cmd.Process.Pid, 8); got != "" {
				t.Errorf("%s: a stray address named %q", tg, got)
			}
			tn.Close()
		}
		stdin.Close()
		cmd.Wait()
		if err != nil {
			t.Fatalf("%s: %v", tg, err)
		}
		if len(addrs) < 5 {
			t.Errorf("%s: types printed %v", tg, addrs)
		}
	}
}

// A function that Needs another is probed only where the program has that one too;
// without it, it counts as unused, as an absent function does.
func TestFunctionNeeds(t *testing.T) {
	tg := targets(t)[0]
	b := open(t, tg.Path)
	spec := func(needs ...string) offsets.Spec {
		return offsets.Spec{Name: "needs", Module: "std", Functions: []offsets.FuncSpec{
			{Symbols: []string{"net/http.serverHandler.ServeHTTP"}, Needs: needs},
		}}
	}
	r, err := offsets.Analyze(b, []offsets.Spec{spec("no/such.Function", "net/http.(*Transport).roundTrip"), spec("no/such.Function")})
	if err != nil {
		t.Fatal(err)
	}
	if p := r.Probes[0]; !p.Enabled || len(p.Uprobes) != 1 {
		t.Errorf("%s: with one of its needs there: %+v", tg, p)
	}
	if p := r.Probes[1]; p.Enabled || !p.Unused() || !strings.Contains(p.Reason, "with no/such.Function") {
		t.Errorf("%s: without its needs: enabled %v, unused %v, %q", tg, p.Enabled, p.Unused(), p.Reason)
	}
}

// A function probed Unless another is there is not probed where the program has that
// one: it counts as unused, as an absent function does.
func TestFunctionUnless(t *testing.T) {
	tg := targets(t)[0]
	b := open(t, tg.Path)
	spec := func(unless ...string) offsets.Spec {
		return offsets.Spec{Name: "unless", Module: "std", Functions: []offsets.FuncSpec{
			{Symbols: []string{"net/http.serverHandler.ServeHTTP"}, Unless: unless},
		}}
	}
	r, err := offsets.Analyze(b, []offsets.Spec{spec("no/such.Function"), spec("no/such.Function", "net/http.(*Transport).roundTrip")})
	if err != nil {
		t.Fatal(err)
	}
	if p := r.Probes[0]; !p.Enabled || len(p.Uprobes) != 1 {
		t.Errorf("%s: none of its exclusions there: %+v", tg, p)
	}
	if p := r.Probes[1]; p.Enabled || !p.Unused() || !strings.Contains(p.Reason, "without net/http.(*Transport).roundTrip") {
		t.Errorf("%s: with one of its exclusions: enabled %v, unused %v, %q", tg, p.Enabled, p.Unused(), p.Reason)
	}
}

// A spec of one package of a larger module (std), its functions all optional: enabled
// with those the program has; without any, the program does not use the package.
func TestSpecPackage(t *testing.T) {
	tg := targets(t)[0]
	b := open(t, tg.Path)
	spec := func(symbols ...string) offsets.Spec {
		s := offsets.Spec{Name: "pkg", Module: "std", Package: "some/pkg"}
		for _, sym := range symbols {
			s.Functions = append(s.Functions, offsets.FuncSpec{Symbols: []string{sym}, Optional: true})
		}
		return s
	}
	r, err := offsets.Analyze(b, []offsets.Spec{spec("no/such.Function", "net/http.serverHandler.ServeHTTP"), spec("no/such.Function", "no/such.Other")})
	if err != nil {
		t.Fatal(err)
	}
	if p := r.Probes[0]; !p.Enabled || len(p.Uprobes) != 1 {
		t.Errorf("%s: with one of its functions: %+v", tg, p)
	}
	if p := r.Probes[1]; p.Enabled || !p.Unused() || p.Reason != "the program does not use some/pkg" {
		t.Errorf("%s: with none: enabled %v, unused %v, %q", tg, p.Enabled, p.Unused(), p.Reason)
	}
	// A spec of a whole module the program links, whose optional functions it calls
	// none of (sarama linked, nothing produced): nothing to attach, silently.
	module := offsets.Spec{Name: "mod", Module: "std", Functions: []offsets.FuncSpec{{Symbols: []string{"no/such.Function"}, Optional: true}}}
	if r, err = offsets.Analyze(b, []offsets.Spec{module}); err != nil {
		t.Fatal(err)
	}
	if p := r.Probes[0]; p.Enabled || !p.Unused() || !strings.Contains(p.Reason, "calls none of std's functions") {
		t.Errorf("%s: a module's spec with none of its functions: enabled %v, unused %v, %q", tg, p.Enabled, p.Unused(), p.Reason)
	}
}

// A field is looked up in the database under the module of its package: the longest
// module path that holds it, the standard library (vendored copies included) without.
func TestPackageModule(t *testing.T) {
	b := &offsets.Binary{GoVersion: "go1.26.8", Modules: []offsets.Module{
		{Path: "example.com/app", Version: "(devel)"},
		{Path: "google.golang.org/genproto", Version: "v0.0.0-2020"},
		{Path: "google.golang.org/genproto/googleapis/rpc", Version: "v0.0.0-2023"},
		{Path: "google.golang.org/grpc", Version: "v1.60.1"},
	}}
	for _, c := range []struct{ field, module, version string }{
		{"net/http.Request.Method", "std", "go1.26.8"},
		{"vendor/golang.org/x/net/http2/hpack.HeaderField.Name", "std", "go1.26.8"},
		{"google.golang.org/grpc/internal/transport.Stream.id", "google.golang.org/grpc", "v1.60.1"},
		{"google.golang.org/grpc.ClientConn.target", "google.golang.org/grpc", "v1.60.1"},
		{"google.golang.org/genproto/googleapis/rpc/status.Status.Code", "google.golang.org/genproto/googleapis/rpc", "v0.0.0-2023"},
		{"google.golang.org/genproto/googleapis/api.X.Y", "google.golang.org/genproto", "v0.0.0-2020"},
		{"google.golang.org/grpcx.T.F", "", ""}, // a prefix of the path is no module of it
		{"golang.org/x/net/http2.FrameHeader.StreamID", "", ""},
	} {
		f := fieldRef(c.field)
		if m, v := b.PackageModule(f.Package()); m != c.module || v != c.version {
			t.Errorf("%s (package %s): %s %s, want %s %s", c.field, f.Package(), m, v, c.module, c.version)
		}
	}
}

// A function's calls to another are found where the compiler put them - as objdump
// sees them, in every build mode and on both architectures, the stripped build's the
// same as its twin's -, and a callee that is absent (inlined) disables the probe,
// saying why: it is not a function the program does not use.
func TestFunctionCalls(t *testing.T) {
	const caller, callee = "net/http.(*conn).serve", "net/http.(*conn).readRequest"
	spec := func(calls ...string) offsets.Spec {
		return offsets.Spec{Name: "calls", Module: "std", Functions: []offsets.FuncSpec{{Symbols: []string{caller}, Calls: calls}}}
	}
	sites := map[string][]uint64{} // by target, for its stripped twin
	for _, tg := range targets(t) {
		b := open(t, tg.Path)
		r, err := offsets.Analyze(b, []offsets.Spec{spec(callee), spec("no/such.Function")})
		if err != nil {
			t.Fatal(err)
		}
		p := r.Probes[0]
		if !p.Enabled || len(p.Uprobes) != 1 || len(p.Uprobes[0].Calls) == 0 || p.Uprobes[0].EntryProbe != nil {
			t.Errorf("%s: %+v", tg, p)
			continue
		}
		calls := p.Uprobes[0].Calls
		sites[tg.Toolchain+"/"+tg.Variant.Name] = calls
		if twin, ok := testenv.StrippedTwin(tg.Variant); ok {
			defer func() {
				if got, want := sites[tg.Toolchain+"/"+twin.Name], calls; !slices.Equal(got, want) {
					t.Errorf("%s: stripped build's calls %v, want %v", tg, got, want)
				}
			}()
		}
		if p := r.Probes[1]; p.Enabled || p.Unused() || !strings.Contains(p.Reason, "no/such.Function, which is not in the binary (inlined?)") {
			t.Errorf("%s: callee absent: enabled %v, unused %v, %q", tg, p.Enabled, p.Unused(), p.Reason)
		}
		if tg.Variant.Name != testenv.Plain.Name {
			continue
		}
		// objdump's addresses of the calls, as file offsets.
		out, err := exec.Command("go", "tool", "objdump", "-s", "^"+regexp.QuoteMeta(caller)+"$", tg.Path).Output()
		if err != nil {
			t.Fatalf("%s: objdump: %v", tg, err)
		}
		var want []uint64
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 2 && strings.Contains(line, "CALL "+callee+"(SB)") {
				addr, _ := strconv.ParseUint(strings.TrimPrefix(f[1], "0x"), 16, 64)
				want = append(want, addr)
			}
		}
		funcs, _ := b.Functions(caller)
		for i := range want {
			want[i] = want[i] - funcs[caller].Addr + funcs[caller].Offset
		}
		if !slices.Equal(calls, want) {
			t.Errorf("%s: calls at %#x, objdump says %#x", tg, calls, want)
		}
	}
}
