package launcher

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseKeepCaps(t *testing.T) {
	got, err := ParseKeepCaps(" net_admin, CAP_SYS_PTRACE ,bpf,")
	if err != nil {
		t.Fatal(err)
	}
	if want := []Capability{CapNetAdmin, CapSysPtrace, CapBPF}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if got, err := ParseKeepCaps(""); err != nil || got != nil {
		t.Errorf("empty list: %v %v", got, err)
	}
	if _, err := ParseKeepCaps("chown"); err == nil || !strings.Contains(err.Error(), "SYS_ADMIN") {
		t.Errorf("unknown capability: err %v, want one listing what can be kept", err)
	}
	if drop := capsToDrop([]Capability{CapNetAdmin}, nil); len(drop) != len(LauncherCapabilities)-1 || drop[0] != int(CapSysAdmin) {
		t.Errorf("capsToDrop: %v", drop)
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
	if want := []Capability{unix.CAP_SETPCAP, unix.CAP_SETUID, unix.CAP_SETGID, unix.CAP_BPF, unix.CAP_CHECKPOINT_RESTORE}; err != nil || !slices.Equal(drop, want) {
		t.Errorf("%v %v, want %v", drop, err, want)
	}
	if _, err := ParseDropCaps("SETUID,nosuch"); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("an unknown name: %v", err)
	}
	// Extra capabilities join the launcher's, each once.
	if got := capsToDrop(nil, []Capability{unix.CAP_SETPCAP, CapBPF}); len(got) != len(LauncherCapabilities)+1 || got[0] != unix.CAP_SETPCAP {
		t.Errorf("capsToDrop with extras: %v", got)
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
