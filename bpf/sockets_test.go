package bpf

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// A process's own cgroup v2 is where socket programs go; the host's root cgroup is
// refused (programs there ran on every connection of every process on the node).
func TestAppCgroup(t *testing.T) {
	testenv.RequireRoot(t)
	restore, err := testenv.OwnCgroup()
	if err != nil {
		t.Fatal(err)
	}
	defer restore()
	own, err := Cgroup2Path(os.Getpid())
	if err != nil || own == "/" {
		t.Fatalf("the test's own cgroup: %q %v", own, err)
	}
	c, err := AppCgroup(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Path != own {
		t.Errorf("path %q, want %q", c.Path, own)
	}

	// A process in the host's root cgroup.
	sleeper := exec.Command("sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer sleeper.Process.Kill()
	mnt := testenv.Cgroup2Mount(t)
	if err := os.WriteFile(filepath.Join(mnt, "cgroup.procs"), []byte(strconv.Itoa(sleeper.Process.Pid)), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := AppCgroup(sleeper.Process.Pid); !errors.Is(err, ErrRootCgroup) {
		t.Errorf("a process in the root cgroup: %v, want ErrRootCgroup", err)
	}
}

// Where no cgroup2 hierarchy is mounted (a container on a hybrid host), one is mounted
// read-only for a moment and detached at once: the process's directory stays open,
// no mount is left.
func TestAppCgroupUnmounted(t *testing.T) {
	testenv.RequireRoot(t)
	unshare := testenv.RequireCommand(t, "unshare")
	restore, err := testenv.OwnCgroup()
	if err != nil {
		t.Fatal(err)
	}
	defer restore()
	own, _ := Cgroup2Path(os.Getpid())
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(testenv.Cgroup2Mount(t), own), &st); err != nil {
		t.Fatal(err)
	}
	// The child hides every cgroup2 mount in a mount namespace of its own.
	script := `for m in $(awk '$9 == "cgroup2" {print $5}' /proc/self/mountinfo); do umount -l "$m"; done; exec "$@"`
	cmd := exec.Command(unshare, "-m", "--propagation", "private", "sh", "-c", script, "sh", os.Args[0], "-test.run=^TestAppCgroupUnmountedChild$", "-test.v")
	cmd.Env = append(os.Environ(), fmt.Sprintf("CGROUP_TEST_INODE=%d", st.Ino))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestAppCgroupUnmountedChild") {
		t.Errorf("%v\n%s", err, out)
	}
}

func TestAppCgroupUnmountedChild(t *testing.T) {
	want := os.Getenv("CGROUP_TEST_INODE")
	if want == "" {
		t.Skip("run by TestAppCgroupUnmounted")
	}
	mounts := func() string {
		b, _ := os.ReadFile("/proc/self/mountinfo")
		return string(b)
	}
	if strings.Contains(mounts(), " - cgroup2 ") {
		t.Fatal("a cgroup2 mount is still visible")
	}
	c, err := AppCgroup(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(c.dir.Fd()), &st); err != nil || strconv.FormatUint(st.Ino, 10) != want {
		t.Errorf("opened inode %d (%v), want the process's cgroup, %s", st.Ino, err, want)
	}
	if strings.Contains(mounts(), " - cgroup2 ") {
		t.Errorf("the cgroup2 mounted for the attach was left:\n%s", mounts())
	}
	// Read-only: nothing can be created through what stays open.
	if err := unix.Mkdirat(int(c.dir.Fd()), "x", 0o755); !errors.Is(err, unix.EROFS) {
		t.Errorf("mkdir in the opened cgroup: %v, want EROFS", err)
	}
}
