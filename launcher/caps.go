package launcher

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/otel-go-launcher/otel-go-launcher/internal/capability"
	"github.com/otel-go-launcher/otel-go-launcher/internal/seccomp"
	"github.com/otel-go-launcher/otel-go-launcher/launcher/gate"
)

// ParseKeepCaps reads a --keep-caps list: names separated by commas, with or without the
// CAP_ prefix, any case ("net_admin,CAP_SYS_PTRACE"). Only capabilities the launcher would
// remove can be named.
func ParseKeepCaps(list string) (capability.Set, error) {
	set, err := capability.ParseSet(list)
	if err != nil {
		return 0, fmt.Errorf("--keep-caps: %w", err)
	}
	launcher := capability.SetOf(capability.Launcher...)
	if extra := set &^ launcher; extra != 0 {
		return 0, fmt.Errorf("--keep-caps: %s is not a capability the launcher removes (it removes %s)", extra, launcher)
	}
	return set, nil
}

// ParseDropCaps reads a --drop-caps list: any capabilities, named as for --keep-caps,
// that the app must not have although the launcher does (a runtime that gave the
// launcher capabilities the container was not given).
func ParseDropCaps(list string) (capability.Set, error) {
	set, err := capability.ParseSet(list)
	if err != nil {
		return 0, fmt.Errorf("--drop-caps: %w", err)
	}
	return set, nil
}

// ParseAppCaps reads --app-caps: the app's five capability sets exactly, as an OCI
// runtime gives them ("bounding=CHOWN,KILL;effective=...;permitted=...;inheritable=;ambient=").
func ParseAppCaps(text string) (*capability.Sets, error) {
	s, err := capability.ParseSets(text)
	if err != nil {
		return nil, fmt.Errorf("--app-caps: %w", err)
	}
	return &s, nil
}

// appCaps are the capability sets the app starts with: --app-caps exactly, else the
// launcher's own without the capabilities it keeps for itself (all of
// capability.Launcher but --keep-caps) and without --drop-caps.
func appCaps(cfg Config) (gate.CapSets, error) {
	if s := cfg.AppCaps; s != nil {
		return gate.CapSets{Bounding: uint64(s.Bounding), Effective: uint64(s.Effective), Permitted: uint64(s.Permitted),
			Inheritable: uint64(s.Inheritable), Ambient: uint64(s.Ambient)}, nil
	}
	cur, err := gate.CurrentCaps()
	if err != nil {
		return gate.CapSets{}, fmt.Errorf("read the launcher's capabilities: %w", err)
	}
	drop := uint64(capability.SetOf(capability.Launcher...)&^cfg.KeepCaps | cfg.DropCaps)
	return gate.CapSets{Bounding: cur.Bounding &^ drop, Effective: cur.Effective &^ drop, Permitted: cur.Permitted &^ drop,
		Inheritable: cur.Inheritable &^ drop, Ambient: cur.Ambient &^ drop}, nil
}

// ParseAppSeccomp reads --app-seccomp: the container's OCI seccomp profile (linux.seccomp
// of its config.json; only its rules for seccomp.LauncherCalls matter), and returns the
// filter that gives the app that profile's verdicts for those calls.
func ParseAppSeccomp(text string) (*seccomp.Filter, error) {
	var p specs.LinuxSeccomp
	if err := json.Unmarshal([]byte(text), &p); err != nil {
		return nil, fmt.Errorf("--app-seccomp: %w", err)
	}
	f, err := seccomp.Compile(&p)
	if err != nil {
		return nil, fmt.Errorf("--app-seccomp: %w", err)
	}
	return f, nil
}

// appSeccomp is the filter the app runs under on top of the launcher's: for
// --app-seccomp, that profile's verdicts for seccomp.LauncherCalls. Otherwise, where the
// launcher runs under a filter its engine made for the capabilities it was given (the
// base image, a wrapped image), bpf and perf_event_open are refused to an app that no
// longer has the capabilities engines' default profiles allow them for (seccomp.Deny);
// nil where there is nothing to refuse.
func appSeccomp(cfg Config, caps gate.CapSets) (*gate.Filter, error) {
	if cfg.AppSeccomp != nil {
		return toGate(cfg.AppSeccomp, nil)
	}
	if !underSeccomp() {
		return nil, nil
	}
	cur, err := gate.CurrentCaps()
	if err != nil {
		return nil, err
	}
	launcherHas, appHas := capability.Set(cur.Bounding), capability.Set(caps.Bounding)
	var deny []string
	for _, g := range []struct {
		call  string
		gates capability.Set
	}{
		{"bpf", capability.SetOf(capability.SysAdmin, capability.BPF)},
		{"perf_event_open", capability.SetOf(capability.SysAdmin, capability.Perfmon)},
	} {
		if launcherHas&g.gates != 0 && appHas&g.gates == 0 {
			deny = append(deny, g.call)
		}
	}
	if len(deny) == 0 {
		return nil, nil
	}
	return toGate(seccomp.Deny(deny...))
}

// toGate is f as the start gate takes it.
func toGate(f *seccomp.Filter, err error) (*gate.Filter, error) {
	if err != nil {
		return nil, err
	}
	out := &gate.Filter{Flags: f.Flags, Program: make([]gate.Instruction, len(f.Program))}
	for i, in := range f.Program {
		out.Program[i] = gate.Instruction{Code: in.Code, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	return out, nil
}

// underSeccomp reports whether the launcher runs under a seccomp filter
// (/proc/self/status: "Seccomp: 2").
func underSeccomp() bool {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return false
	}
	defer f.Close()
	for sc := bufio.NewScanner(f); sc.Scan(); {
		if v, ok := strings.CutPrefix(sc.Text(), "Seccomp:"); ok {
			return strings.TrimSpace(v) == "2"
		}
	}
	return false
}

// HasEffective reports whether the calling thread holds every capability in caps.
func HasEffective(caps ...capability.Cap) (missing []capability.Cap, err error) {
	eff, err := gate.EffectiveCaps()
	if err != nil {
		return nil, err
	}
	for _, c := range caps {
		if !capability.Set(eff).Has(c) {
			missing = append(missing, c)
		}
	}
	return missing, nil
}
