package gate

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"unsafe"
)

// The system interfaces the gate needs, from the syscall package and the kernel's UAPI
// (this package imports nothing outside the standard library; see the package doc).
const (
	prCapbsetRead        = 23
	prCapbsetDrop        = 24
	prSetNoNewPrivs      = 38
	prSetKeepCaps        = 8
	prCapAmbient         = 47
	prCapAmbientIsSet    = 1
	prCapAmbientRaise    = 2
	prCapAmbientClearAll = 4
	seccompSetModeFilter = 1
	prSetSeccomp         = 22
	seccompModeFilter    = 2
	sysCloseRange        = 436 // the same number on amd64 and arm64
	closeRangeCloexec    = 1 << 2
	capVersion3          = 0x20080522
	sigDFL               = 0
	sigIGN               = 1
	sigMax               = 64
)

func uintptrOf[T any](p *T) uintptr { return uintptr(unsafe.Pointer(p)) }

func prctl(option int, arg2, arg3 uintptr) error {
	if _, _, errno := syscall.RawSyscall6(syscall.SYS_PRCTL, uintptr(option), arg2, arg3, 0, 0, 0); errno != 0 {
		return errno
	}
	return nil
}

// capSets are the calling thread's capability sets as bit masks.
type capSets struct{ effective, permitted, inheritable uint64 }

type capHeader struct {
	version uint32
	pid     int32
}

type capData struct{ effective, permitted, inheritable uint32 }

func getCaps() (capSets, error) {
	hdr := capHeader{version: capVersion3}
	var data [2]capData
	if _, _, errno := syscall.RawSyscall(syscall.SYS_CAPGET, uintptrOf(&hdr), uintptrOf(&data[0]), 0); errno != 0 {
		return capSets{}, os.NewSyscallError("capget", errno)
	}
	join := func(lo, hi uint32) uint64 { return uint64(lo) | uint64(hi)<<32 }
	return capSets{
		effective:   join(data[0].effective, data[1].effective),
		permitted:   join(data[0].permitted, data[1].permitted),
		inheritable: join(data[0].inheritable, data[1].inheritable),
	}, nil
}

// EffectiveCaps is the calling thread's effective capability set (bit N: capability N).
func EffectiveCaps() (uint64, error) {
	s, err := getCaps()
	return s.effective, err
}

func setCaps(s capSets) error {
	hdr := capHeader{version: capVersion3}
	data := [2]capData{
		{uint32(s.effective), uint32(s.permitted), uint32(s.inheritable)},
		{uint32(s.effective >> 32), uint32(s.permitted >> 32), uint32(s.inheritable >> 32)},
	}
	if _, _, errno := syscall.RawSyscall(syscall.SYS_CAPSET, uintptrOf(&hdr), uintptrOf(&data[0]), 0); errno != 0 {
		return os.NewSyscallError("capset", errno)
	}
	return nil
}

// currentCaps are the calling thread's five capability sets.
func currentCaps() (CapSets, error) {
	s, err := getCaps()
	if err != nil {
		return CapSets{}, err
	}
	out := CapSets{Effective: s.effective, Permitted: s.permitted, Inheritable: s.inheritable}
	for c := 0; c < 64; c++ {
		in, _, errno := syscall.RawSyscall6(syscall.SYS_PRCTL, prCapbsetRead, uintptr(c), 0, 0, 0, 0)
		if errno != 0 { // EINVAL: past the last capability this kernel has
			break
		}
		if in != 0 {
			out.Bounding |= 1 << c
		}
		if amb, _, errno := syscall.RawSyscall6(syscall.SYS_PRCTL, prCapAmbient, prCapAmbientIsSet, uintptr(c), 0, 0, 0); errno == 0 && amb != 0 {
			out.Ambient |= 1 << c
		}
	}
	return out, nil
}

// CurrentCaps are the calling thread's five capability sets: what an app started as
// this thread would have, before the launcher takes its own away.
func CurrentCaps() (CapSets, error) { return currentCaps() }

// limitBoundingSet removes from the calling thread's bounding set every capability not
// in keep, so that no later execve (of a root or file-capability program) can grant
// it. It needs CAP_SETPCAP (EPERM without it); capabilities this kernel does not have
// are skipped.
func limitBoundingSet(keep uint64) error {
	for c := 0; c < 64; c++ {
		in, _, errno := syscall.RawSyscall6(syscall.SYS_PRCTL, prCapbsetRead, uintptr(c), 0, 0, 0, 0)
		if errno != 0 {
			break
		}
		if in == 0 || keep&(1<<c) != 0 {
			continue
		}
		if err := prctl(prCapbsetDrop, uintptr(c), 0); err != nil {
			return fmt.Errorf("remove capability %d from the bounding set: %w", c, err)
		}
	}
	return nil
}

// setCapSets gives the calling thread the effective, permitted and inheritable sets
// of want, and then its ambient set as runc does: in ascending order up to the first
// capability the kernel refuses (one not both permitted and inheritable), the rest
// left out without an error. The permitted set can only shrink.
func setCapSets(want CapSets) error {
	if err := setCaps(capSets{effective: want.Effective, permitted: want.Permitted, inheritable: want.Inheritable}); err != nil {
		return fmt.Errorf("set the app's capabilities (effective %#x, permitted %#x, inheritable %#x): %w", want.Effective, want.Permitted, want.Inheritable, err)
	}
	if err := prctl(prCapAmbient, prCapAmbientClearAll, 0); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("clear the ambient capabilities: %w", err)
	}
	for c := 0; c < 64; c++ {
		if want.Ambient&(1<<c) == 0 {
			continue
		}
		if _, _, errno := syscall.RawSyscall6(syscall.SYS_PRCTL, prCapAmbient, prCapAmbientRaise, uintptr(c), 0, 0, 0); errno != 0 {
			break
		}
	}
	return nil
}

// sockFprog is struct sock_fprog.
type sockFprog struct {
	len    uint16
	_      [6]byte
	filter *Instruction
}

// InstallFilter adds f to the calling thread's seccomp filters (EACCES without
// CAP_SYS_ADMIN or no_new_privs): what the gate process does before the app starts.
func InstallFilter(f *Filter) error { return installFilter(f) }

func installFilter(f *Filter) error {
	if len(f.Program) == 0 {
		return errors.New("an empty program")
	}
	prog := sockFprog{len: uint16(len(f.Program)), filter: &f.Program[0]}
	// prctl where no flag is needed: profiles allow it more often than seccomp(2).
	var errno syscall.Errno
	if f.Flags == 0 {
		_, _, errno = syscall.RawSyscall6(syscall.SYS_PRCTL, prSetSeccomp, seccompModeFilter, uintptr(unsafe.Pointer(&prog)), 0, 0, 0)
	} else {
		_, _, errno = syscall.RawSyscall(sysSeccomp, seccompSetModeFilter, uintptr(f.Flags), uintptr(unsafe.Pointer(&prog)))
	}
	runtime.KeepAlive(f)
	if errno != 0 {
		return errno
	}
	return nil
}

// kernelSigaction is the kernel's struct sigaction on amd64 and arm64
// (handler, flags, restorer, mask). Only the handler is read or written here.
type kernelSigaction struct {
	handler  uintptr
	flags    uint64
	restorer uintptr
	mask     uint64
}

func sigaction(sig int, act, old *kernelSigaction) error {
	_, _, errno := syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(sig),
		uintptr(unsafe.Pointer(act)), uintptr(unsafe.Pointer(old)), 8, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// IgnoredSignals returns the signals ignored (SIG_IGN) right now, bit N-1 for signal N.
//
// Called first thing, it tells which signals the launcher's parent ignored: the Go
// runtime keeps an inherited SIG_IGN for SIGHUP and SIGINT and leaves the job-control
// signals alone, so those are exact. For every other signal the runtime has already
// installed its own handler before any of our code runs, so an inherited SIG_IGN cannot
// be seen and the app gets SIG_DFL, as it would from any Go parent.
func IgnoredSignals() uint64 {
	var set uint64
	for s := 1; s <= sigMax; s++ {
		if s == int(syscall.SIGKILL) || s == int(syscall.SIGSTOP) {
			continue
		}
		var old kernelSigaction
		if sigaction(s, nil, &old) == nil && old.handler == sigIGN {
			set |= 1 << (s - 1)
		}
	}
	return set
}

// restoreDispositions gives the calling process the dispositions the launcher
// inherited: SIG_IGN for the signals in ignored, SIG_DFL for the others. Handlers the
// Go runtime installed need no work: execve resets caught signals to SIG_DFL.
func restoreDispositions(ignored uint64) error {
	for s := 1; s <= sigMax; s++ {
		if s == int(syscall.SIGKILL) || s == int(syscall.SIGSTOP) {
			continue
		}
		var cur kernelSigaction
		if err := sigaction(s, nil, &cur); err != nil {
			continue // numbers the kernel does not have
		}
		want := uintptr(sigDFL)
		if ignored&(1<<(s-1)) != 0 {
			want = sigIGN
		}
		if (cur.handler == sigIGN) != (want == sigIGN) {
			if err := sigaction(s, &kernelSigaction{handler: want}, nil); err != nil {
				return os.NewSyscallError("rt_sigaction", err)
			}
		}
	}
	return nil
}

// takeForeground makes the process's group the terminal's foreground. SIGTTOU is
// blocked meanwhile: from a background group the ioctl would otherwise stop us.
// ENOTTY/ENXIO/EPERM (no usable controlling terminal) are ignored, as tini does.
func takeForeground() {
	var ttou, old uint64 = 1 << (syscall.SIGTTOU - 1), 0
	syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, 0 /* SIG_BLOCK */, uintptrOf(&ttou), uintptrOf(&old), 8, 0, 0)
	pgrp := int32(syscall.Getpgrp())
	syscall.Syscall(syscall.SYS_IOCTL, 0, syscall.TIOCSPGRP, uintptrOf(&pgrp))
	syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, 2 /* SIG_SETMASK */, uintptrOf(&old), 0, 8, 0, 0)
}
