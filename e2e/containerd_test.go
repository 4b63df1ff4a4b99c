package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// startContainerd runs a private containerd, as on a Kubernetes node but with its own
// root, state and socket in a temporary directory (removed, with the daemon stopped, at
// the test's end). ctr runs ctr against it, failing the test with the daemon's log.
func startContainerd(t *testing.T) (sock string, ctr func(args ...string) string, dir string) {
	t.Helper()
	testenv.RequireCommand(t, "containerd")
	testenv.RequireCommand(t, "ctr")
	dir, err := os.MkdirTemp("", "e2e-containerd-")
	if err != nil {
		t.Fatal(err)
	}
	sock = filepath.Join(dir, "containerd.sock")
	config := fmt.Sprintf("version = 2\nroot = %q\nstate = %q\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = %q\n[ttrpc]\n  address = %q\n",
		filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc")
	os.WriteFile(filepath.Join(dir, "config.toml"), []byte(config), 0o644)
	daemonLog := &testenv.SyncBuffer{}
	daemon := exec.Command("containerd", "--config", filepath.Join(dir, "config.toml"))
	daemon.Stdout, daemon.Stderr = daemonLog, daemonLog
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		daemon.Process.Signal(syscall.SIGTERM)
		daemon.Wait()
		exec.Command("umount", "-R", filepath.Join(dir, "state")).Run()
		os.RemoveAll(dir)
	})
	ctr = func(args ...string) string {
		t.Helper()
		out, err := exec.Command("ctr", append([]string{"-a", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ctr %s: %v\n%s\ncontainerd:\n%s", strings.Join(args, " "), err, out, daemonLog.String())
		}
		return string(out)
	}
	for i := 0; ; i++ {
		if exec.Command("ctr", "-a", sock, "version").Run() == nil {
			break
		}
		if i == 100 {
			t.Fatalf("containerd did not start:\n%s", daemonLog.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return sock, ctr, dir
}

// removeContainerdTask kills and removes a container ctr started, if it is there.
func removeContainerdTask(sock, container string) {
	exec.Command("ctr", "-a", sock, "task", "kill", "-s", "KILL", container).Run()
	time.Sleep(500 * time.Millisecond)
	exec.Command("ctr", "-a", sock, "task", "rm", "-f", container).Run()
	exec.Command("ctr", "-a", sock, "container", "rm", container).Run()
}

// importPlainImage puts the plain image (USER 65534, ENTRYPOINT /app) into containerd.
func importPlainImage(t *testing.T, env []string, ctr func(args ...string) string, dir string) string {
	t.Helper()
	src := plainImage(t, env, "amd64")
	saved := filepath.Join(dir, "plain.tar")
	podman(t, env, "save", "--format", "docker-archive", "-o", saved, src)
	ctr("images", "import", saved)
	return src
}
