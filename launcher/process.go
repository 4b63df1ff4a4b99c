package launcher

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// defaultPath is searched when PATH is unset, as execvp does.
const defaultPath = "/bin:/usr/bin"

// lookupProgram finds PROG as a shell would: a name with a slash is used as is, a bare
// name is searched on PATH. The exit code is 127 when nothing is found and 126 when a
// match cannot be executed.
func lookupProgram(name string) (path string, exitCode int, err error) {
	if strings.Contains(name, "/") {
		if err := checkExecutable(name); err != nil {
			if os.IsNotExist(err) {
				return "", exitNotFound, fmt.Errorf("%s: no such file", name)
			}
			return "", exitCannotExec, err
		}
		return name, 0, nil
	}
	dirs := os.Getenv("PATH")
	if dirs == "" {
		dirs = defaultPath
	}
	var denied error
	for _, dir := range filepath.SplitList(dirs) {
		if dir == "" {
			dir = "."
		}
		candidate := dir + "/" + name
		err := checkExecutable(candidate)
		if err == nil {
			return candidate, 0, nil
		}
		if denied == nil && !os.IsNotExist(err) {
			denied = err
		}
	}
	if denied != nil {
		return "", exitCannotExec, denied
	}
	return "", exitNotFound, fmt.Errorf("%s: not found on PATH (%s)", name, dirs)
}

// checkExecutable tells whether path names a regular file with an execute bit.
// Whether the app's user may execute it is for execve to say.
func checkExecutable(path string) error {
	st, err := os.Stat(path)
	switch {
	case err != nil:
		return err
	case st.IsDir():
		return fmt.Errorf("%s: is a directory", path)
	case st.Mode()&0o111 == 0:
		return fmt.Errorf("%s: permission denied: not executable (chmod +x)", path)
	}
	return nil
}

// signalDescendants sends sig to every process below the launcher and reports whether
// there was any. As PID 1 that is every other process of the PID namespace.
func signalDescendants(sig unix.Signal) bool {
	if os.Getpid() == 1 {
		return unix.Kill(-1, sig) == nil
	}
	pids := descendants(os.Getpid())
	for _, pid := range pids {
		unix.Kill(pid, sig)
	}
	return len(pids) > 0
}

// descendants lists the processes below root, from /proc.
func descendants(root int) []int {
	entries, _ := os.ReadDir("/proc")
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, ok := parentOf(pid); ok {
			children[ppid] = append(children[ppid], pid)
		}
	}
	var out []int
	queue := children[root]
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		out = append(out, pid)
		queue = append(queue, children[pid]...)
	}
	return out
}

// parentOf reads a process's parent PID from /proc/PID/stat.
func parentOf(pid int) (int, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// pid (comm) state ppid ...; comm may contain spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	var state string
	var ppid int
	if _, err := fmt.Sscan(string(b[i+1:]), &state, &ppid); err != nil {
		return 0, false
	}
	return ppid, true
}
