// Package seccomp builds the seccomp filter the app runs under in addition to the
// container's: the container's filter must let the launcher call bpf, perf_event_open,
// mount and umount2, and this one gives the app, for exactly those four calls, the
// verdicts its own profile gives them. Filters stack and the kernel takes the most
// restrictive verdict, so the pair is the profile: the app can do no more than under
// the profile alone.
//
// The filter is classic BPF over struct seccomp_data, built here from an OCI seccomp
// profile (runtime-spec's LinuxSeccomp) with runc's and libseccomp's reading of it, for
// the native architecture and the compat ones the profile lists. Rules for other calls
// are the container's filter's business and are not looked at.
package seccomp

import (
	"errors"
	"fmt"
	"runtime"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// LauncherCalls are the system calls the launcher needs that a container's profile
// usually allows only with capabilities the app is not given.
var LauncherCalls = []string{"bpf", "perf_event_open", "mount", "umount2"}

// Instruction is one classic BPF instruction (struct sock_filter).
type Instruction struct {
	Code   uint16
	Jt, Jf uint8
	K      uint32
}

// Filter is a program to install with seccomp(SECCOMP_SET_MODE_FILTER, Flags).
type Filter struct {
	Flags   uint32
	Program []Instruction
}

// ErrUnsupported is wrapped by errors for profiles whose verdicts for LauncherCalls
// this package cannot reproduce exactly (a notify action, conditional rules with
// different actions for one call, which libseccomp orders in ways of its own): such a
// container must run as its profile says, untraced.
var ErrUnsupported = errors.New("not reproducible by the launcher")

// seccomp return values (linux/seccomp.h).
const (
	retKillProcess = 0x80000000
	retKillThread  = 0x00000000
	retTrap        = 0x00030000
	retErrno       = 0x00050000
	retTrace       = 0x7ff00000
	retLog         = 0x7ffc0000
	retAllow       = 0x7fff0000
	eperm          = 1
)

// filter flags (linux/seccomp.h).
const (
	flagLog       = 1 << 1
	flagSpecAllow = 1 << 2
)

// arch is an architecture's audit number and the numbers of LauncherCalls on it.
type arch struct {
	name   specs.Arch
	audit  uint32
	x32    bool // x86_64's x32 ABI: the same audit number, calls numbered from 0x40000000
	is32   bool // arguments are 32 bits wide: libseccomp compares only their low halves
	number map[string]uint32
}

const (
	auditX8664   = 0xc000003e
	auditI386    = 0x40000003
	auditAArch64 = 0xc00000b7
	auditARM     = 0x40000028
	x32Bit       = 0x40000000
)

var (
	archX8664   = arch{specs.ArchX86_64, auditX8664, false, false, map[string]uint32{"bpf": 321, "perf_event_open": 298, "mount": 165, "umount2": 166}}
	archX32     = arch{specs.ArchX32, auditX8664, true, false, map[string]uint32{"bpf": x32Bit + 321, "perf_event_open": x32Bit + 298, "mount": x32Bit + 165, "umount2": x32Bit + 166}}
	archI386    = arch{specs.ArchX86, auditI386, false, true, map[string]uint32{"bpf": 357, "perf_event_open": 336, "mount": 21, "umount2": 52}}
	archAArch64 = arch{specs.ArchAARCH64, auditAArch64, false, false, map[string]uint32{"bpf": 280, "perf_event_open": 241, "mount": 40, "umount2": 39}}
	archARM     = arch{specs.ArchARM, auditARM, false, true, map[string]uint32{"bpf": 386, "perf_event_open": 364, "mount": 21, "umount2": 52}}
)

// archesFor is the native architecture of goarch and the compat ones it can run.
func archesFor(goarch string) (native arch, compat []arch, err error) {
	switch goarch {
	case "amd64":
		return archX8664, []arch{archI386, archX32}, nil
	case "arm64":
		return archAArch64, []arch{archARM}, nil
	}
	return arch{}, nil, fmt.Errorf("seccomp filters for %s: %w", goarch, ErrUnsupported)
}

// Compile builds the app's filter from the container's profile: LauncherCalls get the
// profile's verdicts (on the native architecture, and on the compat ones the profile
// lists), every other call is allowed (the container's filter decides those).
func Compile(p *specs.LinuxSeccomp) (*Filter, error) {
	return compile(p, runtime.GOARCH)
}

func compile(p *specs.LinuxSeccomp, goarch string) (*Filter, error) {
	native, compat, err := archesFor(goarch)
	if err != nil {
		return nil, err
	}
	def, err := action(p.DefaultAction, p.DefaultErrnoRet)
	if err != nil {
		return nil, fmt.Errorf("defaultAction: %w", err)
	}
	arches := []arch{native}
	for _, a := range compat {
		if slices.Contains(p.Architectures, a.name) {
			arches = append(arches, a)
		}
	}
	f := &Filter{}
	for _, fl := range p.Flags {
		switch fl {
		case specs.LinuxSeccompFlagLog:
			f.Flags |= flagLog
		case specs.LinuxSeccompFlagSpecAllow:
			f.Flags |= flagSpecAllow
		}
	}
	verdicts := map[string]verdict{}
	for _, call := range LauncherCalls {
		v, err := verdictOf(p, call, def)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", call, err)
		}
		verdicts[call] = v
	}
	f.Program, err = assemble(arches, verdicts)
	return f, err
}

// verdict is what a profile decides for one call: wide, or the first conditional
// rule whose conditions all hold (cond, all of one action), else fallback.
type verdict struct {
	wide     *uint32 // a rule without conditions: it decides alone
	cond     [][]arg // alternatives, each a conjunction of conditions
	condRet  uint32  // the conditional rules' action
	fallback uint32  // the default action
}

type arg struct {
	index         uint
	op            specs.LinuxSeccompOperator
	value, value2 uint64
}

// verdictOf reads p's rules for call as runc hands them to libseccomp:
//   - a rule whose action is the default action is skipped (libseccomp refuses it);
//   - a rule with several conditions on one argument becomes one rule per condition;
//   - a rule without conditions decides the call alone, and the first one added wins;
//   - conditional rules of one action match when any of them does. Conditional rules
//     of different actions are ErrUnsupported: which one libseccomp's decision tree
//     lets win where both match depends on their arguments and operators.
func verdictOf(p *specs.LinuxSeccomp, call string, def uint32) (verdict, error) {
	v := verdict{fallback: def}
	condAction := uint32(0)
	for i, r := range p.Syscalls {
		if !slices.Contains(r.Names, call) {
			continue
		}
		ret, err := action(r.Action, r.ErrnoRet)
		if err != nil {
			return v, fmt.Errorf("syscalls[%d]: %w", i, err)
		}
		if ret == def {
			continue
		}
		if len(r.Args) == 0 {
			if v.wide == nil {
				v.wide = &ret
			}
			continue
		}
		args, err := args(r.Args)
		if err != nil {
			return v, fmt.Errorf("syscalls[%d]: %w", i, err)
		}
		if len(v.cond) > 0 && ret != condAction {
			return v, fmt.Errorf("conditional rules with different actions: %w", ErrUnsupported)
		}
		condAction = ret
		if sameIndexTwice(args) {
			for _, a := range args {
				v.cond = append(v.cond, []arg{a})
			}
		} else {
			v.cond = append(v.cond, args)
		}
	}
	v.condRet = condAction
	return v, nil
}

func args(in []specs.LinuxSeccompArg) ([]arg, error) {
	out := make([]arg, len(in))
	for i, a := range in {
		if a.Index > 5 {
			return nil, fmt.Errorf("argument index %d: a call has six", a.Index)
		}
		switch a.Op {
		case specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual, specs.OpEqualTo, specs.OpGreaterEqual, specs.OpGreaterThan, specs.OpMaskedEqual:
		default:
			return nil, fmt.Errorf("operator %q: unknown", a.Op)
		}
		out[i] = arg{a.Index, a.Op, a.Value, a.ValueTwo}
	}
	return out, nil
}

func sameIndexTwice(args []arg) bool {
	var seen [6]bool
	for _, a := range args {
		if seen[a.index] {
			return true
		}
		seen[a.index] = true
	}
	return false
}

// action is the seccomp return value of an OCI action, with runc's errno defaults.
func action(a specs.LinuxSeccompAction, errnoRet *uint) (uint32, error) {
	data := func() uint32 {
		if errnoRet == nil {
			return eperm
		}
		return uint32(*errnoRet) & 0xffff
	}
	switch a {
	case specs.ActKill, specs.ActKillThread:
		return retKillThread, nil
	case specs.ActKillProcess:
		return retKillProcess, nil
	case specs.ActTrap:
		return retTrap, nil
	case specs.ActErrno:
		return retErrno | data(), nil
	case specs.ActTrace:
		return retTrace | data(), nil
	case specs.ActAllow:
		return retAllow, nil
	case specs.ActLog:
		return retLog, nil
	case specs.ActNotify:
		// Notifications go to the runtime's listener, which has the container's
		// filter, not ours.
		return 0, fmt.Errorf("action %s: %w", a, ErrUnsupported)
	}
	return 0, fmt.Errorf("action %q: unknown", a)
}

// Deny is the filter for an app the launcher knows no profile of (the base image, a
// wrapped image), run under a seccomp filter: the container's engine made that filter
// for the launcher's capabilities, and engines' default profiles allow bpf only with
// CAP_SYS_ADMIN or CAP_BPF, perf_event_open only with CAP_SYS_ADMIN or CAP_PERFMON.
// An app that lacks them gets EPERM for those calls, as the engine's profile would
// have given it. mount and umount2 are left to the kernel's capability checks (some
// engines' profiles allow them to all).
func Deny(calls ...string) (*Filter, error) {
	p := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{specs.ArchX86, specs.ArchX32, specs.ArchARM}}
	if len(calls) > 0 {
		p.Syscalls = []specs.LinuxSyscall{{Names: calls, Action: specs.ActErrno}}
	}
	return Compile(p)
}
