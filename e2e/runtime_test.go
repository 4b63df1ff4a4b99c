package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/otel-go-launcher/otel-go-launcher/images"
	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// launch-runtime in front of runc, as podman's --runtime: a container that opts in by
// annotation is traced, with no capability or image change of its own, and its app runs
// with the user, groups and capabilities the same container has under plain runc; one
// that does not opt in runs exactly as under runc. (Issue 15's first part.)
func TestLaunchRuntimePodman(t *testing.T) {
	env := podmanReady(t)
	runtime := filepath.Join(filepath.Dir(launchBin(t)), "launch-runtime")
	if _, err := os.Stat(runtime); err != nil {
		t.Fatalf("launch-runtime is built next to launch (make build): %v", err)
	}
	image := plainImage(t, env, "amd64")
	recv := testenv.StartReceiver(t)
	type proc struct{ user, group, caps string }
	run := func(name string, traced bool, extra ...string) (app proc, launcherSeen bool) {
		t.Helper()
		addr := freeAddr(t)
		args := []string{"run", "-d", "--name", name, "--network", "host", "-e", "OTEL_EXPORTER_OTLP_ENDPOINT=" + recv.Endpoint, "-e", "OTEL_BSP_SCHEDULE_DELAY=200"}
		if traced {
			args = append(args, "--runtime", runtime, "--annotation", images.AnnotationTrace+"=true", "--annotation", images.AnnotationEnvPrefix+"OTEL_SERVICE_NAME="+name)
		} else if len(extra) > 0 {
			args = append(args, extra...)
		}
		podman(t, env, append(args, image, "-addr", addr)...)
		defer podmanCmd(env, "rm", "-f", name).Run()
		firstRequest(t, addr, "/hello/first")
		for _, line := range strings.Split(podman(t, env, "top", name, "user", "group", "capeff", "args"), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 4 {
				continue
			}
			switch {
			case strings.HasPrefix(f[3], "/app"):
				app = proc{f[0], f[1], f[2]}
			case strings.HasPrefix(f[3], "/.otel-go-launcher/launch"):
				launcherSeen = true
			}
		}
		podman(t, env, "stop", "-t", "10", name)
		if code := podman(t, env, "inspect", name, "--format", "{{.State.ExitCode}}"); code != "0" {
			t.Errorf("%s: exit code %s, want the app's 0", name, code)
		}
		return app, launcherSeen
	}
	plain, launcherInPlain := run("otel-go-launcher-e2e-runc", false)
	traced, launcherInTraced := run("otel-go-launcher-e2e-launch-runtime", true)
	optOut, launcherInOptOut := run("otel-go-launcher-e2e-runtime-optout", false, "--runtime", runtime)
	if launcherInPlain || launcherInOptOut || !launcherInTraced {
		t.Errorf("the launcher ran: plain runc %v, launch-runtime without the annotation %v, with it %v", launcherInPlain, launcherInOptOut, launcherInTraced)
	}
	if traced != plain || optOut != plain {
		t.Errorf("the app's user, group, capabilities: %v traced, %v not opted in, %v under plain runc", traced, optOut, plain)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(spansOf(recv.Spans(), "otel-go-launcher-e2e-launch-runtime", tracepb.Span_SPAN_KIND_SERVER, firstTrace(recv, "otel-go-launcher-e2e-launch-runtime"))) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	for service, want := range map[string]int{"otel-go-launcher-e2e-launch-runtime": 1, "otel-go-launcher-e2e-runtime-optout": 0, "otel-go-launcher-e2e-runc": 0} {
		n := 0
		for _, s := range recv.Spans() {
			if s.Resource["service.name"] == service || (want == 0 && s.Resource["service.name"] == "app") {
				n++
			}
		}
		if n != want {
			t.Errorf("%d spans of %s, want %d", n, service, want)
		}
	}
}
