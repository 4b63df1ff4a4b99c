package bpf

import (
	"log/slog"
	"runtime"
	"strconv"
	"unsafe"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Release detaches links whose programs can no longer run - their process has exited -
// without waiting for the kernel to finish: closing a uprobe link waits out an RCU
// Tasks Trace grace period (25-60 ms here), and exiting with the link open waits for it
// too, one link after another. Each link is pinned in a bpffs mounted nowhere (fsopen,
// fsmount: no path or namespace is touched), its descriptor closed, then the mount's:
// the pins, the links' last references, go with the mount's inodes, from an RCU
// callback, and the kernel frees the links from a workqueue, maybe after the caller
// has exited. Links that cannot be handed over so (no CAP_SYS_ADMIN for the mount, a
// kernel before 6.5, a seccomp filter) are closed as CloseAll closes them.
func Release(links []link.Link) error {
	if len(links) == 0 {
		return nil
	}
	mnt, err := detachedBPFFS()
	if err != nil {
		slog.Debug("detaching here, waiting for the kernel: no bpffs to hand the links over in", "err", err)
		return CloseAll(links)
	}
	var rest []link.Link
	for i, l := range links {
		if err := pinAt(mnt, strconv.Itoa(i), l); err != nil {
			if len(rest) == 0 {
				slog.Debug("detaching here, waiting for the kernel: a link cannot be pinned", "err", err)
			}
			rest = append(rest, l)
			continue
		}
		l.Close() // the pin holds the link: no wait
	}
	unix.Close(mnt)
	return CloseAll(rest)
}

// detachedBPFFS makes a new bpffs instance, mounted nowhere: only its descriptor reaches
// it. A variable for the tests of the fallback.
var detachedBPFFS = func() (int, error) {
	fs, err := unix.Fsopen("bpf", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, err
	}
	defer unix.Close(fs)
	if err := unix.FsconfigCreate(fs); err != nil {
		return -1, err
	}
	return unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, 0)
}

// pinAt pins l at name in the directory dir (BPF_OBJ_PIN with BPF_F_PATH_FD, Linux 6.5).
func pinAt(dir int, name string, l link.Link) error {
	f, ok := l.(interface{ FD() int })
	if !ok {
		return unix.EINVAL
	}
	path, err := unix.BytePtrFromString(name)
	if err != nil {
		return err
	}
	attr := struct {
		pathname  uint64
		bpfFD     uint32
		fileFlags uint32
		pathFD    int32
		_         [4]byte
	}{pathname: uint64(uintptr(unsafe.Pointer(path))), bpfFD: uint32(f.FD()), fileFlags: bpfFPathFD, pathFD: int32(dir)}
	_, _, errno := unix.Syscall(unix.SYS_BPF, bpfObjPin, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	runtime.KeepAlive(path)
	if errno != 0 {
		return errno
	}
	return nil
}

const (
	bpfObjPin  = 6       // BPF_OBJ_PIN
	bpfFPathFD = 1 << 14 // BPF_F_PATH_FD: the path is relative to path_fd
)
