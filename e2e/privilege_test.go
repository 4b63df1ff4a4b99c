package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/otel-go-launcher/otel-go-launcher/internal/capability"
	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// capMask reads a Cap* line of /proc/PID/status.
func capMask(t testing.TB, rep report, field string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(rep.Status[field], 16, 64)
	if err != nil {
		t.Fatalf("%s: %q", field, rep.Status[field])
	}
	return v
}

func bit(c capability.Cap) uint64 { return 1 << uint(c) }

var launcherCaps = func() (m uint64) {
	for _, c := range capability.Launcher {
		m |= bit(c)
	}
	return m
}()

// The app holds none of the launcher's capabilities in any set, and keeps the others.
func TestAppLacksLauncherCapabilities(t *testing.T) {
	testenv.RequireRoot(t)
	rep := appReport(t, opts{}, nil)
	for _, f := range []string{"CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd"} {
		if m := capMask(t, rep, f); m&launcherCaps != 0 {
			t.Errorf("%s %016x holds launcher capabilities %016x", f, m, m&launcherCaps)
		}
	}
	if capMask(t, rep, "CapEff")&(1<<0) == 0 { // CAP_CHOWN: not ours to take
		t.Errorf("the app lost CAP_CHOWN: CapEff %s", rep.Status["CapEff"])
	}
	if rep.Status["NoNewPrivs"] != "0" {
		t.Errorf("NoNewPrivs %s: the launcher can drop the bounding set, so it should not need no_new_privs", rep.Status["NoNewPrivs"])
	}

	rep = appReport(t, opts{}, []string{"--keep-caps", "net_admin,CAP_SYS_PTRACE"})
	for _, f := range []string{"CapEff", "CapBnd"} {
		m := capMask(t, rep, f)
		if m&bit(capability.NetAdmin) == 0 || m&bit(capability.SysPtrace) == 0 {
			t.Errorf("--keep-caps: %s %016x lacks NET_ADMIN or SYS_PTRACE", f, m)
		}
		if m&bit(capability.SysAdmin) != 0 {
			t.Errorf("--keep-caps: %s %016x holds SYS_ADMIN", f, m)
		}
	}
}

// Without CAP_SETPCAP the launcher cannot shrink the bounding set; no_new_privs then
// stops a root app from getting the capabilities back at execve.
func TestAppLacksCapabilitiesWithoutSetpcap(t *testing.T) {
	testenv.RequireRoot(t)
	setpriv := testenv.RequireCommand(t, "setpriv")
	rep := appReport(t, opts{wrap: []string{setpriv, "--bounding-set", "-setpcap", "--"}}, nil)
	for _, f := range []string{"CapEff", "CapPrm", "CapInh", "CapAmb"} {
		if m := capMask(t, rep, f); m&launcherCaps != 0 {
			t.Errorf("%s %016x holds launcher capabilities", f, m)
		}
	}
	if rep.Status["NoNewPrivs"] != "1" {
		t.Errorf("NoNewPrivs %s, want 1", rep.Status["NoNewPrivs"])
	}
}

// Ambient capabilities (how a non-root launcher gets privileges) are lowered too.
func TestAppLacksAmbientLauncherCapabilities(t *testing.T) {
	testenv.RequireRoot(t)
	setpriv := testenv.RequireCommand(t, "setpriv")
	wrap := []string{setpriv, "--reuid", "65534", "--regid", "65534", "--clear-groups",
		"--inh-caps", "+sys_admin,+net_raw", "--ambient-caps", "+sys_admin,+net_raw", "--"}
	rep := appReport(t, opts{wrap: wrap}, nil)
	amb := capMask(t, rep, "CapAmb")
	if amb&bit(capability.SysAdmin) != 0 || capMask(t, rep, "CapEff")&bit(capability.SysAdmin) != 0 {
		t.Errorf("the app holds SYS_ADMIN: CapAmb %016x CapEff %s", amb, rep.Status["CapEff"])
	}
	if amb&(1<<13) == 0 { // CAP_NET_RAW is not the launcher's: it stays
		t.Errorf("the app lost ambient NET_RAW: CapAmb %016x", amb)
	}
	// Not root, no CAP_SETPCAP, but SYS_ADMIN to keep from the app: no_new_privs.
	if rep.Status["NoNewPrivs"] != "1" {
		t.Errorf("NoNewPrivs %s, want 1", rep.Status["NoNewPrivs"])
	}
}

// --user runs the app as another user, with its groups, from /etc/passwd and
// /etc/group. The test gives the launcher its own copies in a mount namespace.
func TestUser(t *testing.T) {
	testenv.RequireRoot(t)
	unshare := testenv.RequireCommand(t, "unshare")
	dir := t.TempDir()
	passwd := filepath.Join(dir, "passwd")
	group := filepath.Join(dir, "group")
	os.WriteFile(passwd, []byte("root:x:0:0:root:/root:/bin/sh\napp:x:4242:4242:app:/home/app:/bin/sh\n"), 0o644)
	os.WriteFile(group, []byte("root:x:0:\napp:x:4242:\nextra1:x:5001:app\nextra2:x:5002:other,app\nunrelated:x:5003:other\n"), 0o644)
	// The launcher runs in a mount namespace where these are /etc/passwd and /etc/group.
	wrap := []string{unshare, "-m", "sh", "-c", `mount --bind "$0" /etc/passwd && mount --bind "$1" /etc/group && shift && exec "$@"`, passwd, group}
	os.Chmod(dir, 0o755)

	type userCase struct {
		user, uid, gid, groups string
		extra                  []string
	}
	cases := []userCase{
		{"app", "4242", "4242", "4242 5001 5002", nil},
		{"4242", "4242", "4242", "4242 5001 5002", nil},
		{"app:extra2", "4242", "5002", "4242 5001 5002", nil},
		{"4242:5003", "4242", "5003", "4242 5001 5002", nil},
		{"7777", "7777", "0", "", nil}, // unknown numeric user: gid 0, no groups (as Docker)
		{"7777:7778", "7777", "7778", "", nil},
		// --groups: exactly these, not /etc/group's (an OCI spec's additionalGids).
		{"app", "4242", "4242", "10 5003", []string{"--groups", "10,5003"}},
		{"app", "4242", "4242", "", []string{"--groups="}},
		{"7777:7778", "7777", "7778", "4294967294", []string{"--groups", "4294967294"}},
	}
	for _, c := range cases {
		rep := appReport(t, opts{wrap: wrap}, append([]string{"--user", c.user}, c.extra...))
		if f := strings.Fields(rep.Status["Uid"]); len(f) != 4 || f[0] != c.uid || f[1] != c.uid || f[2] != c.uid || f[3] != c.uid {
			t.Errorf("--user %s: Uid %q, want %s", c.user, rep.Status["Uid"], c.uid)
		}
		if f := strings.Fields(rep.Status["Gid"]); len(f) != 4 || f[0] != c.gid || f[3] != c.gid {
			t.Errorf("--user %s: Gid %q, want %s", c.user, rep.Status["Gid"], c.gid)
		}
		if rep.Status["Groups"] != c.groups {
			t.Errorf("--user %s: Groups %q, want %q", c.user, rep.Status["Groups"], c.groups)
		}
		if m := capMask(t, rep, "CapEff"); m != 0 {
			t.Errorf("--user %s: the app has capabilities %016x", c.user, m)
		}
	}
	for _, bad := range []string{"nosuch", "app:nosuchgroup", ":", "app:"} {
		argv := []string{launchBin(t), "--user", bad, "--", "/bin/true"}
		e, _, stderr := runLaunch(t, opts{wrap: wrap}, argv...)
		if e.code != 2 || !strings.Contains(stderr, "--user") {
			t.Errorf("--user %q: %v, want exit 2 naming --user\nstderr:\n%s", bad, e, stderr)
		}
	}
	for _, bad := range [][]string{{"--groups", "10"}, {"--user", "app", "--groups", "10,x"}, {"--user", "app", "--groups", "4294967295"}} {
		e, _, stderr := runLaunch(t, opts{wrap: wrap}, append(append([]string{launchBin(t)}, bad...), "--", "/bin/true")...)
		if e.code != 2 || !strings.Contains(stderr, "--groups") {
			t.Errorf("%q: %v, want exit 2 naming --groups\nstderr:\n%s", bad, e, stderr)
		}
	}
}

// Without the privileges tracing needs, the launcher says so in one line, with the
// fix, and runs the app; --require-instrumentation refuses to start it instead.
func TestFailOpenAsUnprivilegedUser(t *testing.T) {
	testenv.RequireRoot(t) // to become an unprivileged user
	setpriv := testenv.RequireCommand(t, "setpriv")
	dir, err := os.MkdirTemp("", "failopen-") // not t.TempDir: its parent is 0700
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o777)
	wrap := []string{setpriv, "--reuid", "65534", "--regid", "65534", "--clear-groups", "--inh-caps", "-all", "--"}

	e, out, stderr := runLaunch(t, opts{wrap: wrap}, launchBin(t), "--", testApp(t), "report")
	if e.code != 0 {
		t.Fatalf("launcher %v\nstderr:\n%s", e, stderr)
	}
	// The app ran, as nobody, and - with nothing to keep from it - without no_new_privs.
	rep := parseReport(t, out, stderr)
	if rep.Status["NoNewPrivs"] != "0" || !strings.HasPrefix(rep.Status["Uid"], "65534") {
		t.Errorf("app Uid %q NoNewPrivs %s, want 65534 and 0", rep.Status["Uid"], rep.Status["NoNewPrivs"])
	}
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "launch: warning: not tracing") ||
		!strings.Contains(lines[0], "SYS_ADMIN") || !strings.Contains(lines[0], "cap_add") {
		t.Errorf("want one warning line naming SYS_ADMIN and the cap_add fix, got:\n%s", stderr)
	}

	marker2 := filepath.Join(dir, "ran-required")
	e, _, stderr = runLaunch(t, opts{wrap: wrap}, launchBin(t), "--require-instrumentation", "--", testApp(t), "touch", marker2)
	if e.code != 1 {
		t.Errorf("--require-instrumentation: %v, want exit 1", e)
	}
	if _, err := os.Stat(marker2); err == nil {
		t.Errorf("--require-instrumentation: the app ran")
	}
	if lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n"); len(lines) != 1 || !strings.Contains(stderr, "cap_add") {
		t.Errorf("--require-instrumentation: want one error line with the fix, got:\n%s", stderr)
	}
}
