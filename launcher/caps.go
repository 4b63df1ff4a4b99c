package launcher

import (
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/otel-go-launcher/otel-go-launcher/launcher/gate"
)

// Capability is a Linux capability number (CAP_SYS_ADMIN = 21, ...).
type Capability int

// The capabilities the launcher needs for itself (uprobes, BPF, socket programs,
// reading the target, memlock) and therefore removes from the app by default.
const (
	CapNetAdmin    Capability = unix.CAP_NET_ADMIN
	CapSysPtrace   Capability = unix.CAP_SYS_PTRACE
	CapSysAdmin    Capability = unix.CAP_SYS_ADMIN
	CapSysResource Capability = unix.CAP_SYS_RESOURCE
	CapPerfmon     Capability = unix.CAP_PERFMON
	CapBPF         Capability = unix.CAP_BPF
)

// LauncherCapabilities are removed from the app unless kept with --keep-caps.
var LauncherCapabilities = []Capability{CapSysAdmin, CapBPF, CapPerfmon, CapNetAdmin, CapSysPtrace, CapSysResource}

func (c Capability) String() string {
	if name, ok := c.name(); ok {
		return "CAP_" + name
	}
	return fmt.Sprintf("capability %d", int(c))
}

func (c Capability) name() (string, bool) {
	if c < 0 || int(c) >= len(capabilityNames) {
		return "", false
	}
	return capabilityNames[c], true
}

// ParseKeepCaps reads a --keep-caps list: names separated by commas, with or without the
// CAP_ prefix, any case ("net_admin,CAP_SYS_PTRACE"). Only capabilities the launcher would
// remove can be named.
func ParseKeepCaps(list string) ([]Capability, error) {
	return parseCaps(list, func(c Capability, ok bool, field string) error {
		if !ok || !slices.Contains(LauncherCapabilities, c) {
			return fmt.Errorf("--keep-caps: %q is not a capability the launcher removes (it removes %s)", field, capList(LauncherCapabilities))
		}
		return nil
	})
}

// parseCaps reads a comma-separated list of capability names; check refuses a field
// (ok: the name is a capability's).
func parseCaps(list string, check func(c Capability, ok bool, field string) error) ([]Capability, error) {
	var caps []Capability
	for _, f := range strings.Split(list, ",") {
		name := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(f)), "CAP_")
		if name == "" {
			continue
		}
		i := slices.Index(capabilityNames, name)
		if err := check(Capability(i), i >= 0, f); err != nil {
			return nil, err
		}
		caps = append(caps, Capability(i))
	}
	return caps, nil
}

func capList(caps []Capability) string {
	names := make([]string, len(caps))
	for i, c := range caps {
		names[i], _ = c.name()
	}
	return strings.Join(names, ", ")
}

// capabilityNames are every capability's name, by number (capability(7)).
var capabilityNames = []string{"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
	"SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
	"SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
	"SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
	"MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE"}

// ParseDropCaps reads a --drop-caps list: any capabilities, named as for --keep-caps,
// that the app must not have although the launcher does. An OCI runtime wrapper that
// gives the launcher capabilities the container was not given (CAP_SETPCAP to shrink the
// app's bounding set, CAP_SETUID and CAP_SETGID for --user) names them here.
func ParseDropCaps(list string) ([]Capability, error) {
	return parseCaps(list, func(_ Capability, ok bool, field string) error {
		if !ok {
			return fmt.Errorf("--drop-caps: %q is not a capability name (see capabilities(7))", field)
		}
		return nil
	})
}

// capsToDrop is LauncherCapabilities without the kept ones, and the extra ones, as
// numbers.
func capsToDrop(keep, extra []Capability) []int {
	var drop []int
	for _, c := range extra {
		drop = append(drop, int(c))
	}
	for _, c := range LauncherCapabilities {
		kept := false
		for _, k := range keep {
			kept = kept || k == c
		}
		if !kept && !slices.Contains(drop, int(c)) {
			drop = append(drop, int(c))
		}
	}
	return drop
}

// HasEffective reports whether the calling thread holds every capability in caps.
func HasEffective(caps ...Capability) (missing []Capability, err error) {
	eff, err := gate.EffectiveCaps()
	if err != nil {
		return nil, err
	}
	for _, c := range caps {
		if eff&(1<<uint(c)) == 0 {
			missing = append(missing, c)
		}
	}
	return missing, nil
}
