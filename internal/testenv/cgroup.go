package testenv

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// OwnCgroup moves this process into a cgroup v2 of its own when it is in the host's
// root one, as a container or a systemd service is: the launcher attaches its socket
// programs at the app's own cgroup and refuses the host's root, where they would run
// on every process's connections. What the process starts from then on starts there.
// The returned function moves the process back and removes the cgroup. Call it from
// TestMain.
func OwnCgroup() (restore func(), err error) {
	rel, mnt, err := Cgroup2()
	if err != nil || rel != "/" {
		return func() {}, err
	}
	dir := filepath.Join(mnt, fmt.Sprintf("otel-go-launcher-test-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return func() {}, fmt.Errorf("a cgroup of its own for the test process: %w", err)
	}
	self := []byte(strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), self, 0); err != nil {
		os.Remove(dir)
		return func() {}, fmt.Errorf("move the test process into %s: %w", dir, err)
	}
	return func() {
		os.WriteFile(filepath.Join(mnt, "cgroup.procs"), self, 0)
		os.Remove(dir) // fails while a process started there still runs: left for it
	}, nil
}

// Cgroup2Mount is where the cgroup v2 hierarchy's root is mounted here.
func Cgroup2Mount(t testing.TB) string {
	t.Helper()
	_, root, err := Cgroup2()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// Cgroup2 is this process's cgroup v2 and where the hierarchy's root is mounted.
func Cgroup2() (rel, mountpoint string, err error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			rel = p
		}
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	for sc := bufio.NewScanner(f); sc.Scan(); {
		fields := strings.Fields(sc.Text())
		for i, x := range fields {
			if x == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && len(fields) > 4 && fields[3] == "/" {
				return rel, fields[4], nil
			}
		}
	}
	return rel, "", fmt.Errorf("no cgroup2 hierarchy mounted (mount -t cgroup2 none /sys/fs/cgroup)")
}
