package main

import (
	"encoding/json"
	"fmt"
	"os/exec"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
	"github.com/otel-go-launcher/otel-go-launcher/offsets"
)

// siteCounter is a program that only counts its runs, attached where the launcher
// would attach its probes (launch inspect: every entry probe and RET of every enabled
// probe, the context writers included) in a process the launcher does not run: what
// the traps alone cost that process, apart from everything the launcher does.
type siteCounter struct {
	*testenv.RunCounter
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
	counter, err := testenv.NewRunCounter(ebpf.AttachNone)
	if err != nil {
		return nil, err
	}
	c := &siteCounter{RunCounter: counter}
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
				l, err := ex.Uprobe("", c.Program, &link.UprobeOptions{Address: at, PID: pid})
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
	n, _ := c.Runs()
	return n
}

func (c *siteCounter) close() {
	for _, l := range c.links {
		l.Close()
	}
	c.RunCounter.Close()
}

// sitesIf counts the hits at the launcher's sites in srv's process when traps says to
// (the traps-alone configuration), else returns nil; on error srv is stopped.
func sitesIf(traps bool, launcher, path string, srv *server) (*siteCounter, error) {
	if !traps {
		return nil, nil
	}
	sites, err := countSites(launcher, path, srv.cmd.Process.Pid)
	if err != nil {
		srv.stop()
	}
	return sites, err
}
