// Package capability is the one table of Linux capabilities that the launcher, launch
// doctor and the runtime wrapper share: names, lists, sets, and which ones the launcher
// needs for itself.
package capability

import (
	"fmt"
	"math/bits"
	"strings"
)

// Cap is a capability's number (CAP_SYS_ADMIN = 21, capabilities(7)).
type Cap int

// The capabilities the launcher names in its code.
const (
	NetAdmin    Cap = 12
	SysPtrace   Cap = 19
	SysAdmin    Cap = 21
	SysResource Cap = 24
	Perfmon     Cap = 38
	BPF         Cap = 39
	SetPCap     Cap = 8
	SetUID      Cap = 7
	SetGID      Cap = 6
)

// names are every capability's name, by number.
var names = [...]string{"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
	"SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
	"SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
	"SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
	"MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE"}

// Last is the highest capability this table names.
const Last = Cap(len(names) - 1)

// Tracing are what uprobes and BPF need (CAP_SYS_ADMIN creates uprobes on current
// kernels; BPF and PERFMON load and attach the programs).
var Tracing = []Cap{SysAdmin, BPF, Perfmon}

// Launcher are the capabilities the launcher holds for itself and takes from the app
// by default: Tracing, NET_ADMIN (socket programs), SYS_PTRACE (reading the app),
// SYS_RESOURCE (memlock).
var Launcher = []Cap{SysAdmin, BPF, Perfmon, NetAdmin, SysPtrace, SysResource}

// Name is "SYS_ADMIN", or the number for a capability the table does not name.
func (c Cap) Name() string {
	if c >= 0 && c <= Last {
		return names[c]
	}
	return fmt.Sprint(int(c))
}

// String is "CAP_SYS_ADMIN", as runtime specs and capabilities(7) spell it.
func (c Cap) String() string {
	if c >= 0 && c <= Last {
		return "CAP_" + names[c]
	}
	return fmt.Sprintf("capability %d", int(c))
}

// Parse reads a capability's name, with or without CAP_, in any case.
func Parse(name string) (Cap, bool) {
	name = strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(name)), "CAP_")
	for i, n := range names {
		if n == name {
			return Cap(i), true
		}
	}
	return 0, false
}

// Set is a set of capabilities as the kernel keeps one: bit N is capability N.
type Set uint64

// SetOf is the set of caps.
func SetOf(caps ...Cap) Set {
	var s Set
	for _, c := range caps {
		s |= 1 << uint(c)
	}
	return s
}

// Has reports whether c is in s.
func (s Set) Has(c Cap) bool { return c >= 0 && c < 64 && s&(1<<uint(c)) != 0 }

// Caps lists s in order.
func (s Set) Caps() []Cap {
	var out []Cap
	for v := uint64(s); v != 0; v &= v - 1 {
		out = append(out, Cap(bits.TrailingZeros64(v)))
	}
	return out
}

// String is s as a list of names without CAP_, comma-separated, "" for none: what
// ParseSet reads.
func (s Set) String() string { return s.Join(",") }

// Join is s's names without CAP_, in order, separated by sep.
func (s Set) Join(sep string) string {
	var b strings.Builder
	for i, c := range s.Caps() {
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(c.Name())
	}
	return b.String()
}

// ParseSet reads a comma-separated list of names ("net_admin,CAP_SYS_PTRACE"; empty
// fields are skipped, "" is the empty set).
func ParseSet(list string) (Set, error) {
	var s Set
	for _, f := range strings.Split(list, ",") {
		if strings.TrimSpace(f) == "" {
			continue
		}
		c, ok := Parse(f)
		if !ok {
			return 0, fmt.Errorf("%q is not a capability name (see capabilities(7))", strings.TrimSpace(f))
		}
		s |= SetOf(c)
	}
	return s, nil
}

// Sets are a process's five capability sets, as an OCI runtime spec gives them
// (process.capabilities).
type Sets struct {
	Bounding, Effective, Permitted, Inheritable, Ambient Set
}

// setNames are the Sets' names in their text form, in order.
var setNames = [...]string{"bounding", "effective", "permitted", "inheritable", "ambient"}

func (s *Sets) fields() [5]*Set {
	return [5]*Set{&s.Bounding, &s.Effective, &s.Permitted, &s.Inheritable, &s.Ambient}
}

// String is "bounding=CHOWN,KILL;effective=...;permitted=...;inheritable=;ambient=":
// every set named, what ParseSets reads.
func (s Sets) String() string {
	parts := make([]string, 0, len(setNames))
	for i, f := range s.fields() {
		parts = append(parts, setNames[i]+"="+f.String())
	}
	return strings.Join(parts, ";")
}

// ParseSets reads what Sets.String writes. Every set must be named, once: a set left
// out would be ambiguous (none, or unchanged?).
func ParseSets(text string) (Sets, error) {
	var s Sets
	seen := map[string]bool{}
	fields := s.fields()
	for _, part := range strings.Split(text, ";") {
		name, list, ok := strings.Cut(part, "=")
		name = strings.TrimSpace(name)
		i := indexOf(setNames[:], name)
		if !ok || i < 0 {
			return Sets{}, fmt.Errorf("%q: want SET=LIST with SET one of %s", part, strings.Join(setNames[:], ", "))
		}
		if seen[name] {
			return Sets{}, fmt.Errorf("%s given twice", name)
		}
		seen[name] = true
		set, err := ParseSet(list)
		if err != nil {
			return Sets{}, fmt.Errorf("%s: %w", name, err)
		}
		*fields[i] = set
	}
	for _, n := range setNames {
		if !seen[n] {
			return Sets{}, fmt.Errorf("%s missing: name all five sets (%s), empty for none", n, strings.Join(setNames[:], ", "))
		}
	}
	return s, nil
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}
