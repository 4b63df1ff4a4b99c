package main

import (
	"encoding/json"
	"fmt"
	"os/exec"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/otel-go-launcher/otel-go-launcher/offsets"
)

// siteCounter is a program that only counts its runs, attached where the launcher
// would attach its probes (launch inspect: every entry probe and RET of every enabled
// probe, the context writers included) in a process the launcher does not run: what
// the traps alone cost that process, apart from everything the launcher does.
type siteCounter struct {
	prog  *ebpf.Program
	runs  *ebpf.Map
	links []link.Link
}

// countSites attaches a siteCounter to pid, running bin, at the sites launcher lists.
func countSites(launcher, bin string, pid int) (*siteCounter, error) {
	out, err := exec.Command(launcher, "inspect", "--json", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("launch inspect %s: %w", bin, err)
	}
	var rep struct{ Probes []offsets.ProbeReport }
	if err := json.Unmarshal(out, &rep); err != nil {
		return nil, err
	}
	c := &siteCounter{}
	if c.runs, err = ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1}); err != nil {
		return nil, err
	}
	if c.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.Kprobe, License: "GPL", Instructions: asm.Instructions{
		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.LoadMapPtr(asm.R1, c.runs.FD()),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
		asm.Return(),
	}}); err != nil {
		c.close()
		return nil, err
	}
	ex, err := link.OpenExecutable(bin)
	if err != nil {
		c.close()
		return nil, err
	}
	for _, p := range rep.Probes {
		if !p.Enabled {
			continue
		}
		for _, u := range p.Uprobes {
			sites := u.Returns
			if u.EntryProbe != nil {
				sites = append([]uint64{*u.EntryProbe}, sites...)
			}
			for _, at := range sites {
				l, err := ex.Uprobe("", c.prog, &link.UprobeOptions{Address: at, PID: pid})
				if err != nil {
					c.close()
					return nil, fmt.Errorf("%s at %#x: %w", u.Symbol, at, err)
				}
				c.links = append(c.links, l)
			}
		}
	}
	return c, nil
}

// hits is how many times the sites were hit so far.
func (c *siteCounter) hits() uint64 {
	var n uint64
	c.runs.Lookup(uint32(0), &n)
	return n
}

func (c *siteCounter) close() {
	for _, l := range c.links {
		l.Close()
	}
	if c.prog != nil {
		c.prog.Close()
	}
	c.runs.Close()
}
