package launcher

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/otel-go-launcher/otel-go-launcher/internal/capability"
	"github.com/otel-go-launcher/otel-go-launcher/launcher/gate"
)

func TestParseKeepCaps(t *testing.T) {
	got, err := ParseKeepCaps(" net_admin, CAP_SYS_PTRACE ,bpf,")
	if err != nil {
		t.Fatal(err)
	}
	if want := capability.SetOf(capability.NetAdmin, capability.SysPtrace, capability.BPF); got != want {
		t.Errorf("got %v, want %v", got, want)
	}
	if got, err := ParseKeepCaps(""); err != nil || got != 0 {
		t.Errorf("empty list: %v %v", got, err)
	}
	if _, err := ParseKeepCaps("chown"); err == nil || !strings.Contains(err.Error(), "SYS_ADMIN") {
		t.Errorf("unknown capability: err %v, want one listing what can be kept", err)
	}
}

// The app's sets: the launcher's without what it keeps for itself (but --keep-caps)
// and without --drop-caps; --app-caps exactly.
func TestAppCaps(t *testing.T) {
	cur, err := gate.CurrentCaps()
	if err != nil {
		t.Fatal(err)
	}
	got, err := appCaps(Config{KeepCaps: capability.SetOf(capability.NetAdmin), DropCaps: capability.SetOf(capability.SetPCap)})
	if err != nil {
		t.Fatal(err)
	}
	drop := uint64(capability.SetOf(capability.SysAdmin, capability.BPF, capability.Perfmon, capability.SysPtrace, capability.SysResource, capability.SetPCap))
	if want := (gate.CapSets{Bounding: cur.Bounding &^ drop, Effective: cur.Effective &^ drop, Permitted: cur.Permitted &^ drop,
		Inheritable: cur.Inheritable &^ drop, Ambient: cur.Ambient &^ drop}); got != want {
		t.Errorf("%+v, want %+v", got, want)
	}
	sets, err := ParseAppCaps("bounding=CHOWN,NET_RAW;effective=NET_RAW;permitted=NET_RAW;inheritable=NET_RAW;ambient=NET_RAW")
	if err != nil {
		t.Fatal(err)
	}
	raw := uint64(1 << 13)
	if got, _ := appCaps(Config{AppCaps: sets}); got != (gate.CapSets{Bounding: 1 | raw, Effective: raw, Permitted: raw, Inheritable: raw, Ambient: raw}) {
		t.Errorf("--app-caps: %+v", got)
	}
	for _, bad := range []string{"", "bounding=CHOWN", "bounding=;effective=;permitted=;inheritable=;ambient=;bounding=", "bounding=NOPE;effective=;permitted=;inheritable=;ambient=", "bound=;effective=;permitted=;inheritable=;ambient="} {
		if _, err := ParseAppCaps(bad); err == nil || !strings.Contains(err.Error(), "--app-caps") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestResolveUser(t *testing.T) {
	root, err := ResolveUser("root")
	if err != nil || root.UID != 0 || root.GID != 0 {
		t.Fatalf("root: %+v %v", root, err)
	}
	if c, err := ResolveUser("0:12"); err != nil || c.UID != 0 || c.GID != 12 {
		t.Errorf("0:12: %+v %v", c, err)
	}
	if c, err := ResolveUser("54321"); err != nil || c.UID != 54321 || c.GID != 0 || c.Groups != nil {
		t.Errorf("unknown numeric user: %+v %v", c, err)
	}
	if c, err := ResolveUser("4294967294:4294967294"); err != nil || c.UID != 4294967294 || c.GID != 4294967294 {
		t.Errorf("largest IDs: %+v %v", c, err)
	}
	for _, bad := range []string{"", ":", "root:", ":0", "-1", "0:-1", "no-such-user-xyz", "root:no-such-group-xyz",
		// IDs are 32-bit: these must not wrap to 0 (root) or any other ID.
		"4294967296", "4294967295", "99999999999", "18446744073709551616", "0:4294967296", "0:4294967295", "+5"} {
		if c, err := ResolveUser(bad); err == nil {
			t.Errorf("%q: no error (%+v)", bad, c)
		} else if strings.Contains(bad, "429496729") && !strings.Contains(err.Error(), "not an ID from 0 to 4294967294") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestParseDropCaps(t *testing.T) {
	drop, err := ParseDropCaps("setpcap, CAP_SETUID,setgid,bpf,checkpoint_restore")
	if want := capability.SetOf(unix.CAP_SETPCAP, unix.CAP_SETUID, unix.CAP_SETGID, unix.CAP_BPF, unix.CAP_CHECKPOINT_RESTORE); err != nil || drop != want {
		t.Errorf("%v %v, want %v", drop, err, want)
	}
	if _, err := ParseDropCaps("SETUID,nosuch"); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("an unknown name: %v", err)
	}
}

// --groups inherit: the launcher's own groups, which a runtime wrapper set from the
// spec (tens of thousands would not fit in an argument).
func TestParseGroupsInherit(t *testing.T) {
	own, err := syscall.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ParseGroups(GroupsInherit); err != nil || got == nil || !slices.Equal(got, own) {
		t.Errorf("inherit: %v %v, want %v", got, err, own)
	}
}

func TestParseGroups(t *testing.T) {
	for list, want := range map[string][]int{"": {}, "10": {10}, "10, 20,": {10, 20}, "0,4294967294": {0, 4294967294}} {
		if got, err := ParseGroups(list); err != nil || !slices.Equal(got, want) || got == nil {
			t.Errorf("%q: %v %v, want %v", list, got, err, want)
		}
	}
	for _, bad := range []string{"x", "10,-1", "4294967295", "1 2"} {
		if got, err := ParseGroups(bad); err == nil {
			t.Errorf("%q: %v, no error", bad, got)
		}
	}
}

// An app run as another user gets that user's HOME where the runtime set root's: "/"
// for a user /etc/passwd does not list, as runc gives it.
func TestAppEnvHome(t *testing.T) {
	nobody := &Credential{UID: 54321, Home: "/"}
	if os.Geteuid() == 0 {
		if got := appEnv([]string{"A=1", "HOME=/root"}, nobody); !slices.Equal(got, []string{"A=1", "HOME=/"}) {
			t.Errorf("root's HOME: %q", got)
		}
	}
	if got := appEnv([]string{"HOME=/srv/app"}, nobody); !slices.Equal(got, []string{"HOME=/srv/app"}) {
		t.Errorf("a HOME set on purpose: %q", got)
	}
	if got := appEnv([]string{"A=1"}, nobody); !slices.Equal(got, []string{"A=1", "HOME=/"}) {
		t.Errorf("no HOME: %q", got)
	}
	if got := appEnv([]string{"HOME=/root"}, nil); !slices.Equal(got, []string{"HOME=/root"}) {
		t.Errorf("without --user: %q", got)
	}
	if root, err := ResolveUser("root"); err != nil || root.Home != "/root" {
		t.Errorf("root's home: %+v %v", root, err)
	}
}

func TestRelayedSignals(t *testing.T) {
	relayed := RelayedSignals()
	for _, s := range []syscall.Signal{unix.SIGKILL, unix.SIGSTOP, unix.SIGCHLD, unix.SIGURG, unix.SIGPROF, unix.SIGPIPE, unix.SIGTTIN, unix.SIGTTOU, 32, 33, 34} {
		for _, r := range relayed {
			if r == s {
				t.Errorf("%v is relayed", s)
			}
		}
	}
	if len(relayed) != 64-11 {
		t.Errorf("%d relayed signals, want %d", len(relayed), 64-11)
	}
	if signalName(unix.SIGTERM) != "SIGTERM" || signalName(40) != "SIGRTMIN+6" {
		t.Errorf("names: %s %s", signalName(unix.SIGTERM), signalName(40))
	}
}

func TestExitCode(t *testing.T) {
	for _, c := range []struct {
		ws   unix.WaitStatus
		code int
	}{
		{0, 0}, {3 << 8, 3}, {255 << 8, 255}, {unix.WaitStatus(unix.SIGTERM), 143}, {unix.WaitStatus(unix.SIGKILL) | 0x80, 137},
	} {
		if got := exitCode(c.ws); got != c.code {
			t.Errorf("status %#x: exit %d, want %d", uint32(c.ws), got, c.code)
		}
	}
}

func TestLookupProgram(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "tool")
	os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755)
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, nil, 0o644)
	t.Setenv("PATH", "/nonexistent:"+dir)

	for _, c := range []struct {
		name, path string
		code       int
	}{
		{"tool", exe, 0},
		{exe, exe, 0},
		{"plain", "", 126},
		{plain, "", 126},
		{dir, "", 126},
		{"missing", "", 127},
		{dir + "/missing", "", 127},
	} {
		path, code, err := lookupProgram(c.name)
		if path != c.path || code != c.code || (c.code == 0) != (err == nil) {
			t.Errorf("%s: %q %d %v, want %q %d", c.name, path, code, err, c.path, c.code)
		}
	}
}

// Only the executable's read-only mappings without a page of their own are released:
// in a position-independent build the RELRO mapping (read-only, its pages relocated
// at start) would come back from the file unrelocated, and the launcher crashed a
// second after start.
func TestFileOnlyMappings(t *testing.T) {
	f, err := os.Open("testdata/smaps-pie.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := fileOnlyMappings(f, "/app/launch")
	want := []mapping{{0x55d1a0000000, 0x55d1a0600000}, {0x55d1a0600000, 0x55d1a1200000}}
	if !slices.Equal(got, want) {
		t.Errorf("%x, want %x", got, want)
	}
}
