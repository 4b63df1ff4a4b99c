package e2e

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/otel-go-launcher/otel-go-launcher/images"
	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// launch wrap on an image podman built and saved, as a user with an image and no
// Dockerfile does it: a scratch image with a non-root USER, an entrypoint and a cmd,
// wrapped docker-archive to docker-archive, loaded back and run with the launcher's
// capabilities. Its requests are traced from the first; the app runs as the image's
// user with no capabilities, the launcher as root; Cmd is still replaceable.
func TestWrapDockerArchive(t *testing.T) {
	env := podmanReady(t)
	src := plainImage(t, env, "amd64")
	const dst = "localhost/otel-go-launcher-e2e-wrapped:e2e"
	defer podmanCmd(env, "rmi", "-f", dst).Run()
	dir := t.TempDir()
	addr := freeAddr(t)
	saved, wrapped := filepath.Join(dir, "plain.tar"), filepath.Join(dir, "wrapped.tar")
	podman(t, env, "save", "--format", "docker-archive", "-o", saved, src)

	wrap := func(args ...string) (string, error) { return launchWrap(t, nil, args...) }
	if out, err := wrap("--env", "OTEL_SERVICE_NAME=wrapped-hello", "docker-archive:"+saved, "docker-archive:"+wrapped+":"+dst); err != nil {
		t.Fatalf("launch wrap: %v\n%s", err, out)
	}
	// Reproducible: the same input and launcher, the same archive.
	again := filepath.Join(dir, "again.tar")
	if out, err := wrap("--env", "OTEL_SERVICE_NAME=wrapped-hello", "docker-archive:"+saved, "docker-archive:"+again+":"+dst); err != nil {
		t.Fatalf("launch wrap: %v\n%s", err, out)
	}
	if a, b := sha(t, wrapped), sha(t, again); a != b {
		t.Errorf("two wraps of one archive differ: %s and %s", a, b)
	}
	podman(t, env, "load", "-q", "-i", wrapped)

	inspect := func(format string) string { return podman(t, env, "image", "inspect", dst, "--format", format) }
	if got, want := inspect("{{json .Config.Entrypoint}}"), `["/.otel-go-launcher/launch","--user","65534:65534","--","/app"]`; got != want {
		t.Errorf("Entrypoint %s, want %s", got, want)
	}
	if got := inspect("{{json .Config.Cmd}} {{.Config.User}} {{index .Config.Labels \"team\"}}"); got != `["-addr","127.0.0.1:1"] 0:0 e2e` {
		t.Errorf("Cmd, User, label: %s", got)
	}

	recv := testenv.StartReceiver(t)
	name := fmt.Sprintf("otel-go-launcher-e2e-wrap-%d", os.Getpid())
	podman(t, env, "run", "-d", "--name", name, "--network", "host", "--cap-add", "SYS_ADMIN,BPF,PERFMON,NET_ADMIN",
		"-e", "OTEL_EXPORTER_OTLP_ENDPOINT="+recv.Endpoint, "-e", "OTEL_BSP_SCHEDULE_DELAY=500",
		dst, "-addr", addr) // arguments replace Cmd, as before the wrap
	defer podmanCmd(env, "rm", "-f", name).Run()
	firstRequest(t, addr, "/hello/first")
	client := &http.Client{Timeout: 5 * time.Second}
	for i := 0; i < 3; i++ {
		resp, err := client.Get("http://" + addr + "/hello/n" + fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	// Who runs: the launcher as root with its capabilities, the app as 65534 with none.
	top := podman(t, env, "top", name, "user", "group", "capeff", "hpid", "args")
	var sawApp, sawLauncher bool
	for _, line := range strings.Split(top, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		switch {
		case strings.HasPrefix(f[4], "/app"):
			sawApp = true
			if f[0] != "nobody" && f[0] != "65534" || f[1] != "nogroup" && f[1] != "65534" || f[2] != "none" {
				t.Errorf("the app runs as %s:%s with capabilities %s, want 65534:65534 and none", f[0], f[1], f[2])
			}
			// Its environment: the image's, the wrap's, and the HOME the runtime gives
			// its user ("/": the image has no /etc/passwd), not the launcher's /root.
			environ, err := os.ReadFile("/proc/" + f[3] + "/environ")
			if err != nil {
				t.Fatal(err)
			}
			vars := strings.Split(string(environ), "\x00")
			for _, want := range []string{"MODE=prod", "OTEL_SERVICE_NAME=wrapped-hello", "HOME=/"} {
				if !slices.Contains(vars, want) {
					t.Errorf("the app's environment has no %s: %q", want, vars)
				}
			}
		case strings.HasPrefix(f[4], "/.otel-go-launcher/launch"):
			sawLauncher = true
			if f[0] != "root" && f[0] != "0" || !strings.Contains(f[2], "SYS_ADMIN") {
				t.Errorf("the launcher runs as %s with %s", f[0], f[2])
			}
		}
	}
	if !sawApp || !sawLauncher {
		t.Errorf("podman top:\n%s", top)
	}

	podman(t, env, "stop", "-t", "10", name)
	if code := podman(t, env, "inspect", name, "--format", "{{.State.ExitCode}}"); code != "0" {
		t.Errorf("exit code %s, want the app's 0", code)
	}
	n := 0
	for _, s := range recv.Spans() {
		if s.Resource["service.name"] == "wrapped-hello" && strings.HasPrefix(fmt.Sprint(s.Attrs["url.path"]), "/hello/") {
			n++
		}
	}
	if n != 4 {
		logs, _ := podmanCmd(env, "logs", name).CombinedOutput()
		t.Errorf("%d spans of service wrapped-hello for 4 requests, want 4\nlogs:\n%s", n, logs)
	}

	// Bad input: one line, exit 1, nothing at the destination.
	bad := filepath.Join(dir, "bad.tar")
	os.WriteFile(bad, []byte("not an archive"), 0o644)
	for _, args := range [][]string{
		{"docker-archive:" + bad, "docker-archive:" + filepath.Join(dir, "out1.tar")},
		{"docker-archive:" + filepath.Join(dir, "missing.tar"), "docker-archive:" + filepath.Join(dir, "out2.tar")},
		{"nosuch:/x", "docker-archive:" + filepath.Join(dir, "out3.tar")},
	} {
		out, err := wrap(args...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || len(lines) != 1 || !strings.HasPrefix(lines[0], "launch wrap: ") {
			t.Errorf("launch wrap %v: %v\n%s", args, err, out)
		}
	}
	for _, f := range []string{"out1.tar", "out2.tar", "out3.tar"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("%s written after a failure", f)
		}
	}
}

// plainImage builds, once per architecture, a scratch image of examples/hello for
// linux/ARCH as a user's own image is: a non-root USER, an environment, a label, an
// entrypoint and a cmd, and no launcher.
func plainImage(t *testing.T, env []string, arch string) string {
	t.Helper()
	name := "localhost/otel-go-launcher-e2e-plain:" + arch
	plainMu.Lock()
	defer plainMu.Unlock()
	if plainBuilt[name] {
		return name
	}
	app, err := testenv.BuildProgram("./examples/hello", "CGO_ENABLED=0", "GOARCH="+arch, "GOFLAGS=-trimpath -ldflags=-w")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	data, err := os.ReadFile(app)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "app"), data, 0o755)
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY app /app\nUSER 65534:65534\nENV MODE=prod\nLABEL team=e2e\nENTRYPOINT [\"/app\"]\nCMD [\"-addr\", \"127.0.0.1:1\"]\n"), 0o644)
	podman(t, env, "build", "-q", "--platform", "linux/"+arch, "-t", name, dir)
	plainBuilt[name] = true
	return name
}

var (
	plainMu    sync.Mutex
	plainBuilt = map[string]bool{}
)

// launchWrap runs launch wrap with extra environment variables.
func launchWrap(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(launchBin(t), append([]string{"wrap"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// A registry process (crane registry serve) on a free loopback port.
func startRegistry(t *testing.T) string {
	t.Helper()
	testenv.RequireCommand(t, "crane")
	addr := freeAddr(t)
	cmd := exec.Command("crane", "registry", "serve", "--address", addr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("crane registry serve on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func crane(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("crane", args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("crane %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return strings.TrimSpace(string(out))
}

// Registry to registry with a real registry process: a two-platform image (amd64 and
// arm64) wrapped with the launchers of a two-platform otel-go-launcher image, each
// platform carrying the launcher ELF of its architecture; the amd64 image pulled back
// by podman and run is traced.
func TestWrapRegistry(t *testing.T) {
	env := podmanReady(t)
	reg := startRegistry(t)
	push := func(local, remote string) {
		podman(t, env, "push", "-q", "--tls-verify=false", local, "docker://"+reg+"/"+remote)
	}
	// The base image for both architectures, from launchers built for each.
	bins := t.TempDir()
	if err := testenv.ImageBinaries(bins, launchBin(t), "amd64", "arm64"); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("../scripts/image.sh")
	cmd.Env = append(os.Environ(), "BIN_DIR="+bins, "IMAGE=localhost/otel-go-launcher-e2e-multi", "VERSION=e2e", "PLATFORMS=linux/amd64,linux/arm64", "CONTAINER_TOOL=podman")
	cmd.Env = append(cmd.Env, env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("image.sh: %v\n%s", err, out)
	}
	for _, arch := range []string{"amd64", "arm64"} {
		push("localhost/otel-go-launcher-e2e-multi:e2e-"+arch, "launcher:"+arch)
		push(plainImage(t, env, arch), "app:"+arch)
	}
	crane(t, "index", "append", "-m", reg+"/launcher:amd64", "-m", reg+"/launcher:arm64", "-t", reg+"/launcher:multi")
	crane(t, "index", "append", "-m", reg+"/app:amd64", "-m", reg+"/app:arm64", "-t", reg+"/app:multi")

	out, err := launchWrap(t, nil, "--launcher-image", reg+"/launcher:multi", "--env", "OTEL_SERVICE_NAME=wrapped-multi", reg+"/app:multi", "docker://"+reg+"/app:multi-traced")
	if err != nil {
		t.Fatalf("launch wrap: %v\n%s", err, out)
	}
	manifests := crane(t, "index", "list", reg+"/app:multi-traced")
	for _, arch := range []string{"amd64", "arm64"} {
		if !strings.Contains(manifests, "linux/"+arch) {
			t.Errorf("the wrapped index has no linux/%s: %s", arch, manifests)
		}
		fs := filepath.Join(t.TempDir(), "fs.tar")
		crane(t, "export", "--platform", "linux/"+arch, reg+"/app:multi-traced", fs)
		bin := testenv.TarFile(t, fs, ".otel-go-launcher/launch")
		f, err := elf.NewFile(bytes.NewReader(bin))
		if err != nil {
			t.Fatalf("linux/%s: the launcher: %v", arch, err)
		}
		want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]
		if f.Machine != want {
			t.Errorf("linux/%s carries a launcher for %v", arch, f.Machine)
		}
	}
	// The annotations name the source.
	if m := crane(t, "manifest", reg+"/app:multi-traced"); !strings.Contains(m, "org.opencontainers.image.base.name") {
		t.Errorf("no base.name annotation: %s", m)
	}

	// Pulled and run: traced.
	wrapped := reg + "/app:multi-traced"
	podman(t, env, "pull", "-q", "--tls-verify=false", "--platform", "linux/amd64", wrapped)
	defer podmanCmd(env, "rmi", "-f", wrapped).Run()
	recv := testenv.StartReceiver(t)
	addr := freeAddr(t)
	name := fmt.Sprintf("otel-go-launcher-e2e-wrap-reg-%d", os.Getpid())
	podman(t, env, "run", "-d", "--name", name, "--network", "host", "--cap-add", "SYS_ADMIN,BPF,PERFMON,NET_ADMIN",
		"-e", "OTEL_EXPORTER_OTLP_ENDPOINT="+recv.Endpoint, "-e", "OTEL_BSP_SCHEDULE_DELAY=200", wrapped, "-addr", addr)
	defer podmanCmd(env, "rm", "-f", name).Run()
	firstRequest(t, addr, "/hello/first")
	podman(t, env, "stop", "-t", "10", name)
	if n := len(spansOf(recv.Spans(), "wrapped-multi", tracepb.Span_SPAN_KIND_SERVER, firstTrace(recv, "wrapped-multi"))); n != 1 {
		t.Errorf("%d spans of service wrapped-multi for one request, want 1", n)
	}
}

// The Docker Engine API (podman's compatible service here): docker-daemon: in and out.
func TestWrapDaemon(t *testing.T) {
	env := podmanReady(t)
	src := plainImage(t, env, "amd64")
	sock := filepath.Join(t.TempDir(), "engine.sock")
	svc := podmanCmd(env, "system", "service", "--time=0", "unix://"+sock)
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { svc.Process.Kill(); svc.Wait() }()
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i == 200 {
			t.Fatal("podman system service made no socket")
		}
		time.Sleep(50 * time.Millisecond)
	}
	const dst = "localhost/otel-go-launcher-e2e-wrapped-daemon:e2e"
	defer podmanCmd(env, "rmi", "-f", dst).Run()
	if out, err := launchWrap(t, []string{"DOCKER_HOST=unix://" + sock}, "docker-daemon:"+src, "docker-daemon:"+dst); err != nil {
		t.Fatalf("launch wrap: %v\n%s", err, out)
	}
	if got, want := podman(t, env, "image", "inspect", dst, "--format", "{{json .Config.Entrypoint}}"), `["/.otel-go-launcher/launch","--user","65534:65534","--","/app"]`; got != want {
		t.Errorf("Entrypoint %s, want %s", got, want)
	}
	out, err := launchWrap(t, []string{"DOCKER_HOST=unix://" + sock}, "docker-daemon:localhost/no-such-image:1", "docker-daemon:"+dst+"-x")
	if err == nil || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Errorf("a missing image: %v\n%s", err, out)
	}
}

// firstTrace is the trace ID of a service's first span.
func firstTrace(recv *testenv.Receiver, service string) string {
	for _, s := range recv.Spans() {
		if s.Resource["service.name"] == service {
			return s.TraceID
		}
	}
	return ""
}

func sha(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("sha256sum", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(out))[0]
}

// containerd's image store, as on a Kubernetes node: a private containerd (its own root,
// state and socket in a temporary directory), the plain image imported with ctr, wrapped
// in place under a new name, and run by ctr with the launcher's capabilities: traced.
func TestWrapContainerd(t *testing.T) {
	env := podmanReady(t)
	sock, ctr, dir := startContainerd(t)
	const container = "otel-go-launcher-e2e-wrapped"
	defer removeContainerdTask(sock, container)

	src := importPlainImage(t, env, ctr, dir)
	const dst = "localhost/otel-go-launcher-e2e-wrapped:containerd"
	if out, err := launchWrap(t, nil, "--containerd-address", sock, "--env", "OTEL_SERVICE_NAME=wrapped-containerd", "containerd:"+src, "containerd:"+dst); err != nil {
		t.Fatalf("launch wrap: %v\n%s", err, out)
	}
	if images := ctr("images", "ls", "-q"); !strings.Contains(images, dst) || !strings.Contains(images, src) {
		t.Fatalf("containerd's images after the wrap:\n%s", images)
	}
	// What the runtime will run: read back through the store.
	rw := &images.IO{ContainerdAddress: sock}
	defer rw.Close()
	wrapped, err := rw.Read(context.Background(), images.Ref{Transport: images.Containerd, Name: dst})
	if err != nil {
		t.Fatal(err)
	}
	cf, err := wrapped.Image.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(cf.Config.Entrypoint, " "), "/.otel-go-launcher/launch --user 65534:65534 -- /app"; got != want {
		t.Errorf("Entrypoint %q, want %q", got, want)
	}

	recv := testenv.StartReceiver(t)
	addr := freeAddr(t)
	// ctr run takes the whole command line (Entrypoint + arguments), as the runtime
	// composes it.
	args := []string{"run", "-d", "--net-host", "--cap-add", "CAP_SYS_ADMIN", "--cap-add", "CAP_BPF", "--cap-add", "CAP_PERFMON", "--cap-add", "CAP_NET_ADMIN",
		"--env", "OTEL_EXPORTER_OTLP_ENDPOINT=" + recv.Endpoint, "--env", "OTEL_BSP_SCHEDULE_DELAY=200", dst, container}
	ctr(append(append(args, cf.Config.Entrypoint...), "-addr", addr)...)
	firstRequest(t, addr, "/hello/first")
	deadline := time.Now().Add(10 * time.Second)
	for len(spansOf(recv.Spans(), "wrapped-containerd", tracepb.Span_SPAN_KIND_SERVER, firstTrace(recv, "wrapped-containerd"))) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := len(spansOf(recv.Spans(), "wrapped-containerd", tracepb.Span_SPAN_KIND_SERVER, firstTrace(recv, "wrapped-containerd"))); n != 1 {
		t.Errorf("%d spans of service wrapped-containerd for its first request, want 1", n)
	}
}
