package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/otel-go-launcher/otel-go-launcher/images/bundle"
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

// privilegesImage is e2e/testdata/testapp in an image of its own (FROM scratch, /app),
// and FROM the base image with the launcher as its entrypoint.
func privilegesImage(t *testing.T, env []string) (plain, withLauncher string) {
	t.Helper()
	privilegesOnce.Do(func() {
		app, err := testenv.BuildProgram("./e2e/testdata/testapp", "CGO_ENABLED=0")
		if err != nil {
			privilegesErr = err
			return
		}
		data, err := os.ReadFile(app)
		if err != nil {
			privilegesErr = err
			return
		}
		for tag, dockerfile := range map[string]string{
			privilegesPlain: "FROM scratch\nCOPY app /app\nENTRYPOINT [\"/app\"]\n",
			privilegesBase:  "FROM " + baseImageTag + "\nCOPY app /app\nENTRYPOINT [\"launch\", \"--\", \"/app\"]\n",
		} {
			dir, err := os.MkdirTemp("", "e2e-privileges-")
			if err != nil {
				privilegesErr = err
				return
			}
			defer os.RemoveAll(dir)
			os.WriteFile(filepath.Join(dir, "app"), data, 0o755)
			os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644)
			if out, err := podmanCmd(env, "build", "-q", "-t", tag, dir).CombinedOutput(); err != nil {
				privilegesErr = fmt.Errorf("podman build %s: %v\n%s", tag, err, out)
				return
			}
		}
	})
	if privilegesErr != nil {
		t.Fatal(privilegesErr)
	}
	return privilegesPlain, privilegesBase
}

const (
	privilegesPlain = "localhost/otel-go-launcher-e2e-privileges:e2e"
	privilegesBase  = "localhost/otel-go-launcher-e2e-privileges-base:e2e"
)

var (
	privilegesOnce sync.Once
	privilegesErr  error
)

// privileges is what testapp privileges printed.
type privileges struct {
	Status map[string]string `json:"status"`
	Calls  map[string]string `json:"calls"`
}

// describesProcess are the /proc/PID/status lines that say which process it is and
// what it is doing, not what it may do: under the launcher the app is PID 2, a child,
// and has run for longer.
var describesProcess = []string{"Name", "State", "Tgid", "Ngid", "Pid", "PPid", "TracerPid", "FDSize", "NStgid", "NSpid", "NSpgid", "NSsid",
	"VmPeak", "VmSize", "VmLck", "VmPin", "VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem", "VmData", "VmStk", "VmExe", "VmLib", "VmPTE", "VmSwap",
	"HugetlbPages", "Threads", "SigQ", "SigPnd", "ShdPnd", "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"}

// privilegeDiff lists the differences between two apps' privileges: every status line
// but describesProcess (Seccomp_filters: traced has one filter more, the launcher's,
// which only narrows), and the outcome of the four calls.
func privilegeDiff(plain, traced privileges, extraFilters int) []string {
	var diffs []string
	keys := map[string]bool{}
	for k := range plain.Status {
		keys[k] = true
	}
	for k := range traced.Status {
		keys[k] = true
	}
	for k := range keys {
		p, tr := plain.Status[k], traced.Status[k]
		if slices.Contains(describesProcess, k) {
			continue
		}
		if k == "Seccomp_filters" {
			if n, _ := strconv.Atoi(p); tr != strconv.Itoa(n+extraFilters) {
				diffs = append(diffs, fmt.Sprintf("Seccomp_filters: %s under runc, %s traced; want %d more, the launcher's", p, tr, extraFilters))
			}
			continue
		}
		if p != tr {
			diffs = append(diffs, fmt.Sprintf("%s: %q under runc, %q traced", k, p, tr))
		}
	}
	for _, c := range []string{"bpf", "perf_event_open", "mount", "umount2"} {
		if plain.Calls[c] != traced.Calls[c] {
			diffs = append(diffs, fmt.Sprintf("%s: %s under runc, %s traced", c, plain.Calls[c], traced.Calls[c]))
		}
	}
	slices.Sort(diffs)
	return diffs
}

func runPrivileges(t *testing.T, env []string, args ...string) privileges {
	t.Helper()
	var p privileges
	out := podman(t, env, append(append([]string{"run", "--rm", "--network", "host"}, args...), "privileges")...)
	if err := json.Unmarshal([]byte(out[strings.LastIndexByte(out, '\n')+1:]), &p); err != nil {
		t.Fatalf("podman run %q: %v\n%s", args, err, out)
	}
	return p
}

// An app traced by launch-runtime has exactly what plain runc gives the same
// container: every line of /proc/PID/status that says what a process may do (users,
// groups, every capability set, no_new_privs, seccomp mode) and the outcome of the
// four calls the launcher's filter relaxation concerns - root and non-root, podman's
// default profile and two hostile custom ones (an argument-restricted allow, deny
// rules with errnos of their own, a default-allow profile), --cap-add and --cap-drop.
// Before: perf_event_open succeeded for every traced app, a custom profile's deny
// rules were deleted, and a non-root user lost what --cap-add gave it.
func TestLaunchRuntimePrivilegesEqualRunc(t *testing.T) {
	env := podmanReady(t)
	runtime := launchRuntimeBin(t)
	image, _ := privilegesImage(t, env)
	recv := testenv.StartReceiver(t)
	dir := t.TempDir()
	allowlist, denylist := customProfiles(t, dir)
	traced := []string{"--runtime", runtime, "--annotation", bundle.AnnotationTrace + "=true", "-e", "OTEL_EXPORTER_OTLP_ENDPOINT=" + recv.Endpoint}
	type variant struct {
		name string
		args []string
	}
	var variants []variant
	for _, user := range []variant{{"root", nil}, {"1000", []string{"--user", "1000:1000", "--group-add", "10"}}} {
		for _, caps := range []variant{{"default caps", nil}, {"--cap-add NET_RAW,SYS_PTRACE", []string{"--cap-add", "NET_RAW,SYS_PTRACE"}}, {"--cap-drop CHOWN,NET_RAW", []string{"--cap-drop", "CHOWN,NET_RAW"}}} {
			variants = append(variants, variant{user.name + ", default profile, " + caps.name, append(slices.Clone(user.args), caps.args...)})
		}
		for _, p := range []variant{{"allowlist", []string{"--security-opt", "seccomp=" + allowlist}}, {"denylist", []string{"--security-opt", "seccomp=" + denylist}}} {
			variants = append(variants, variant{user.name + ", custom " + p.name + " profile", append(slices.Clone(user.args), p.args...)})
		}
	}
	for _, v := range variants {
		plain := runPrivileges(t, env, append(slices.Clone(v.args), image)...)
		got := runPrivileges(t, env, append(append(slices.Clone(traced), v.args...), image)...)
		if d := privilegeDiff(plain, got, 1); len(d) > 0 {
			t.Errorf("%s:\n%s", v.name, strings.Join(d, "\n"))
		}
		if strings.Contains(v.name, "allowlist") && plain.Calls["perf_event_open"] != "ENOSYS" || strings.Contains(v.name, "denylist") && plain.Calls["perf_event_open"] != "ENOMSG" {
			t.Errorf("%s: the profile's own rule did not decide perf_event_open under runc: %v", v.name, plain.Calls)
		}
	}
}

// customProfiles writes two seccomp profiles a tenant might bring: podman's own with
// the launcher's calls restricted (perf_event_open allowed only for CPU 5, mount and
// bpf denied with errnos of their own), and a default-allow one that denies
// perf_event_open (ENOMSG).
func customProfiles(t *testing.T, dir string) (allowlist, denylist string) {
	t.Helper()
	raw, err := os.ReadFile("/usr/share/containers/seccomp.json")
	if err != nil {
		t.Fatalf("podman's seccomp profile: %v", err)
	}
	var p map[string]any
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	var rules []any
	for _, r := range p["syscalls"].([]any) {
		rule := r.(map[string]any)
		var names []any
		for _, n := range rule["names"].([]any) {
			if !slices.Contains([]string{"bpf", "perf_event_open", "mount", "umount2"}, n.(string)) {
				names = append(names, n)
			}
		}
		if len(names) > 0 {
			rule["names"] = names
			rules = append(rules, rule)
		}
	}
	rules = append(rules,
		map[string]any{"names": []string{"perf_event_open"}, "action": "SCMP_ACT_ALLOW", "args": []any{map[string]any{"index": 3, "value": 5, "op": "SCMP_CMP_EQ"}}},
		map[string]any{"names": []string{"mount"}, "action": "SCMP_ACT_ERRNO", "errnoRet": 77},
		map[string]any{"names": []string{"bpf"}, "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
		map[string]any{"names": []string{"umount2"}, "action": "SCMP_ACT_ALLOW"})
	p["syscalls"] = rules
	allowlist, denylist = filepath.Join(dir, "allowlist.json"), filepath.Join(dir, "denylist.json")
	out, _ := json.Marshal(p)
	os.WriteFile(allowlist, out, 0o644)
	os.WriteFile(denylist, []byte(`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["perf_event_open"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42}]}`), 0o644)
	return allowlist, denylist
}

// The base image run with the launcher's capabilities (--cap-add SYS_ADMIN,BPF,
// PERFMON,NET_ADMIN, which also relaxes the engine's seccomp profile for them) gives
// its app what the same app has in a plain container without them: the capabilities
// are taken, and the launcher's filter refuses bpf and perf_event_open as the engine's
// default profile would. A LAUNCH_KEEP_CAPS in the container's environment, here or
// under launch-runtime, stops the container with one line instead of giving the app
// CAP_SYS_ADMIN.
func TestBaseImagePrivilegesEqualPlain(t *testing.T) {
	env := podmanReady(t)
	runtime := launchRuntimeBin(t)
	plainImg, baseImg := privilegesImage(t, env)
	recv := testenv.StartReceiver(t)
	otlp := []string{"-e", "OTEL_EXPORTER_OTLP_ENDPOINT=" + recv.Endpoint}
	launcherCaps := []string{"--cap-add", "SYS_ADMIN,BPF,PERFMON,NET_ADMIN"}
	for _, user := range [][]string{nil, {"--user", "1000:1000"}} {
		plain := runPrivileges(t, env, append(slices.Clone(user), plainImg)...)
		traced := runPrivileges(t, env, append(append(append(slices.Clone(user), otlp...), launcherCaps...), baseImg)...)
		if user != nil {
			// A launcher that is not root has no CAP_SETPCAP to shrink the bounding set
			// with: no_new_privs keeps the app from ever raising what stays there (the
			// README's fix: run the container as root, and the app with launch --user).
			bnd, _ := strconv.ParseUint(traced.Status["CapBnd"], 16, 64)
			plainBnd, _ := strconv.ParseUint(plain.Status["CapBnd"], 16, 64)
			if traced.Status["NoNewPrivs"] != "1" || bnd&^plainBnd&^uint64(capability.SetOf(capability.Launcher...)) != 0 {
				t.Errorf("non-root launcher: the app's bounding set %s (plain %s), no_new_privs %s; want only the launcher's capabilities more, and no_new_privs", traced.Status["CapBnd"], plain.Status["CapBnd"], traced.Status["NoNewPrivs"])
			}
			traced.Status["CapBnd"], traced.Status["NoNewPrivs"] = plain.Status["CapBnd"], plain.Status["NoNewPrivs"]
		}
		if d := privilegeDiff(plain, traced, 1); len(d) > 0 {
			t.Errorf("user %q: the base image's app with --cap-add for the launcher, against a plain container:\n%s", user, strings.Join(d, "\n"))
		}
	}
	for _, how := range [][]string{
		append(slices.Clone(launcherCaps), baseImg),
		{"--runtime", runtime, "--annotation", bundle.AnnotationTrace + "=true", plainImg},
	} {
		args := append([]string{"run", "--rm", "--network", "host", "-e", "LAUNCH_KEEP_CAPS=SYS_ADMIN"}, how...)
		code, out := exitOf(podmanCmd(env, append(args, "privileges")...))
		if code != 2 || !strings.Contains(out, "LAUNCH_KEEP_CAPS is set, but --keep-caps is taken from the command line only") || strings.Contains(out, "calls") {
			t.Errorf("podman %s: exit %d, want 2 and the refusal, the app not run\n%s", strings.Join(args, " "), code, out)
		}
	}
}

// A launcher built position-independent (-buildmode=pie, as distributions package
// it) traces and exits with the app's code well past the second after which it gives
// back start-up's memory: it once crashed there, having dropped its relocated RELRO
// pages.
func TestPositionIndependentLauncher(t *testing.T) {
	testenv.RequireRoot(t)
	pie := testenv.Build(t, "./cmd/launch", "CGO_ENABLED=0", "GOFLAGS=-buildmode=pie -tags=urfave_cli_no_docs")
	tg := testenv.BuildTargets(t, "httpserver", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})[0]
	recv := testenv.StartReceiver(t)
	addr := freeAddr(t)
	r := start(t, opts{env: append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT="+recv.Endpoint, "OTEL_BSP_SCHEDULE_DELAY=200"), stdin: strings.NewReader("")}, pie, "--", tg.Path, addr)
	firstRequest(t, addr, "/items/first")
	time.Sleep(2 * time.Second) // past the release
	getOK(t, r, addr, "/items/second")
	if _, ok := recv.WaitFor(10*time.Second, func(s []testenv.Span) bool { return len(s) >= 2 }); !ok {
		t.Errorf("spans: %d, want 2\n%s", len(recv.Spans()), r.stderr)
	}
	r.signal(syscall.SIGTERM)
	// The target dies of the signal: 128+15.
	if e := r.wait(20 * time.Second); e.code != 143 || strings.Contains(r.stderr.String(), "fatal error") {
		t.Errorf("launcher %v, want the app's 143\n%s", e, r.stderr)
	}
}

// launch-runtime straight in front of runc, on bundles a tenant could ask for: 18,000
// supplementary groups (the launcher's arguments once could not hold them: "argument
// list too long", where runc starts the container) reach the app as runc gives them;
// uid 4294967294, which runc refuses, is refused the same way, not started traced as
// root's child.
func TestLaunchRuntimeRuncEdges(t *testing.T) {
	testenv.RequireRoot(t)
	runc := testenv.RequireCommand(t, "runc")
	runtime := launchRuntimeBin(t)
	app, err := testenv.BuildProgram("./e2e/testdata/testapp", "CGO_ENABLED=0")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "rootfs"), 0o755)
	data, _ := os.ReadFile(app)
	os.WriteFile(filepath.Join(dir, "rootfs", "app"), data, 0o755)
	if out, err := exec.Command(runc, "spec", "--bundle", dir).CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v\n%s", err, out)
	}
	spec, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	groups := make([]uint32, 18000)
	for i := range groups {
		groups[i] = uint32(1000000 + i) // 8 bytes each in a list: 144 KB, over an argument's 128 KiB
	}
	// run runs the bundle with the user given, under runc or launch-runtime
	// (traced), and returns its exit code and output.
	run := func(traced bool, user map[string]any) (int, string) {
		t.Helper()
		var c map[string]any
		json.Unmarshal(spec, &c)
		p := c["process"].(map[string]any)
		p["terminal"] = false
		p["args"] = []string{"/app", "privileges"}
		p["user"] = user
		p["env"] = []string{"PATH=/", "OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none"}
		if traced {
			c["annotations"] = map[string]string{bundle.AnnotationTrace: "true"}
		}
		raw, _ := json.Marshal(c)
		os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o644)
		bin := runc
		if traced {
			bin = runtime
		}
		id := fmt.Sprintf("edges-%d-%v", time.Now().UnixNano(), traced)
		cmd := exec.Command(bin, "--root", filepath.Join(dir, "state"), "run", id)
		cmd.Dir = dir
		defer exec.Command(runc, "--root", filepath.Join(dir, "state"), "delete", "--force", id).Run()
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		code, _ := exitCode(cmd.Run())
		return code, stdout.String() + stderr.String()
	}
	parse := func(out string) privileges {
		var p privileges
		for _, line := range strings.Split(out, "\n") {
			if json.Unmarshal([]byte(line), &p) == nil && p.Status != nil {
				return p
			}
		}
		t.Fatalf("no privileges report in:\n%s", out)
		return p
	}
	many := map[string]any{"uid": 65534, "gid": 65534, "additionalGids": groups}
	plainCode, plainOut := run(false, many)
	tracedCode, tracedOut := run(true, many)
	if plainCode != 0 || tracedCode != 0 {
		t.Fatalf("18,000 groups: exit %d under runc, %d traced\n%s\n%s", plainCode, tracedCode, firstLines(plainOut), firstLines(tracedOut))
	}
	plain, traced := parse(plainOut), parse(tracedOut)
	if n := len(strings.Fields(traced.Status["Groups"])); n != 18000 || traced.Status["Groups"] != plain.Status["Groups"] {
		t.Errorf("18,000 groups: the traced app has %d, the same as under runc: %v", n, traced.Status["Groups"] == plain.Status["Groups"])
	}
	if d := privilegeDiff(plain, traced, 0); len(d) > 0 {
		t.Errorf("18,000 groups:\n%s", strings.Join(d, "\n"))
	}

	huge := map[string]any{"uid": uint32(4294967294), "gid": uint32(4294967294)}
	plainCode, plainOut = run(false, huge)
	tracedCode, tracedOut = run(true, huge)
	if plainCode == 0 || tracedCode != plainCode || !strings.Contains(tracedOut, "2147483647") || strings.Contains(tracedOut, `"status"`) {
		t.Errorf("uid 4294967294: exit %d under runc, %d traced; want runc's refusal both times\nrunc: %s\ntraced: %s", plainCode, tracedCode, firstLines(plainOut), firstLines(tracedOut))
	}
}

// firstLines is the first few lines of out, for messages.
func firstLines(out string) string {
	lines := strings.SplitN(out, "\n", 6)
	if len(lines) > 5 {
		lines = lines[:5]
	}
	return strings.Join(lines, "\n")
}
