package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"golang.org/x/sys/unix"

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

// Hostile inputs to the real launch binary, each a one-line repro of a finding of
// the privilege boundary review: exit 1, one line on stderr saying what failed, on
// what and what to do, at once, and nothing written where it should not be.
func TestWrapHostileInputs(t *testing.T) {
	dir := t.TempDir()
	tmp := filepath.Join(dir, "tmp") // the launcher's TMPDIR: must stay empty
	os.Mkdir(tmp, 0o700)
	good := hostileLayout(t, filepath.Join(dir, "good"), func(l *fixtureLayout) v1.Descriptor { return l.leaf() })
	nested := hostileLayout(t, filepath.Join(dir, "nested"), func(l *fixtureLayout) v1.Descriptor {
		d := l.leaf()
		for range 20 { // each index names its child twice: 2^20 paths
			d = l.index(d, d)
		}
		return d
	})
	badDiffID := hostileLayout(t, filepath.Join(dir, "diffid"), func(l *fixtureLayout) v1.Descriptor {
		good, evil := fixtureTar("app", "#!/bin/true\n"), fixtureTar("app", "#!/bin/rm -rf /\n")
		return l.image(fixtureGzip(evil), fixtureDigest(good))
	})
	sparse := filepath.Join(dir, "sparse.tar")
	os.WriteFile(sparse, sparseOCIArchive(t), 0o644)
	// An existing layout whose blobs/ is a symlink to a directory of someone else's.
	existing, victim := filepath.Join(dir, "existing"), filepath.Join(dir, "victim")
	if out, err := launchWrap(t, nil, "oci:"+good, "oci:"+existing+":v1"); err != nil {
		t.Fatalf("launch wrap: %v\n%s", err, out)
	}
	os.Rename(filepath.Join(existing, "blobs"), victim)
	os.Symlink(victim, filepath.Join(existing, "blobs"))
	victimBefore := fixtureTree(t, victim)

	env := []string{"TMPDIR=" + tmp}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"nested indexes", []string{"oci:" + nested, "oci:" + filepath.Join(dir, "out1")}, "nests indexes 9 deep, over the limit of 8"},
		{"sparse entry", []string{"oci-archive:" + sparse, "oci:" + filepath.Join(dir, "out2")}, "is a sparse file: refused"},
		{"diff ID", []string{"oci:" + badDiffID, "docker-archive:" + filepath.Join(dir, "out3.tar") + ":app:1"}, "not to the diff ID its image config gives"},
		{"symlinked blobs/", []string{"oci:" + good, "oci:" + existing + ":v2"}, filepath.Join(existing, "blobs") + " is a symlink: refused"},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			out, err := launchWrap(t, env, c.args...)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || len(lines) != 1 || !strings.HasPrefix(lines[0], "launch wrap: ") || !strings.Contains(out, c.want) {
				t.Errorf("launch wrap %q: %v\n%s\nwant exit 1 and one line saying %q", c.args, err, out, c.want)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
	for _, f := range []string{"out1", "out2", "out3.tar"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("%s written after a failure", f)
		}
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Errorf("left in TMPDIR: %v", entries)
	}
	after := fixtureTree(t, victim)
	if len(after) != len(victimBefore) {
		t.Errorf("the symlinked blobs/ target changed: %d files, was %d", len(after), len(victimBefore))
	}

	// --env takes a value whole, commas and all.
	out, err := launchWrap(t, nil, "--dry-run", "--env", "OTEL_RESOURCE_ATTRIBUTES=a=b,c=d", "oci:"+good, "oci:"+filepath.Join(dir, "out4"))
	if err != nil || !strings.Contains(out, "Env: + OTEL_RESOURCE_ATTRIBUTES=a=b,c=d\n") || strings.Contains(out, "Env: + c=d") {
		t.Errorf("--env OTEL_RESOURCE_ATTRIBUTES=a=b,c=d: %v\n%s", err, out)
	}
}

// The temporary file of a file destination had a predictable name, removed and made
// again by name: a symlink planted there in between had root write the archive into
// its target. With a symlink at the old name and another process turning every
// temporary name and the old one into a symlink as fast as it can, the target is
// never written.
func TestWrapTempFileRace(t *testing.T) {
	dir, victimDir := t.TempDir(), t.TempDir()
	src := hostileLayout(t, filepath.Join(t.TempDir(), "src"), func(l *fixtureLayout) v1.Descriptor { return l.leaf() })
	victim := filepath.Join(victimDir, "victim")
	os.WriteFile(victim, []byte("victim"), 0o644)
	oldName := filepath.Join(dir, ".out.tar.launch-wrap.tmp")
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			os.Symlink(victim, oldName)
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if p := filepath.Join(dir, e.Name()); e.Type()&os.ModeSymlink == 0 && strings.Contains(e.Name(), "launch-wrap") && os.Remove(p) == nil {
					os.Symlink(victim, p)
				}
			}
		}
	}()
	for range 3 {
		launchWrap(t, nil, "oci:"+src, "docker-archive:"+filepath.Join(dir, "out.tar"))
	}
	stop.Store(true)
	<-done
	if b, _ := os.ReadFile(victim); string(b) != "victim" {
		t.Errorf("the symlink's target was written: %d bytes", len(b))
	}
}

// SIGINT and SIGTERM stop a wrap within a second, mid-layer (a registry sending the
// layer slowly): exit 130 or 143, one line, nothing at the destination, no temporary
// file beside it or in TMPDIR.
func TestWrapInterrupted(t *testing.T) {
	reg, layerStarted := slowRegistry(t)
	for _, c := range []struct {
		sig  syscall.Signal
		dst  string
		code int
	}{
		{syscall.SIGINT, "oci:%s/out", 130},
		{syscall.SIGTERM, "oci-archive:%s/out.tar", 143},
		{syscall.SIGTERM, "docker-archive:%s/out.tar", 143},
	} {
		t.Run(unix.SignalName(c.sig)+"/"+strings.Split(c.dst, ":")[0], func(t *testing.T) {
			dir, tmp := t.TempDir(), t.TempDir()
			cmd := exec.Command(launchBin(t), "wrap", reg+"/app:1", fmt.Sprintf(c.dst, dir))
			cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			select {
			case <-layerStarted:
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("the layer was never asked for\n%s", stderr.String())
			}
			cmd.Process.Signal(c.sig)
			sent := time.Now()
			err := cmd.Wait()
			took := time.Since(sent)
			if took > time.Second {
				t.Errorf("exited %v after %v", took, c.sig)
			}
			want := fmt.Sprintf("launch wrap: interrupted by %s: nothing written to %s", unix.SignalName(c.sig), fmt.Sprintf(c.dst, dir))
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != c.code || strings.TrimSpace(stderr.String()) != want {
				t.Errorf("after %v: %v, stderr %q; want exit %d and %q", c.sig, err, stderr.String(), c.code, want)
			}
			for _, d := range []string{dir, tmp} {
				if entries, _ := os.ReadDir(d); len(entries) != 0 {
					t.Errorf("left in %s: %v", d, entries)
				}
			}
		})
	}
}

// slowRegistry serves an image whose one layer (1 MiB) comes at 4 KiB a tenth of a
// second: a wrap reading it takes half a minute. layerStarted ticks when a layer
// request begins.
func slowRegistry(t *testing.T) (string, chan struct{}) {
	t.Helper()
	noise := make([]byte, 1<<20)
	rand.New(rand.NewSource(1)).Read(noise)
	l := newFixtureLayout(t, t.TempDir())
	layer := fixtureTar("noise", string(noise))
	stored := fixtureGzip(layer)
	l.top(l.image(stored, fixtureDigest(layer)))
	img, err := layout.ImageIndexFromPath(l.dir)
	if err != nil {
		t.Fatal(err)
	}
	im, _ := img.IndexManifest()
	image, err := img.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	layerPath := "/blobs/" + fixtureDigest(stored).String()
	started := make(chan struct{}, 8)
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, layerPath) {
			reg.ServeHTTP(w, r)
			return
		}
		select {
		case started <- struct{}{}:
		default:
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(stored)))
		w.WriteHeader(http.StatusOK)
		for off := 0; off < len(stored); off += 4 << 10 {
			if _, err := w.Write(stored[off:min(off+4<<10, len(stored))]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}))
	t.Cleanup(s.Close)
	host := strings.TrimPrefix(s.URL, "http://")
	ref, err := name.ParseReference(host + "/app:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, image); err != nil {
		t.Fatal(err)
	}
	// The push sent the layer and fetched none; drop a tick all the same.
	for len(started) > 0 {
		<-started
	}
	return host, started
}

// fixtureLayout writes an OCI layout's files by hand, as an attacker would.
type fixtureLayout struct {
	t   *testing.T
	dir string
}

func newFixtureLayout(t *testing.T, dir string) *fixtureLayout {
	t.Helper()
	l := &fixtureLayout{t: t, dir: dir}
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		t.Fatal(err)
	}
	l.write("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	return l
}

// hostileLayout makes a layout in dir whose index.json names what top makes.
func hostileLayout(t *testing.T, dir string, top func(*fixtureLayout) v1.Descriptor) string {
	l := newFixtureLayout(t, dir)
	l.top(top(l))
	return dir
}

func (l *fixtureLayout) write(name string, b []byte) {
	l.t.Helper()
	if err := os.WriteFile(filepath.Join(l.dir, name), b, 0o644); err != nil {
		l.t.Fatal(err)
	}
}

func (l *fixtureLayout) blob(b []byte, mt types.MediaType) v1.Descriptor {
	d := v1.Descriptor{MediaType: mt, Size: int64(len(b)), Digest: fixtureDigest(b)}
	l.write("blobs/sha256/"+d.Digest.Hex, b)
	return d
}

func (l *fixtureLayout) json(v any, mt types.MediaType) v1.Descriptor {
	b, err := json.Marshal(v)
	if err != nil {
		l.t.Fatal(err)
	}
	return l.blob(b, mt)
}

func (l *fixtureLayout) index(children ...v1.Descriptor) v1.Descriptor {
	return l.json(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: children}, types.OCIImageIndex)
}

func (l *fixtureLayout) top(d v1.Descriptor) {
	b, _ := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{d}})
	l.write("index.json", b)
}

// image is a one-layer linux/amd64 image whose config gives the layer diffID.
func (l *fixtureLayout) image(stored []byte, diffID v1.Hash) v1.Descriptor {
	config := l.json(map[string]any{"architecture": "amd64", "os": "linux", "config": map[string]any{"Entrypoint": []string{"/app"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []v1.Hash{diffID}}}, types.OCIConfigJSON)
	return l.json(v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, Config: config, Layers: []v1.Descriptor{l.blob(stored, types.OCILayer)}}, types.OCIManifestSchema1)
}

func (l *fixtureLayout) leaf() v1.Descriptor {
	layer := fixtureTar("app", "#!/bin/true\n")
	return l.image(fixtureGzip(layer), fixtureDigest(layer))
}

func fixtureDigest(b []byte) v1.Hash {
	h := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h[:])}
}

func fixtureTar(name, content string) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o755, Size: int64(len(content))})
	tw.Write([]byte(content))
	tw.Close()
	return b.Bytes()
}

func fixtureGzip(b []byte) []byte {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(b)
	zw.Close()
	return out.Bytes()
}

// sparseOCIArchive is an OCI archive (2.5 KB) one of whose blobs is a PAX sparse
// file of 1 GiB, all hole but its last byte: extracting it wrote 1 GiB to /tmp.
// archive/tar writes no sparse files, so its extended header is made here.
func sparseOCIArchive(t *testing.T) []byte {
	t.Helper()
	var w bytes.Buffer
	tw := tar.NewWriter(&w)
	entry := func(hdr *tar.Header, data []byte, typeflag byte) {
		tw.Flush()
		start := w.Len()
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
		tw.Flush()
		if typeflag != 0 {
			h := w.Bytes()[start : start+512]
			h[156] = typeflag
			copy(h[148:156], "        ")
			var sum int
			for _, c := range h {
				sum += int(c)
			}
			copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
		}
	}
	layout := []byte(`{"imageLayoutVersion":"1.0.0"}`)
	entry(&tar.Header{Typeflag: tar.TypeReg, Name: "oci-layout", Size: int64(len(layout)), Mode: 0o644, Format: tar.FormatUSTAR}, layout, 0)
	name := "blobs/sha256/" + strings.Repeat("ab", 32)
	var records string
	for _, kv := range [][2]string{{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"}, {"GNU.sparse.name", name}, {"GNU.sparse.realsize", "1073741824"}} {
		rec := " " + kv[0] + "=" + kv[1] + "\n"
		n := len(rec) + 1
		for len(fmt.Sprint(n))+len(rec) != n {
			n++
		}
		records += fmt.Sprint(n) + rec
	}
	entry(&tar.Header{Typeflag: tar.TypeReg, Name: "PaxHeaders/blob", Size: int64(len(records)), Mode: 0o644, Format: tar.FormatUSTAR}, []byte(records), tar.TypeXHeader)
	sparseMap := make([]byte, 512)
	copy(sparseMap, "1\n1073741823\n1\n")
	entry(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: 513, Mode: 0o644, Format: tar.FormatUSTAR}, append(sparseMap, 'x'), 0)
	tw.Close()
	return w.Bytes()
}

// fixtureTree lists the files under dir.
func fixtureTree(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			files = append(files, p)
		}
		return nil
	})
	return files
}
