package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/otel-go-launcher/otel-go-launcher/images/bundle"
	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// The delegate here is a script that records what it was given: the real runtime's
// behaviour is the e2e suite's (podman, containerd, runc); this is about passing
// everything through exactly — argv, standard streams, inherited descriptors, the exit
// code — which a real runtime would hide.
const recordingDelegate = `#!/bin/sh
for a in "$@"; do printf '%s\n' "$a"; done >&3
cat
exit 42
`

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.Cleanup()
	os.Exit(code)
}

type delegated struct {
	args         []string
	stdout, logs string
	code         int
}

func runWrapper(t *testing.T, dir string, args ...string) delegated {
	t.Helper()
	wrapper := testenv.Build(t, "./cmd/launch-runtime")
	delegate := filepath.Join(dir, "runtime")
	os.WriteFile(delegate, []byte(recordingDelegate), 0o755)
	record, err := os.Create(filepath.Join(dir, "argv"))
	if err != nil {
		t.Fatal(err)
	}
	defer record.Close()
	cmd := exec.Command(wrapper, append([]string{"--delegate", delegate}, args...)...)
	cmd.Env = append(os.Environ(), "LAUNCH_RUNTIME_LAUNCHER="+filepath.Join(dir, "launch"))
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader("the container's stdin\n")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.ExtraFiles = []*os.File{record} // fd 3, as runc's --preserve-fds or a console socket would be
	err = cmd.Run()
	var d delegated
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		d.code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	argv, _ := os.ReadFile(record.Name())
	d.args = strings.Split(strings.TrimSuffix(string(argv), "\n"), "\n")
	d.stdout = stdout.String()
	logs, _ := os.ReadFile(filepath.Join(dir, "log.json"))
	d.logs = string(logs) + stderr.String()
	return d
}

func writeBundle(t *testing.T, annotations map[string]string) (string, []byte) {
	t.Helper()
	dir := t.TempDir()
	config, _ := json.Marshal(map[string]any{
		"ociVersion":  "1.0.2",
		"process":     map[string]any{"args": []string{"/app"}, "user": map[string]int{"uid": 0, "gid": 0}, "cwd": "/"},
		"root":        map[string]any{"path": "rootfs"},
		"annotations": annotations,
	})
	os.WriteFile(filepath.Join(dir, "config.json"), config, 0o644)
	os.WriteFile(filepath.Join(dir, "launch"), []byte("a launcher"), 0o755)
	return dir, config
}

// Every subcommand reaches the delegate with the same arguments (launch-runtime's own
// flags taken out), stdin, stdout and descriptors, and its exit code comes back.
func TestPassThrough(t *testing.T) {
	dir, config := writeBundle(t, map[string]string{"other": "x"})
	log := filepath.Join(dir, "log.json")
	for _, args := range [][]string{
		{"--root", "/run/r", "--log", log, "--log-format", "json", "create", "--bundle", dir, "--pid-file", "/run/p", "--console-socket", "/run/s", "id"},
		{"--all=false", "run", "-b", dir, "--preserve-fds", "1", "id"},
		{"start", "id"}, {"state", "id"}, {"kill", "id", "TERM"}, {"delete", "--force", "id"},
		{"exec", "--process", "/run/process.json", "--detach", "id"}, {"features"}, {"--systemd-cgroup", "ps", "id"},
	} {
		d := runWrapper(t, dir, args...)
		want := args
		if args[0] == "--all=false" { // launch-runtime's own flag, in its = form
			want = args[1:]
		}
		if !reflect.DeepEqual(d.args, want) || d.code != 42 || d.stdout != "the container's stdin\n" {
			t.Errorf("%q: the delegate got %q, stdin→stdout %q, exit %d; want %q, the stdin, 42", args, d.args, d.stdout, d.code, want)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "config.json")); !bytes.Equal(got, config) {
		t.Errorf("config.json of a container that does not opt in changed:\n%s", got)
	}
	if _, err := os.Stat(bundle.TracedDir(dir)); err == nil {
		t.Errorf("a traced bundle was written for a container that does not opt in")
	}
}

// A container that opts in runs from the traced bundle; the engine's config.json
// stays byte for byte what it wrote.
func TestTracedBundle(t *testing.T) {
	dir, config := writeBundle(t, map[string]string{bundle.AnnotationTrace: "true"})
	for _, args := range [][]string{
		{"create", "--bundle", dir, "id"},
		{"create", "--bundle=" + dir, "id"},
		{"run", "-b", dir, "--detach", "id"},
	} {
		d := runWrapper(t, dir, args...)
		want := strings.Join(args, " ")
		want = strings.Replace(want, dir, bundle.TracedDir(dir), 1)
		if got := strings.Join(d.args, " "); got != want || d.code != 42 {
			t.Errorf("%q: the delegate got %q, exit %d; want %q", args, got, d.code, want)
		}
	}
	// No --bundle: runc's is the working directory.
	d := runWrapper(t, dir, "--root", "/run/r", "create", "id")
	if want := []string{"--root", "/run/r", "create", "--bundle", bundle.TracedDir(dir), "id"}; !reflect.DeepEqual(d.args, want) {
		t.Errorf("the delegate got %q, want %q", d.args, want)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "config.json")); !bytes.Equal(got, config) {
		t.Errorf("the engine's config.json changed:\n%s", got)
	}
	traced, err := os.ReadFile(filepath.Join(bundle.TracedDir(dir), "config.json"))
	if err != nil || !bytes.Contains(traced, []byte(bundle.LauncherPath)) || !bytes.Contains(traced, []byte(filepath.Join(dir, "rootfs"))) {
		t.Errorf("the traced bundle's config (%v):\n%s", err, traced)
	}
}

// Tracing never fails a container: an edit that cannot be made leaves the command as it
// was, with the reason in the runtime's log, in runc's JSON form.
func TestFailOpen(t *testing.T) {
	dir, _ := writeBundle(t, map[string]string{bundle.AnnotationTrace: "true"})
	os.Remove(filepath.Join(dir, "launch"))
	log := filepath.Join(dir, "log.json")
	args := []string{"--log", log, "create", "--bundle", dir, "id"}
	d := runWrapper(t, dir, args...)
	if !reflect.DeepEqual(d.args, args) || d.code != 42 {
		t.Errorf("the delegate got %q, exit %d; want %q", d.args, d.code, args)
	}
	var entry struct{ Level, Msg string }
	if err := json.Unmarshal([]byte(strings.SplitN(d.logs, "\n", 2)[0]), &entry); err != nil || entry.Level != "warning" ||
		!strings.Contains(entry.Msg, "not tracing the container: the launcher") || !strings.Contains(entry.Msg, "--launcher PATH") {
		t.Errorf("log: %q (%v)", d.logs, err)
	}
}

func TestWithBundle(t *testing.T) {
	for in, want := range map[string]string{
		"create --bundle /b id":                      "create --bundle /t id",
		"create -b /b id":                            "create -b /t id",
		"create --bundle=/b id":                      "create --bundle=/t id",
		"--root /r --log /l create --pid-file /p id": "--root /r --log /l create --bundle /t --pid-file /p id",
		"--log=/l run id":                            "--log=/l run --bundle /t id",
	} {
		if got := strings.Join(withBundle(strings.Fields(in), "/t"), " "); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

// launch-runtime runs for every container an engine starts, traced or not, several
// times each: it must start as fast as a Go program can, so it links the bundle editor
// and the OTEL_* configuration reader that checks the annotations' settings (otelconfig
// and the attribute, semconv and header-name packages it takes: +0.1 ms of
// initializers), and nothing of launch wrap's image transports (gRPC, containerd's
// client, go-containerregistry: ~150 package initializers, +25 ms a call on the test VM).
func TestFewDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	allowed := []string{"github.com/opencontainers/runtime-spec/", "github.com/otel-go-launcher/otel-go-launcher/images/bundle", "github.com/otel-go-launcher/otel-go-launcher/images/internal/rawconfig",
		"github.com/otel-go-launcher/otel-go-launcher/internal/version", "github.com/otel-go-launcher/otel-go-launcher/internal/capability",
		"github.com/otel-go-launcher/otel-go-launcher/internal/seccomp", "github.com/otel-go-launcher/otel-go-launcher/cmd/launch-runtime",
		"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig", "go.opentelemetry.io/otel/attribute", "go.opentelemetry.io/otel/semconv/",
		"github.com/cespare/xxhash/v2", "golang.org/x/net/http/httpguts", "golang.org/x/net/idna", "golang.org/x/text/"}
	for _, pkg := range strings.Fields(string(out)) {
		ok := false
		for _, a := range allowed {
			ok = ok || strings.HasPrefix(pkg, a)
		}
		if !ok {
			t.Errorf("launch-runtime depends on %s", pkg)
		}
	}
}
