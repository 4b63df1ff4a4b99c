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
	return "", fmt.Errorf("cgroup v2 hierarchy not mounted (process %d is in %s): mount -t cgroup2 none /sys/fs/cgroup", pid, rel)
}

// unescapeMountinfo undoes mountinfo's octal escapes of space, tab, newline, backslash.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}
