package bpf

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// SocketPrograms are a sockops program on a cgroup, feeding a sockhash, and an sk_msg
// program on that sockhash: together they see (and may amend) what the cgroup's
// processes write to the sockets the sockops program chose.
type SocketPrograms struct {
	sockops  link.Link
	msg      *ebpf.Program
	sockhash *ebpf.Map
}

// AttachSocketPrograms attaches sockops to the cgroup v2 directory cgroup and msg to
// sockhash.
func AttachSocketPrograms(cgroup string, sockops *ebpf.Program, sockhash *ebpf.Map, msg *ebpf.Program) (*SocketPrograms, error) {
	if err := link.RawAttachProgram(link.RawAttachProgramOptions{Target: sockhash.FD(), Program: msg, Attach: ebpf.AttachSkMsgVerdict}); err != nil {
		return nil, fmt.Errorf("attach sk_msg to the sockhash: %w%s", err, netAdminHint(err))
	}
	l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroup, Attach: ebpf.AttachCGroupSockOps, Program: sockops})
	if err != nil {
		link.RawDetachProgram(link.RawDetachProgramOptions{Target: sockhash.FD(), Program: msg, Attach: ebpf.AttachSkMsgVerdict})
		return nil, fmt.Errorf("attach sockops to cgroup %s: %w%s", cgroup, err, netAdminHint(err))
	}
	return &SocketPrograms{sockops: l, msg: msg, sockhash: sockhash}, nil
}

// Close detaches both programs: connections made from now on are left alone, and
// those in the sockhash are no longer amended.
func (s *SocketPrograms) Close() error {
	err := s.sockops.Close()
	if derr := link.RawDetachProgram(link.RawDetachProgramOptions{Target: s.sockhash.FD(), Program: s.msg, Attach: ebpf.AttachSkMsgVerdict}); err == nil {
		err = derr
	}
	return err
}

func netAdminHint(err error) string {
	if errors.Is(err, os.ErrPermission) {
		return ": add CAP_NET_ADMIN to the launcher"
	}
	return ""
}

// Cgroup2Dir is the directory of process pid's cgroup v2, to attach programs to, and a
// release to call once they are attached. Where no cgroup2 hierarchy is mounted - a
// container on a host with hybrid cgroups sees only v1 - it mounts one on a private
// directory for the attach (CAP_SYS_ADMIN) and release unmounts it: an attached link
// holds the cgroup, not the mount. The app, held at the start gate meanwhile, never
// sees it.
func Cgroup2Dir(pid int) (dir string, release func(), err error) {
	dir, err = Cgroup2Path(pid)
	var unmounted *notMountedError
	if !errors.As(err, &unmounted) {
		return dir, func() {}, err
	}
	mnt, merr := mountPoint()
	if merr != nil {
		return "", nil, fmt.Errorf("%w; mounting one failed: %v", err, merr)
	}
	if merr := unix.Mount("cgroup2", mnt, "cgroup2", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); merr != nil {
		os.Remove(mnt)
		return "", nil, fmt.Errorf("%w; mounting one failed: %v", err, merr)
	}
	release = func() {
		unix.Unmount(mnt, unix.MNT_DETACH)
		os.Remove(mnt)
	}
	// In a cgroup namespace the mount's root is the namespace's, as is the path the
	// process's cgroup file gives; otherwise both are the hierarchy's.
	dir = filepath.Join(mnt, unmounted.rel)
	if _, serr := os.Stat(dir); serr != nil {
		release()
		return "", nil, fmt.Errorf("%w; in the cgroup2 mounted for it: %v", err, serr)
	}
	return dir, release, nil
}

// mountPoint makes a private directory to mount cgroup2 on: in the temporary
// directory, or, in an image that has none (FROM scratch, wrapped or run under
// launch-runtime), on /dev, which a container runtime always mounts writable for root.
func mountPoint() (string, error) {
	var errs []error
	for _, dir := range []string{os.TempDir(), "/dev/shm", "/dev"} {
		mnt, err := os.MkdirTemp(dir, "otel-go-launcher-cgroup2-")
		if err == nil {
			return mnt, nil
		}
		errs = append(errs, err)
	}
	return "", errors.Join(errs...)
}

type notMountedError struct {
	pid int
	rel string
}

func (e *notMountedError) Error() string {
	return fmt.Sprintf("cgroup v2 hierarchy not mounted (process %d is in %s): mount -t cgroup2 none /sys/fs/cgroup", e.pid, e.rel)
}

// Cgroup2Path is the directory of process pid's cgroup in the cgroup v2 hierarchy as
// mounted here (in a container: usually the container's own cgroup, at /sys/fs/cgroup).
func Cgroup2Path(pid int) (string, error) {
	cgroups, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", err
	}
	var rel string
	found := false
	for _, line := range strings.Split(string(cgroups), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			rel, found = p, true
			break
		}
	}
	if !found {
		return "", errors.New("the process is in no cgroup v2 (cgroup v1 only): boot with systemd.unified_cgroup_hierarchy=1, or mount cgroup2")
	}
	mounts, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer mounts.Close()
	sc := bufio.NewScanner(mounts)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source super
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+1 >= len(fields) || fields[sep+1] != "cgroup2" {
			continue
		}
		root, mountpoint := unescapeMountinfo(fields[3]), unescapeMountinfo(fields[4])
		if sub, ok := strings.CutPrefix(rel, root); ok && (root == "/" || sub == "" || sub[0] == '/') {
			return filepath.Join(mountpoint, sub), nil
		}
	}
	return "", &notMountedError{pid, rel}
}

// unescapeMountinfo undoes mountinfo's octal escapes of space, tab, newline, backslash.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}
