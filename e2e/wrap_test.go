package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// launch wrap on an image podman built and saved, as a user with an image and no
// Dockerfile does it: a scratch image with a non-root USER, an entrypoint and a cmd,
// wrapped docker-archive to docker-archive, loaded back and run with the launcher's
// capabilities. Its requests are traced from the first; the app runs as the image's
// user with no capabilities, the launcher as root; Cmd is still replaceable.
func TestWrapDockerArchive(t *testing.T) {
	env := podmanReady(t)
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
	addr := freeAddr(t)
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY app /app\nUSER 65534:65534\nENV MODE=prod\nLABEL team=e2e\nENTRYPOINT [\"/app\"]\nCMD [\"-addr\", \"127.0.0.1:1\"]\n"), 0o644)
	const src, dst = "localhost/otel-go-launcher-e2e-plain:e2e", "localhost/otel-go-launcher-e2e-wrapped:e2e"
	podman(t, env, "build", "-q", "-t", src, dir)
	defer podmanCmd(env, "rmi", "-f", src, dst).Run()
	saved, wrapped := filepath.Join(dir, "plain.tar"), filepath.Join(dir, "wrapped.tar")
	podman(t, env, "save", "--format", "docker-archive", "-o", saved, src)

	wrap := func(args ...string) (string, error) {
		out, err := exec.Command(launchBin(t), append([]string{"wrap"}, args...)...).CombinedOutput()
		return string(out), err
	}
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

func sha(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("sha256sum", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(out))[0]
}
