package e2e

import (
	"encoding/json"
	"fmt"
	"go/version"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
	"github.com/otel-go-launcher/otel-go-launcher/offsets"
)

// strippedToolchains are the releases the stripped-binary comparison covers; in
// go1.26.11 a patch release moved http.response's status field.
var strippedToolchains = []string{"go1.22.12", "go1.24.11", "go1.25.9", "go1.26.8", "go1.26.11", "go1.27.3"}

// A service built as production builds are (-trimpath -ldflags="-s -w": no symbols, no
// DWARF) is traced exactly like the same service built plainly: the same spans, with
// the same names, attributes, routes, statuses, incoming context and parent links, for
// server and client spans - its offsets come from the embedded database instead of
// DWARF.
func TestStrippedSpansEqualPlain(t *testing.T) {
	testenv.RequireRoot(t)
	tgs := testenv.BuildTargets(t, "httpserver", strippedToolchains, []testenv.Variant{testenv.Plain, testenv.Production})
	for _, toolchain := range strippedToolchains {
		t.Run(toolchain, func(t *testing.T) {
			var got [2][]string
			for i, v := range []testenv.Variant{testenv.Plain, testenv.Production} {
				at := slices.IndexFunc(tgs, func(tg testenv.Target) bool { return tg.Toolchain == toolchain && tg.Variant.Name == v.Name })
				if at < 0 {
					t.Fatalf("no %s build", v.Name)
				}
				got[i] = tracedSpans(t, tgs[at])
			}
			if len(got[0]) < 14 {
				t.Fatalf("plain build: %d spans:\n%s", len(got[0]), strings.Join(got[0], "\n"))
			}
			t.Logf("spans:\n%s", strings.Join(got[0], "\n"))
			if !slices.Equal(got[0], got[1]) {
				t.Errorf("spans differ\nplain:\n%s\nstripped:\n%s", strings.Join(got[0], "\n"), strings.Join(got[1], "\n"))
			}
		})
	}
}

// A stripped binary of a release the offsets database lacks (here: the embedded
// database without Go 1.27, given with --offsets-db) is traced all the same: its
// offsets come from its own type descriptors, and its spans equal the plain build's.
func TestUnknownReleaseUsesTypeInfo(t *testing.T) {
	testenv.RequireRoot(t)
	tgs := testenv.BuildTargets(t, "httpserver", []string{"go1.27.3"}, []testenv.Variant{testenv.Plain, testenv.Production})
	db, err := offsets.EmbeddedDatabase()
	if err != nil {
		t.Fatal(err)
	}
	without, err := db.Filter(func(_, v string) bool { return version.Lang(v) != "go1.27" })
	if err != nil {
		t.Fatal(err)
	}
	data, err := without.Encode()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "offsets.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	flags := []string{"--offsets-db", path}

	e, out, stderr := runLaunch(t, opts{}, launchBin(t), "--offsets-db", path, "inspect", "--json", tgs[1].Path)
	var r offsets.Report
	if e.code != 0 || json.Unmarshal([]byte(out), &r) != nil {
		t.Fatalf("inspect: %v %s", e, stderr)
	}
	for _, p := range r.Probes {
		if !strings.HasPrefix(p.Name, "net/http.") {
			continue // a library the program does not use
		}
		if !p.Enabled {
			t.Errorf("%s disabled: %s", p.Name, p.Reason)
		}
		for _, f := range p.Fields {
			if f.Source != offsets.SourceTypeInfo && f.Source != offsets.SourceMissing {
				t.Errorf("%s: %s from %s, want typeinfo", p.Name, f.Name, f.Source)
			}
		}
	}
	plain, stripped := tracedSpans(t, tgs[0]), tracedSpans(t, tgs[1], flags...)
	if len(plain) < 9 || !slices.Equal(plain, stripped) {
		t.Errorf("spans differ\nplain:\n%s\nstripped, offsets from type descriptors:\n%s", strings.Join(plain, "\n"), strings.Join(stripped, "\n"))
	}
	// A file that is not a database is refused, naming it.
	e, _, stderr = runLaunch(t, opts{}, launchBin(t), "--offsets-db", "/etc/hostname", "inspect", tgs[1].Path)
	if e.code != 2 || !strings.Contains(stderr, "--offsets-db: /etc/hostname: offsets database") {
		t.Errorf("a bad offsets database: %v %q", e, stderr)
	}
}

// tracedSpans runs tg under the launcher, sends the same requests each time, and
// describes the spans independently of ports, times and generated IDs.
func tracedSpans(t *testing.T, tg testenv.Target, flags ...string) []string {
	t.Helper()
	recv := testenv.StartReceiver(t)
	r, addr := tracedServerWith(t, tg, recv, flags)
	firstRequest(t, addr, "/items/first")
	client := &http.Client{Transport: &http.Transport{}}
	base := "http://" + addr
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	get(t, client, base+"/items/42?x=1", map[string]string{
		"User-Agent":  "e2e-agent/1.0",
		"Traceparent": "00-" + traceID + "-00f067aa0ba902b7-01",
		"Tracestate":  "vendor=value",
	})
	many := map[string]string{"Traceparent": "00-" + traceID + "-1111111111111111-01"}
	for i := 0; i < 20; i++ {
		many[fmt.Sprintf("X-Filler-%02d", i)] = strings.Repeat("v", i+1)
	}
	get(t, client, base+"/items/many", many)
	get(t, client, base+"/status/503", nil)
	// A server span, its client span, and the server span of the call it makes (to the
	// same service), joined by the traceparent the kernel inserts.
	get(t, client, base+"/proxy?to="+base+"/echo", nil)
	// A failed call: the client span's error.type names the error's Go type.
	get(t, client, base+"/refused", nil)
	// database/sql with the program's own driver: a query, a statement, a prepared
	// statement queried and executed - four client spans under the request's.
	get(t, client, base+"/sql", nil)
	const want = 9 + 5
	spans, ok := recv.WaitFor(10*time.Second, func(s []testenv.Span) bool { return len(s) >= want })
	if !ok {
		t.Fatalf("%s: %d spans, want %d\nlauncher:\n%s", tg, len(spans), want, r.stderr)
	}
	r.signal(syscall.SIGTERM)
	r.wait(10 * time.Second)

	byID := map[string]testenv.Span{}
	for _, s := range spans {
		byID[s.SpanID] = s
	}
	var out []string
	for _, s := range spans {
		var attrs []string
		for k, v := range s.Attrs {
			if strings.HasSuffix(k, ".port") {
				continue // ports differ from run to run
			}
			attrs = append(attrs, fmt.Sprintf("%s=%v", k, strings.ReplaceAll(fmt.Sprint(v), addr, "ADDR")))
		}
		sort.Strings(attrs)
		parent := "root"
		if p, ok := byID[s.ParentSpanID]; ok {
			parent = fmt.Sprintf("child of %s %s", p.Kind, p.Name)
			if p.TraceID != s.TraceID {
				parent += " IN ANOTHER TRACE"
			}
		} else if s.ParentSpanID != "" {
			parent = "remote parent " + s.TraceID + "-" + s.ParentSpanID
		}
		out = append(out, fmt.Sprintf("%s %q %s [%s] %s state=%q", s.Kind, s.Name, s.StatusCode, strings.Join(attrs, " "), parent, s.TraceState))
	}
	sort.Strings(out)
	return out
}
