package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/otel-go-launcher/otel-go-launcher/images/bundle"
	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// launchRuntimeBin is launch-runtime next to the launcher under test (make build puts
// both in bin/), where it finds the launcher it mounts into containers.
func launchRuntimeBin(t *testing.T) string {
	t.Helper()
	runtime := filepath.Join(filepath.Dir(launchBin(t)), "launch-runtime")
	if _, err := os.Stat(runtime); err != nil {
		t.Fatalf("launch-runtime is built next to launch (make build): %v", err)
	}
	return runtime
}

// credentials are the /proc/PID/status lines that say who a process is and what it may
// do: what a traced container's app must share with the same container under runc.
var credentials = []string{"Uid", "Gid", "Groups", "Umask", "NoNewPrivs", "Seccomp", "Seccomp_filters", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}

func procCredentials(t *testing.T, pid string) string {
	t.Helper()
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string]string{}
	for sc := bufio.NewScanner(f); sc.Scan(); {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
			got[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	var out []string
	for _, k := range credentials {
		out = append(out, k+"="+got[k])
	}
	return strings.Join(out, " ")
}

// exitCode is a finished command's exit code.
func exitCode(err error) (int, error) {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), nil
	}
	return 0, err
}

// exitOf runs a command and returns its exit code and combined output.
func exitOf(cmd *exec.Cmd) (int, string) {
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), string(out)
	}
	if err != nil {
		return -1, err.Error()
	}
	return 0, string(out)
}

// launch-runtime in front of runc, as podman's --runtime, on an image whose USER is not
// root: a container that opts in by annotation is traced with no capability or image
// change of its own, and its app, and a process podman exec starts in it, are who they
// are in the same container under plain runc (user, groups, umask, every capability
// set, seccomp); exec, stop and kill give the exit codes runc's container gives. One
// that does not opt in runs exactly as under runc.
func TestLaunchRuntimePodman(t *testing.T) {
	env := podmanReady(t)
	runtime := launchRuntimeBin(t)
	image := plainImage(t, env, "amd64")
	recv := testenv.StartReceiver(t)

	type observed struct {
		app, exec, launcher string // credentials; launcher is "" where it did not run
		execHelp, execBusy  string // exit code and first line of two podman execs
		stop, term, kill    int    // exit codes after podman stop, kill -s TERM, kill
	}
	count := func(service string) int {
		n := 0
		for _, s := range recv.Spans() {
			if s.Resource["service.name"] == service && s.Kind == tracepb.Span_SPAN_KIND_SERVER {
				n++
			}
		}
		return n
	}
	const service = "otel-go-launcher-e2e-launch-runtime"
	tracedRun := []string{"--runtime", runtime, "--annotation", bundle.AnnotationTrace + "=true", "--annotation", bundle.AnnotationEnvPrefix + "OTEL_SERVICE_NAME=" + service}
	// start runs a container and makes its first request; a traced one's span is
	// waited for, so that a kill that follows does not race its export.
	start := func(name string, how []string) string {
		t.Helper()
		before := count(service)
		addr := freeAddr(t)
		args := []string{"run", "-d", "--name", name, "--network", "host", "--group-add", "10", "--group-add", "4242",
			"-e", "OTEL_EXPORTER_OTLP_ENDPOINT=" + recv.Endpoint, "-e", "OTEL_BSP_SCHEDULE_DELAY=200"}
		podman(t, env, append(append(args, how...), image, "-addr", addr)...)
		t.Cleanup(func() { podmanCmd(env, "rm", "-f", name).Run() })
		firstRequest(t, addr, "/hello/first")
		if len(how) > 2 && how[2] == "--annotation" {
			deadline := time.Now().Add(10 * time.Second)
			for count(service) == before && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
		}
		return addr
	}
	wait := func(name string) int {
		t.Helper()
		code, err := strconv.Atoi(podman(t, env, "wait", name))
		if err != nil {
			t.Fatal(err)
		}
		return code
	}
	// summary is an exit code and the line that explains it: the first of a usage
	// message, or the cause in log.Fatal's last line.
	summary := func(code int, out string) string {
		lines := strings.Split(strings.TrimSpace(out), "\n")
		line := lines[0]
		if _, cause, ok := strings.Cut(lines[len(lines)-1], "listen tcp "); ok {
			_, line, _ = strings.Cut(cause, " ") // the address differs
		}
		return fmt.Sprintf("exit %d: %s", code, line)
	}
	observe := func(name string, how ...string) (o observed) {
		t.Helper()
		addr := start(name, how)
		execAddr := freeAddr(t)
		podman(t, env, "exec", "-d", name, "/app", "-addr", execAddr)
		firstRequest(t, execAddr, "/hello/exec")
		for _, line := range strings.Split(podman(t, env, "top", name, "hpid", "args"), "\n")[1:] {
			pid, args, _ := strings.Cut(strings.TrimSpace(line), " ")
			switch args = strings.TrimSpace(args); {
			case args == "/app -addr "+addr:
				o.app = procCredentials(t, pid)
			case args == "/app -addr "+execAddr:
				o.exec = procCredentials(t, pid)
			case strings.HasPrefix(args, bundle.LauncherPath):
				o.launcher = procCredentials(t, pid)
			}
		}
		o.execHelp = summary(exitOf(podmanCmd(env, "exec", name, "/app", "-h")))
		o.execBusy = summary(exitOf(podmanCmd(env, "exec", name, "/app", "-addr", addr)))
		podman(t, env, "stop", "-t", "10", name)
		o.stop = wait(name)

		start(name+"-term", how)
		podman(t, env, "kill", "-s", "TERM", name+"-term")
		o.term = wait(name + "-term")
		start(name+"-kill", how)
		podman(t, env, "kill", name+"-kill")
		o.kill = wait(name + "-kill")
		return o
	}
	plain := observe("otel-go-launcher-e2e-runc")
	traced := observe(service, tracedRun...)
	optOut := observe("otel-go-launcher-e2e-runtime-optout", "--runtime", runtime)

	if plain.app == "" || !strings.Contains(plain.app, "Uid=65534 65534 65534 65534") || !strings.Contains(plain.app, "Groups=10 4242") {
		t.Fatalf("under runc the app is %q; want 65534 with groups 10 and 4242", plain.app)
	}
	if plain.stop != 0 || plain.term != 0 || plain.kill != 137 || !strings.HasPrefix(plain.execHelp, "exit 0: Usage of /app") || plain.execBusy != "exit 1: bind: address already in use" {
		t.Errorf("under runc: %+v", plain)
	}
	if plain.launcher != "" || optOut.launcher != "" {
		t.Errorf("the launcher ran: under runc %q, with launch-runtime and no annotation %q", plain.launcher, optOut.launcher)
	}
	if !strings.Contains(traced.launcher, "Uid=0 0 0 0") {
		t.Errorf("the launcher in the traced container: %q, want root", traced.launcher)
	} else if eff, _ := strconv.ParseUint(strings.Fields(strings.SplitAfter(traced.launcher, "CapEff=")[1])[0], 16, 64); eff&(1<<21) == 0 {
		t.Errorf("the launcher lacks CAP_SYS_ADMIN: %q", traced.launcher)
	}
	traced.launcher, optOut.launcher = "", ""
	// The traced app runs under one seccomp filter more, the launcher's, which only
	// narrows (TestLaunchRuntimePrivilegesEqualRunc checks what it decides).
	traced.app = withoutLauncherFilter(t, traced.app)
	if traced != plain {
		t.Errorf("traced by launch-runtime:\n%+v\nunder plain runc:\n%+v", traced, plain)
	}
	if optOut != plain {
		t.Errorf("launch-runtime without the annotation:\n%+v\nunder plain runc:\n%+v", optOut, plain)
	}

	// One span per traced container's first request (stop, TERM, kill); none for the
	// request to the process podman exec started: it runs what it was asked, not under
	// the launcher.
	if n := count(service); n != 3 {
		t.Errorf("%d server spans of %s, want 3", n, service)
	}
	if n := count("app") + count("otel-go-launcher-e2e-runc") + count("otel-go-launcher-e2e-runtime-optout"); n != 0 {
		t.Errorf("%d spans from containers that did not opt in", n)
	}
}

// withoutLauncherFilter is credentials with one seccomp filter fewer.
func withoutLauncherFilter(t *testing.T, credentials string) string {
	t.Helper()
	_, after, ok := strings.Cut(credentials, "Seccomp_filters=")
	n, err := strconv.Atoi(strings.Fields(after + " ")[0])
	if !ok || err != nil || n < 1 {
		t.Errorf("no seccomp filter in %q: the launcher's is missing", credentials)
		return credentials
	}
	return strings.Replace(credentials, fmt.Sprintf("Seccomp_filters=%d", n), fmt.Sprintf("Seccomp_filters=%d", n-1), 1)
}

// containerd's runc shim with launch-runtime as its runc binary (what ctr run
// --runc-binary sets, and a Kubernetes RuntimeClass selects through the shim's
// BinaryName): a private containerd runs the plain image with the annotation, and the
// first request is traced; ctr task kill -s TERM ends it with the app's exit code 0.
func TestLaunchRuntimeContainerd(t *testing.T) {
	env := podmanReady(t)
	runtime := launchRuntimeBin(t)
	sock, ctr, dir := startContainerd(t)
	image := importPlainImage(t, env, ctr, dir)
	recv := testenv.StartReceiver(t)
	addr := freeAddr(t)
	const name = "otel-go-launcher-e2e-runtime-containerd"
	defer removeContainerdTask(sock, name)
	var out testenv.SyncBuffer
	run := exec.Command("ctr", "-a", sock, "run", "--net-host", "--runc-binary", runtime,
		"--annotation", bundle.AnnotationTrace+"=true", "--annotation", bundle.AnnotationEnvPrefix+"OTEL_SERVICE_NAME="+name,
		"--env", "OTEL_EXPORTER_OTLP_ENDPOINT="+recv.Endpoint, "--env", "OTEL_BSP_SCHEDULE_DELAY=200", image, name, "/app", "-addr", addr)
	run.Stdout, run.Stderr = &out, &out
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	firstRequest(t, addr, "/hello/first")
	spans, _ := recv.WaitFor(10*time.Second, func(s []testenv.Span) bool { return len(s) > 0 })
	if n := len(spansOf(spans, name, tracepb.Span_SPAN_KIND_SERVER, firstTrace(recv, name))); n != 1 {
		t.Errorf("%d server spans of %s for its first request, want 1\n%s", n, name, out.String())
	}
	ctr("task", "kill", "-s", "TERM", name)
	if code, _ := exitCode(run.Wait()); code != 0 {
		t.Errorf("ctr run: exit %d after TERM, want the app's 0\n%s", code, out.String())
	}
}

// runc directly on a bundle (runc spec's, as a non-root user), each command through
// launch-runtime: run in the foreground (traced, its exit code the app's after kill
// TERM, state showing it running meanwhile), then create/start/state/kill/delete with a
// pid file on the same bundle without the annotation: its config.json byte for byte as
// written, the app its container's first process, with the credentials the traced app
// had.
func TestLaunchRuntimeRunc(t *testing.T) {
	testenv.RequireRoot(t)
	runc := testenv.RequireCommand(t, "runc")
	runtime := launchRuntimeBin(t)
	app, err := testenv.BuildProgram("./examples/hello", "CGO_ENABLED=0")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	os.MkdirAll(filepath.Join(dir, "rootfs"), 0o755)
	data, err := os.ReadFile(app)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "rootfs", "app"), data, 0o755)
	if out, err := exec.Command(runc, "spec", "--bundle", dir).CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v\n%s", err, out)
	}
	recv := testenv.StartReceiver(t)
	addr := freeAddr(t)
	// runc spec's config, with the app, its user, host networking and the annotation.
	writeConfig := func(annotations map[string]string) []byte {
		t.Helper()
		raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		var spec map[string]any
		json.Unmarshal(raw, &spec)
		process := spec["process"].(map[string]any)
		process["terminal"] = false
		process["args"] = []string{"/app", "-addr", addr}
		process["user"] = map[string]any{"uid": 65534, "gid": 65534}
		process["env"] = []string{"PATH=/", "OTEL_EXPORTER_OTLP_ENDPOINT=" + recv.Endpoint, "OTEL_BSP_SCHEDULE_DELAY=200"}
		linux := spec["linux"].(map[string]any)
		var namespaces []any
		for _, ns := range linux["namespaces"].([]any) {
			if ns.(map[string]any)["type"] != "network" {
				namespaces = append(namespaces, ns)
			}
		}
		linux["namespaces"] = namespaces
		spec["annotations"] = annotations
		raw, _ = json.MarshalIndent(spec, "", "  ")
		os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o644)
		return raw
	}
	wrapped := func(args ...string) *exec.Cmd {
		cmd := exec.Command(runtime, append([]string{"--root", state}, args...)...)
		cmd.Dir = dir // runc's default bundle
		return cmd
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := wrapped(args...).CombinedOutput()
		if err != nil {
			t.Fatalf("launch-runtime %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	var containerState struct {
		Status string
		Pid    int
	}
	stateOf := func(id string) {
		t.Helper()
		if err := json.Unmarshal([]byte(must("state", id)), &containerState); err != nil {
			t.Fatal(err)
		}
	}

	const service = "otel-go-launcher-e2e-runtime-runc"
	traced := writeConfig(map[string]string{bundle.AnnotationTrace: "true", bundle.AnnotationEnvPrefix + "OTEL_SERVICE_NAME": service})
	var out testenv.SyncBuffer
	run := wrapped("run", "traced")
	run.Stdout, run.Stderr = &out, &out
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	defer exec.Command(runc, "--root", state, "delete", "--force", "traced").Run()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("launch-runtime run:\n%s", out.String())
		}
	})
	firstRequest(t, addr, "/hello/first")
	stateOf("traced")
	if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", containerState.Pid)); containerState.Status != "running" || !strings.HasPrefix(string(cmdline), bundle.LauncherPath+"\x00") {
		t.Errorf("state: %+v, its first process %q; want running, the launcher", containerState, cmdline)
	}
	children, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", containerState.Pid, containerState.Pid))
	tracedApp := procCredentials(t, strings.TrimSpace(string(children)))
	spans, _ := recv.WaitFor(10*time.Second, func(s []testenv.Span) bool { return len(s) > 0 })
	if n := len(spansOf(spans, service, tracepb.Span_SPAN_KIND_SERVER, firstTrace(recv, service))); n != 1 {
		t.Errorf("%d server spans of %s, want 1\n%s", n, service, out.String())
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "config.json")); !bytes.Equal(got, traced) {
		t.Errorf("the bundle's config.json changed: launch-runtime runs a traced container from a bundle of its own")
	}
	must("kill", "traced", "TERM")
	if code, _ := exitCode(run.Wait()); code != 0 {
		t.Errorf("run: exit %d after TERM, want the app's 0\n%s", code, out.String())
	}

	written := writeConfig(map[string]string{"other": "x"})
	pidFile := filepath.Join(dir, "pid")
	log, err := os.Create(filepath.Join(dir, "plain.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	create := wrapped("create", "--pid-file", pidFile, "plain")
	create.Stdout, create.Stderr = log, log // a file, not a pipe, which the container would keep open
	if err := create.Run(); err != nil {
		out, _ := os.ReadFile(log.Name())
		t.Fatalf("create: %v\n%s", err, out)
	}
	defer exec.Command(runc, "--root", state, "delete", "--force", "plain").Run()
	must("start", "plain")
	firstRequest(t, addr, "/hello/plain")
	stateOf("plain")
	pid, _ := os.ReadFile(pidFile)
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", containerState.Pid))
	if containerState.Status != "running" || strings.TrimSpace(string(pid)) != strconv.Itoa(containerState.Pid) || !strings.HasPrefix(string(cmdline), "/app\x00") {
		t.Errorf("state %+v, pid file %q, first process %q; want running, that pid, the app", containerState, pid, cmdline)
	}
	// runc spec's capabilities lack CAP_SETPCAP, CAP_SETUID and CAP_SETGID, which the
	// launcher needs here and must not leave to the app.
	if plainApp := procCredentials(t, strconv.Itoa(containerState.Pid)); tracedApp != plainApp {
		t.Errorf("the app traced:\n%s\nnot traced:\n%s", tracedApp, plainApp)
	}
	must("kill", "plain", "KILL")
	for i := 0; i < 50 && containerState.Status != "stopped"; i++ {
		time.Sleep(100 * time.Millisecond)
		stateOf("plain")
	}
	must("delete", "plain")
	if got, _ := os.ReadFile(filepath.Join(dir, "config.json")); !bytes.Equal(got, written) {
		t.Errorf("config.json of a container not opted in changed")
	}
}
