package e2e

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// Container tests run real containers with podman (docker where its engine runs takes
// the same files): the base image built by scripts/image.sh, a service image FROM it
// with the documented ENTRYPOINT, run as users run them.

const (
	baseImage    = "localhost/otel-go-launcher-e2e"
	baseImageTag = baseImage + ":e2e"
)

var (
	containerOnce sync.Once
	containerEnv  []string // for podman: CONTAINERS_CONF when the default cannot run containers
	containerErr  error
)

// podmanReady builds the base image from the launcher under test and finds a podman
// configuration that runs containers: the default, else the tests' own
// (testdata/podman/containers.conf: these VMs have hybrid cgroups and capped rlimits).
func podmanReady(t *testing.T) []string {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "podman")
	testenv.RequireCommand(t, "runc")
	containerOnce.Do(func() {
		bin, err := os.MkdirTemp("", "e2e-image-")
		if err != nil {
			containerErr = err
			return
		}
		defer os.RemoveAll(bin)
		if err := testenv.ImageBinaries(bin, launchBin(t), "amd64"); err != nil {
			containerErr = err
			return
		}
		cmd := exec.Command("../scripts/image.sh")
		cmd.Env = append(os.Environ(), "BIN_DIR="+bin, "IMAGE="+baseImage, "VERSION=e2e", "PLATFORMS=linux/amd64", "CONTAINER_TOOL=podman")
		if out, err := cmd.CombinedOutput(); err != nil {
			containerErr = fmt.Errorf("build the base image: %v\n%s", err, out)
			return
		}
		conf, _ := filepath.Abs("testdata/podman/containers.conf")
		for _, env := range [][]string{nil, {"CONTAINERS_CONF=" + conf}} {
			out, err := podmanCmd(env, "run", "--rm", baseImageTag, "launch", "--version").CombinedOutput()
			if err == nil && strings.HasPrefix(string(out), "launch version") {
				containerEnv, containerErr = env, nil
				return
			}
			containerErr = fmt.Errorf("podman run (%v): %v\n%s", env, err, out)
		}
	})
	if containerErr != nil {
		t.Fatal(containerErr)
	}
	return containerEnv
}

func podmanCmd(env []string, args ...string) *exec.Cmd {
	cmd := exec.Command("podman", args...)
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

func podman(t *testing.T, env []string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := podmanCmd(env, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("podman %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// serviceImage builds an image of examples/hello FROM the base image, as the README
// says: COPY app /app, ENTRYPOINT ["launch", "--", "/app"].
func serviceImage(t *testing.T, env []string) string {
	t.Helper()
	app, err := testenv.BuildProgram("./examples/hello", "CGO_ENABLED=0", "GOFLAGS=-trimpath -ldflags=-w")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	data, err := os.ReadFile(app)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "app"), data, 0o755)
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM "+baseImageTag+"\nCOPY app /app\nENTRYPOINT [\"launch\", \"--\", \"/app\"]\n"), 0o644)
	const name = "localhost/otel-go-launcher-e2e-hello:e2e"
	podman(t, env, "build", "-q", "-t", name, dir)
	return name
}

// The base image is what it says: launch on PATH, CA certificates, /tmp, labels.
func TestBaseImage(t *testing.T) {
	env := podmanReady(t)
	out := podman(t, env, "image", "inspect", baseImageTag, "--format",
		"{{index .Labels \"org.opencontainers.image.title\"}} {{index .Labels \"org.opencontainers.image.version\"}} {{.Architecture}} {{.Size}}")
	var title, version, arch string
	var size int64
	fmt.Sscan(out, &title, &version, &arch, &size)
	if title != "otel-go-launcher" || version != "e2e" || arch != "amd64" || size <= 0 || size > 40<<20 {
		t.Errorf("image: %s", out)
	}
	for _, label := range []string{"revision", "source", "licenses"} {
		if v := podman(t, env, "image", "inspect", baseImageTag, "--format", "{{index .Labels \"org.opencontainers.image."+label+"\"}}"); v == "" || v == "<no value>" {
			t.Errorf("label %s missing", label)
		}
	}
	// The files: a scratch image has no ls, so read the container's exported tree.
	cid := podman(t, env, "create", baseImageTag, "launch")
	defer podmanCmd(env, "rm", cid).Run()
	export := filepath.Join(t.TempDir(), "fs.tar")
	podman(t, env, "export", "-o", export, cid)
	f, err := os.Open(export)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string]*tar.Header{}
	for tr := tar.NewReader(f); ; {
		h, err := tr.Next()
		if err != nil {
			break
		}
		files[strings.Trim(h.Name, "./")] = h
	}
	if h := files["usr/local/bin/launch"]; h == nil || h.Mode&0o777 != 0o755 || h.Uid != 0 {
		t.Errorf("/usr/local/bin/launch: %+v", h)
	}
	if h := files["etc/ssl/certs/ca-certificates.crt"]; h == nil || h.Size < 1000 {
		t.Errorf("CA certificates: %+v", h)
	}
	if h := files["tmp"]; h == nil || h.Typeflag != tar.TypeDir || h.Mode&0o7777 != 0o1777 {
		t.Errorf("/tmp: %+v", h)
	}
	if envs := podman(t, env, "image", "inspect", baseImageTag, "--format", "{{json .Config.Env}}"); !strings.Contains(envs, "PATH=/usr/local/bin") {
		t.Errorf("image environment: %s", envs)
	}
	run := func(args ...string) string {
		return podman(t, env, append([]string{"run", "--rm", "--entrypoint", "launch", baseImageTag}, args...)...)
	}
	if out := run("--version"); !strings.HasPrefix(out, "launch version") {
		t.Errorf("launch --version: %q", out)
	}
	if out := run("inspect", "/usr/local/bin/launch"); !strings.Contains(out, "/usr/local/bin/launch: go1.") {
		t.Errorf("launch inspect itself: %q", out)
	}
}

// A service built FROM the base image and run with the documented capabilities is
// traced from its first request; `podman stop` reaches the app as SIGTERM, the
// container exits with the app's code, spans are flushed first, and the logs are the
// app's own. Without the capabilities it serves all the same, with one warning.
func TestContainerService(t *testing.T) {
	env := podmanReady(t)
	image := serviceImage(t, env)
	recv := testenv.StartReceiver(t)

	for _, caps := range []bool{true, false} {
		t.Run(fmt.Sprintf("caps=%v", caps), func(t *testing.T) {
			addr := freeAddr(t)
			name := fmt.Sprintf("otel-go-launcher-e2e-%d-%v", os.Getpid(), caps)
			args := []string{"run", "-d", "--name", name, "--network", "host",
				"-e", "OTEL_EXPORTER_OTLP_ENDPOINT=" + recv.Endpoint, "-e", "OTEL_BSP_SCHEDULE_DELAY=500", "-e", "OTEL_SERVICE_NAME=hello-" + fmt.Sprint(caps)}
			if caps {
				args = append(args, "--cap-add", "SYS_ADMIN,BPF,PERFMON,NET_ADMIN")
			}
			args = append(args, image, "-addr", addr)
			podman(t, env, args...)
			defer podmanCmd(env, "rm", "-f", name).Run()

			firstRequest(t, addr, "/hello/first")
			client := &http.Client{Timeout: 5 * time.Second}
			for i := 0; i < 5; i++ {
				resp, err := client.Get("http://" + addr + "/hello/n" + fmt.Sprint(i))
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("status %d", resp.StatusCode)
				}
			}
			// A call out, /greet -> /hello: the kernel inserts the traceparent from
			// inside the container too (the launcher mounts cgroup2 for the attach
			// where the container sees only v1).
			if resp, err := client.Get("http://" + addr + "/greet/kernel"); err != nil || resp.StatusCode != 200 {
				t.Fatalf("/greet: %v %v", resp, err)
			} else {
				resp.Body.Close()
			}
			podman(t, env, "stop", "-t", "10", name)
			code := podman(t, env, "inspect", name, "--format", "{{.State.ExitCode}}")
			out, err := podmanCmd(env, "logs", name).CombinedOutput() // the app's stdout and stderr
			if err != nil {
				t.Fatalf("podman logs: %v\n%s", err, out)
			}
			logs := string(out)
			if code != "0" { // examples/hello shuts down on SIGTERM and exits 0
				t.Errorf("exit code %s, want the app's 0\nlogs:\n%s", code, logs)
			}
			if !strings.Contains(logs, "listening on "+addr) || !strings.Contains(logs, "shutting down") {
				t.Errorf("the app's own logs are missing:\n%s", logs)
			}
			var launcherLines []string
			for _, l := range strings.Split(logs, "\n") {
				if strings.HasPrefix(l, "launch") {
					launcherLines = append(launcherLines, l)
				}
			}
			service := "hello-" + fmt.Sprint(caps)
			count := func() int {
				n := 0
				for _, s := range recv.Spans() {
					if s.Resource["service.name"] == service {
						n++
					}
				}
				return n
			}
			if caps {
				if len(launcherLines) > 0 {
					t.Errorf("launcher lines with the capabilities:\n%s", strings.Join(launcherLines, "\n"))
				}
				// Every request, the first included, and those just before the stop
				// (flushed at exit: the batch delay is longer than stopping takes):
				// 6 /hello, and /greet's server, client and /hello server spans.
				if n := count(); n != 9 {
					t.Errorf("%d spans for 7 requests and a call (want 9)\nlogs:\n%s", n, logs)
				}
				var greet, call, hello *testenv.Span
				for _, sp := range recv.Spans() {
					switch {
					case sp.Resource["service.name"] != service:
					case sp.Name == "GET /greet/{name}":
						greet = &sp
					case sp.Kind == tracepb.Span_SPAN_KIND_CLIENT:
						call = &sp
					case sp.Attrs["url.path"] == "/hello/kernel":
						hello = &sp
					}
				}
				if greet == nil || call == nil || hello == nil || call.ParentSpanID != greet.SpanID ||
					hello.ParentSpanID != call.SpanID || hello.TraceID != greet.TraceID {
					t.Errorf("the call out is not one trace: greet %+v\nclient %+v\nhello %+v", greet, call, hello)
				}
			} else {
				if len(launcherLines) != 1 || !strings.Contains(launcherLines[0], "SYS_ADMIN") {
					t.Errorf("without capabilities, want one launcher line naming SYS_ADMIN, got:\n%s", logs)
				}
				if n := count(); n != 0 {
					t.Errorf("%d spans without capabilities", n)
				}
			}
		})
	}
}
