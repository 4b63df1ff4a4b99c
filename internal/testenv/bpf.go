package testenv

import (
	"regexp"
	"strconv"
	"testing"

	"github.com/cilium/ebpf"
)

// MaxVerifiedInsns bounds the verifier's work per program: loading happens while the
// app waits at the start gate, and a program near the kernel's limit (1M) takes a
// second to verify, or stops loading after a compiler update.
const MaxVerifiedInsns = 50_000

// ProgramsLoad checks that every program of a BPF object loads on this kernel, each
// alone, within MaxVerifiedInsns.
func ProgramsLoad(t *testing.T, spec *ebpf.CollectionSpec) {
	t.Helper()
	RequireRoot(t)
	processed := regexp.MustCompile(`processed (\d+) insns`)
	for name := range spec.Programs {
		one := spec.Copy()
		for n := range one.Programs {
			if n != name {
				delete(one.Programs, n)
			}
		}
		coll, err := ebpf.NewCollectionWithOptions(one, ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats}})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		m := processed.FindStringSubmatch(coll.Programs[name].VerifierLog)
		coll.Close()
		if m == nil {
			t.Errorf("%s: no instruction count in the verifier's log", name)
			continue
		}
		n, _ := strconv.Atoi(m[1])
		t.Logf("%s: %d instructions verified", name, n)
		if n > MaxVerifiedInsns {
			t.Errorf("%s: the verifier walked %d instructions (budget %d)", name, n, MaxVerifiedInsns)
		}
	}
}
