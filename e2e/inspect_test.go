package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// launch inspect --json follows the contract: the keys and kinds other tools rely on.
func TestInspectJSONContract(t *testing.T) {
	tgs := testenv.BuildTargets(t, "httpserver", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain, testenv.Stripped})
	for _, tg := range tgs {
		e, out, stderr := runLaunch(t, opts{}, launchBin(t), "inspect", "--json", tg.Path)
		if e.code != 0 {
			t.Fatalf("%s: %v\n%s", tg, e, stderr)
		}
		var r map[string]any
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("%s: %v\n%s", tg, err, out)
		}
		if r["go_version"] != "go1.26.8" || r["arch"] != "amd64" || r["stripped"] != (tg.Variant.Name == "stripped") || r["dwarf"] != (tg.Variant.Name == "plain") {
			t.Errorf("%s: header %v", tg, r)
		}
		mods, _ := r["modules"].([]any)
		if len(mods) == 0 || mods[0].(map[string]any)["path"] != "example.com/httpserver" {
			t.Errorf("%s: modules %v", tg, r["modules"])
		}
		probes, _ := r["probes"].([]any)
		if len(probes) == 0 {
			t.Fatalf("%s: no probes", tg)
		}
		p := probes[0].(map[string]any)
		for _, k := range []string{"name", "enabled", "reason", "uprobes", "fields"} {
			if _, ok := p[k]; !ok {
				t.Errorf("%s: probe lacks %q: %v", tg, k, p)
			}
		}
		u := p["uprobes"].([]any)[0].(map[string]any)
		if _, ok := u["returns"]; u["symbol"] != "net/http.serverHandler.ServeHTTP" || u["offset"].(float64) <= 0 || !ok {
			t.Errorf("%s: uprobe %v", tg, u)
		}
		// The server span ends at an entry, not at RETs: no single-stepped hit.
		if end := p["uprobes"].([]any)[1].(map[string]any); end["symbol"] != "net/http.(*response).finishRequest" || end["entry_probe"] == nil {
			t.Errorf("%s: the server span's end %v, want finishRequest's entry", tg, end)
		}
		for _, up := range p["uprobes"].([]any) {
			if r, _ := up.(map[string]any)["returns"].([]any); len(r) > 0 {
				t.Errorf("%s: server uprobe at RETs: %v", tg, up)
			}
		}
		if c := probes[1].(map[string]any); c["name"] != "net/http.client" || len(c["uprobes"].([]any)[0].(map[string]any)["returns"].([]any)) == 0 {
			t.Errorf("%s: client probe %v, want roundTrip's RETs", tg, c)
		}
		// ServeHTTP starts with CMPQ SP, 16(R14); JLS: its entry probe is on the JLS.
		if entry, want := u["entry_probe"], u["offset"].(float64)+4; entry != want {
			t.Errorf("%s: entry probe at %v, want %v (the stack check's branch)", tg, entry, want)
		}
		// Plain builds have DWARF; stripped ones use the embedded database.
		want := map[string]string{"plain": "dwarf", "stripped": "db"}[tg.Variant.Name]
		for _, f := range p["fields"].([]any) {
			f := f.(map[string]any)
			src := f["source"]
			if src != want && src != "missing" || (src == "missing") != (f["offset"] == nil) {
				t.Errorf("%s: field %v, want source %s", tg, f, want)
			}
		}
		if p["enabled"] != true {
			t.Errorf("%s: probe disabled: %v", tg, p["reason"])
		}
	}
	// The human form is short and says the same.
	for _, tg := range tgs {
		want := map[string]string{"plain": "from dwarf", "stripped": "from db"}[tg.Variant.Name]
		e, out, _ := runLaunch(t, opts{}, launchBin(t), "inspect", tg.Path)
		// At most 40 lines: the net/http server alone has five uprobes, and every probe its line.
		if e.code != 0 || !strings.Contains(out, "probe net/http.server: enabled") || !strings.Contains(out, "probe net/http.client: enabled") ||
			!strings.Contains(out, want) || strings.Count(out, "\n") > 40 {
			t.Errorf("%s: human report:\n%s", tg, out)
		}
		// Short: the binary, its main module, then a line per probe, uprobe and field source.
		for i, line := range strings.Split(strings.TrimSpace(out), "\n")[2:] {
			if f := strings.Fields(line); len(f) == 0 || f[0] != "probe" && f[0] != "uprobe" && f[0] != "fields" {
				t.Errorf("%s: line %d of the human report: %q", tg, i+3, line)
			}
		}
	}
}

// Bad input: one line naming the file and the cause, exit 1.
func TestInspectBadInput(t *testing.T) {
	dir, err := os.MkdirTemp("", "inspect-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	text := filepath.Join(dir, "text")
	os.WriteFile(text, []byte("#!/bin/sh\n"), 0o755)
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("x"), 0o600)

	cases := []struct {
		wrap []string
		path string
		want string
	}{
		{nil, text, "not an ELF file"},
		{nil, dir, "is a directory"},
		{nil, "/bin/true", "not a Go program"},
		{nil, filepath.Join(dir, "missing"), "no such file"},
	}
	if os.Geteuid() == 0 { // as another user, a root-only file is unreadable
		cases = append(cases, struct {
			wrap []string
			path string
			want string
		}{[]string{testenv.RequireCommand(t, "setpriv"), "--reuid", "65534", "--regid", "65534", "--clear-groups", "--"}, secret, "permission denied"})
	}
	for _, c := range cases {
		e, out, stderr := runLaunch(t, opts{wrap: c.wrap}, launchBin(t), "inspect", c.path)
		if e.code != 1 || out != "" || !strings.HasPrefix(stderr, "launch inspect: "+c.path+": ") ||
			!strings.Contains(stderr, c.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("inspect %s: %v, stderr %q; want exit 1 and one line with %q", c.path, e, stderr, c.want)
		}
	}
	if e, _, stderr := runLaunch(t, opts{}, launchBin(t), "inspect"); e.code != 2 || !strings.Contains(stderr, "BINARY") {
		t.Errorf("inspect without a binary: %v %q", e, stderr)
	}
}
