package e2e

import (
	"bufio"
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
