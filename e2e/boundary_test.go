package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otel-go-launcher/otel-go-launcher/internal/capability"
	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// The environment belongs to the app: a LAUNCH_ variable for a flag that sets the
// app's privileges or a path root writes is refused in one line naming the flag, and
// the app does not start (the repro filed: LAUNCH_KEEP_CAPS=SYS_ADMIN gave a container's
// app CAP_SYS_ADMIN; LAUNCH_CPU_PROFILE=/etc/x left a root-owned file for a non-root
// container).
func TestPrivilegedFlagsRefuseEnvironment(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	for _, c := range []struct{ env, flag string }{
		{"LAUNCH_KEEP_CAPS=SYS_ADMIN", "--keep-caps"},
		{"LAUNCH_DROP_CAPS=CHOWN", "--drop-caps"},
		{"LAUNCH_APP_CAPS=bounding=SYS_ADMIN;effective=SYS_ADMIN;permitted=SYS_ADMIN;inheritable=;ambient=", "--app-caps"},
		{`LAUNCH_APP_SECCOMP={"defaultAction":"SCMP_ACT_ALLOW"}`, "--app-seccomp"},
		{"LAUNCH_USER=0", "--user"},
		{"LAUNCH_GROUPS=0", "--groups"},
		{"LAUNCH_CPU_PROFILE=" + filepath.Join(dir, "x"), "--cpu-profile"},
		{"LAUNCH_OFFSETS_DB=/etc/hostname", "--offsets-db"},
	} {
		marker := filepath.Join(dir, "ran")
		argv := []string{launchBin(t), "--user", "65534", "--", testApp(t), "touch", marker}
		e, _, stderr := runLaunch(t, opts{env: append(os.Environ(), c.env)}, argv...)
		name, _, _ := strings.Cut(c.env, "=")
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if e.code != 2 || len(lines) != 1 || !strings.Contains(lines[0], name) || !strings.Contains(lines[0], c.flag+" is taken from the command line only") {
			t.Errorf("%s: %v, want exit 2 and one line naming %s and %s\nstderr:\n%s", name, e, name, c.flag, stderr)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Errorf("%s: the app ran", name)
			os.Remove(marker)
		}
		// Subcommands read --offsets-db too.
		e, _, stderr = runLaunch(t, opts{env: append(os.Environ(), c.env)}, launchBin(t), "inspect", testApp(t))
		if e.code != 2 || !strings.Contains(stderr, c.flag) {
			t.Errorf("%s with inspect: %v\n%s", name, e, stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
		t.Errorf("LAUNCH_CPU_PROFILE: the profile was written")
	}
	// The flags themselves still work, and variables for the other flags still do.
	rep := appReport(t, opts{env: append(os.Environ(), "LAUNCH_LOG_LEVEL=warn", "LAUNCH_GRACE=1s")}, []string{"--keep-caps", "NET_ADMIN"})
	if capMask(t, rep, "CapEff")&bit(capability.NetAdmin) == 0 {
		t.Errorf("--keep-caps NET_ADMIN on the command line: CapEff %s", rep.Status["CapEff"])
	}
}
