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

// AttachSocketPrograms attaches sockops to cgroup and msg to sockhash.
func AttachSocketPrograms(cgroup *Cgroup, sockops *ebpf.Program, sockhash *ebpf.Map, msg *ebpf.Program) (*SocketPrograms, error) {
	if err := link.RawAttachProgram(link.RawAttachProgramOptions{Target: sockhash.FD(), Program: msg, Attach: ebpf.AttachSkMsgVerdict}); err != nil {
		return nil, fmt.Errorf("attach sk_msg to the sockhash: %w%s", err, netAdminHint(err))
	}
	// The directory stays open, so its path under /proc names it even where the
	// hierarchy is mounted nowhere any more.
	l, err := link.AttachCgroup(link.CgroupOptions{Path: fmt.Sprintf("/proc/self/fd/%d", cgroup.dir.Fd()), Attach: ebpf.AttachCGroupSockOps, Program: sockops})
	if err != nil {
		link.RawDetachProgram(link.RawDetachProgramOptions{Target: sockhash.FD(), Program: msg, Attach: ebpf.AttachSkMsgVerdict})
		return nil, fmt.Errorf("attach sockops to cgroup %s: %w%s", cgroup.Path, err, netAdminHint(err))
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

// Cgroup is a process's own cgroup v2, open: where socket programs attach, so that
// they run on the connections of its processes and no others.
type Cgroup struct {
	Path string // in the hierarchy, as /proc/PID/cgroup gives it ("/" in a cgroup namespace is its root)
	dir  *os.File
}

// Close closes the cgroup's directory; what is attached to it stays.
func (c *Cgroup) Close() error { return c.dir.Close() }

// ErrRootCgroup says that a process is in the root of the host's cgroup v2 hierarchy,
// where programs would run on every process's connections.
var ErrRootCgroup = errors.New("the app is in the host's root cgroup v2 (/), where socket programs would run on every connection of every process on the host: run it in a cgroup of its own (a container, a systemd service, systemd-run --scope)")

// initialCgroupNS is the inode of the initial cgroup namespace's /proc/PID/ns/cgroup
// (PROC_CGROUP_INIT_INO): outside it, "/" is a container's own cgroup.
const initialCgroupNS = 0xeffffffb

// AppCgroup opens process pid's cgroup v2 directory. The host's root cgroup is
// refused (ErrRootCgroup). Where no cgroup2 hierarchy is mounted - a container on a
// host with hybrid cgroups sees only v1 - it mounts one read-only on a private
// directory (CAP_SYS_ADMIN), opens the process's directory in it and detaches the
// mount at once: the open directory is all that is kept, and the app, held at the
// start gate meanwhile, never sees a mount.
func AppCgroup(pid int) (*Cgroup, error) {
	rel, err := cgroup2Of(pid)
	if err != nil {
		return nil, err
	}
	if rel == "/" {
		var st unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/cgroup", pid), &st); err != nil || st.Ino == initialCgroupNS {
			return nil, ErrRootCgroup
		}
	}
	if dir, ok := mountedCgroup2(rel); ok {
		f, err := os.Open(dir)
		if err != nil {
			return nil, fmt.Errorf("open cgroup %s: %w", rel, err)
		}
		return &Cgroup{Path: rel, dir: f}, nil
	}
	mnt, err := mountPoint()
	if err != nil {
		return nil, fmt.Errorf("cgroup v2 hierarchy not mounted (process %d is in %s), and no directory to mount one on: %w", pid, rel, err)
	}
	defer os.Remove(mnt)
	if err := unix.Mount("cgroup2", mnt, "cgroup2", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return nil, fmt.Errorf("cgroup v2 hierarchy not mounted (process %d is in %s), and mounting one failed: %w: mount -t cgroup2 none /sys/fs/cgroup", pid, rel, err)
	}
	// In a cgroup namespace the mount's root is the namespace's, as is the path the
	// process's cgroup file gives; otherwise both are the hierarchy's.
	f, err := os.Open(filepath.Join(mnt, rel))
	unix.Unmount(mnt, unix.MNT_DETACH)
	if err != nil {
		return nil, fmt.Errorf("open cgroup %s in the cgroup2 mounted for it: %w", rel, err)
	}
	return &Cgroup{Path: rel, dir: f}, nil
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

// cgroup2Of is process pid's cgroup in the v2 hierarchy, as /proc/PID/cgroup gives it.
func cgroup2Of(pid int) (string, error) {
	cgroups, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(cgroups), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p, nil
		}
	}
	return "", errors.New("the process is in no cgroup v2 (cgroup v1 only): boot with systemd.unified_cgroup_hierarchy=1, or mount cgroup2")
}

// Cgroup2Path is process pid's cgroup in the v2 hierarchy, as /proc/PID/cgroup
// gives it, for messages.
func Cgroup2Path(pid int) (string, error) { return cgroup2Of(pid) }

// mountedCgroup2 is the directory of cgroup rel in a cgroup2 hierarchy mounted here.
func mountedCgroup2(rel string) (string, bool) {
	mounts, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false
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
			return filepath.Join(mountpoint, sub), true
		}
	}
	return "", false
}

// unescapeMountinfo undoes mountinfo's octal escapes of space, tab, newline, backslash.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}
