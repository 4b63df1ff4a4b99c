package bpf

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// Only keeps the programs named and the maps they use, the ring buffer and global
// variables whatever they use.
func TestOnlyKeepsUsedMaps(t *testing.T) {
	spec := &ebpf.CollectionSpec{
		Maps: map[string]*ebpf.MapSpec{
			"used": {Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 1}, "unused": {Type: ebpf.LRUHash, KeySize: 4, ValueSize: 4, MaxEntries: 8192},
			"events": {Type: ebpf.RingBuf, MaxEntries: 4096}, "lost_events": {Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1},
			".data": {Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1},
		},
		Programs: map[string]*ebpf.ProgramSpec{
			"a": {Type: ebpf.Kprobe, Instructions: asm.Instructions{asm.LoadMapPtr(asm.R1, 0).WithReference("used"), asm.Return()}},
			"b": {Type: ebpf.Kprobe, Instructions: asm.Instructions{asm.LoadMapPtr(asm.R1, 0).WithReference("unused"), asm.Return()}},
		},
	}
	only, err := Only(spec, []string{"a"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := only.Programs["b"]; ok || len(only.Programs) != 1 {
		t.Errorf("programs %v", only.Programs)
	}
	for name, want := range map[string]bool{"used": true, "unused": false, "events": true, "lost_events": true, ".data": true} {
		if _, ok := only.Maps[name]; ok != want {
			t.Errorf("map %s kept: %v, want %v", name, ok, want)
		}
	}
	if len(spec.Maps) != 5 || len(spec.Programs) != 2 {
		t.Error("Only changed the spec it was given")
	}
	if _, err := Only(spec, []string{"c"}); err == nil {
		t.Error("no error for a program the object does not have")
	}
}
