package offsets_test

import (
	"encoding/json"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/otel-go-launcher/otel-go-launcher/offsets"
)

// ContextParents finds, in every Go release and build mode tested (stripped, PIE,
// external link, arm64), the test program's context wrappers whose parent is not their
// first word, at the itab the running program's interfaces hold and the offsets it
// computes itself (Go 1.20's timerCtx too, whose parent is behind an embedded pointer);
// the standard contexts whose parent is first are not listed.
func TestContextParentsMatchTheProgram(t *testing.T) {
	for _, tg := range targets(t) {
		if strings.HasPrefix(tg.Variant.Name, "arm64") && runtime.GOARCH != "arm64" {
			continue
		}
		cmd := exec.Command(tg.Path, "contexts")
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
		var want map[string]struct{ Itab, Hop, Offset uint64 }
		err = json.NewDecoder(out).Decode(&want)
		var got map[string]offsets.ContextParent
		if err == nil {
			got, err = relocatedContextParents(tg.Path, cmd.Process.Pid)
		}
		stdin.Close()
		cmd.Wait()
		if err != nil {
			t.Fatalf("%s: %v", tg, err)
		}
		if len(want) != 7 {
			t.Fatalf("%s: the program printed %v", tg, want)
		}
		for name, w := range want {
			g, listed := got[name]
			switch {
			case w.Hop == 0 && w.Offset == 0 && listed:
				t.Errorf("%s: %s keeps its parent first, but is listed: %+v", tg, name, g)
			case w.Hop == 0 && w.Offset == 0:
			case !listed:
				t.Errorf("%s: %s (parent at hop %d offset %d) is not listed", tg, name, w.Hop, w.Offset)
			case g.Itab != w.Itab || g.Hop != w.Hop || g.Offset != w.Offset:
				t.Errorf("%s: %s: itab %#x hop %d offset %d, want %#x %d %d", tg, name, g.Itab, g.Hop, g.Offset, w.Itab, w.Hop, w.Offset)
			}
		}
	}
}

// relocatedContextParents is ContextParents by type name, with the itabs where process
// pid has them.
func relocatedContextParents(path string, pid int) (map[string]offsets.ContextParent, error) {
	b, err := offsets.Open(path)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	list, err := b.ContextParents()
	if err != nil {
		return nil, err
	}
	links := map[string]uint64{}
	for _, p := range list {
		links[p.Type] = p.Itab
	}
	tn := offsets.NewTypeNames(path)
	defer tn.Close()
	addrs, err := tn.Addresses(pid, links)
	if err != nil {
		return nil, err
	}
	byName := map[string]offsets.ContextParent{}
	for _, p := range list {
		p.Itab = addrs[p.Type]
		byName[p.Type] = p
	}
	return byName, nil
}
