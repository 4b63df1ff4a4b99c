package bpf

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// What the probes need from the host, checked for `launch doctor`: each check does
// what tracing will do (load, attach), on a scale of one.

// MinKernel is the oldest kernel the probes load on (bpf_loop, 5.17).
var MinKernel = [2]int{5, 17}

// KernelRelease is uname -r and its major and minor numbers.
func KernelRelease() (release string, major, minor int) {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "unknown", 0, 0
	}
	release = unix.ByteSliceToString(u.Release[:])
	parts := strings.SplitN(release, ".", 3)
	if len(parts) >= 2 {
		major, _ = strconv.Atoi(parts[0])
		minor, _ = strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	}
	return release, major, minor
}

// emptyProgram loads the smallest program of type t.
func emptyProgram(t ebpf.ProgramType, attach ebpf.AttachType) (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: t, AttachType: attach, License: "Dual BSD/GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
}

// CheckBPF loads a program: the bpf system call is allowed and permitted.
func CheckBPF() error {
	p, err := emptyProgram(ebpf.SocketFilter, ebpf.AttachNone)
	if err != nil {
		return fmt.Errorf("load a BPF program: %w%s", err, permissionHint(err, "CAP_BPF (or CAP_SYS_ADMIN)"))
	}
	return p.Close()
}

// CheckUprobes attaches a uprobe to this process's own executable, at its entry point,
// and detaches it.
func CheckUprobes() error {
	links, err := attachSelf()
	if err != nil {
		return err
	}
	return CloseAll(links)
}

// CheckRelease checks that uprobe links can be handed to the kernel to detach in the
// background (Release), as they are at the app's exit: where they cannot, the launcher
// waits for the kernel to detach them before it exits, 40-100 ms here.
func CheckRelease() error {
	links, err := attachSelf()
	if err != nil {
		return err
	}
	mnt, err := detachedBPFFS()
	if err != nil {
		CloseAll(links)
		return fmt.Errorf("a bpffs mounted nowhere (fsopen, fsmount): %w%s", err, permissionHint(err, "CAP_SYS_ADMIN"))
	}
	defer unix.Close(mnt)
	for i, l := range links {
		if err := pinAt(mnt, strconv.Itoa(i), l); err != nil {
			CloseAll(links[i:])
			return fmt.Errorf("pin a link in it (BPF_F_PATH_FD, Linux 6.5): %w", err)
		}
		l.Close()
	}
	return nil
}

// attachSelf attaches an empty uprobe program to this process's own executable, at its
// entry point, as the probes' programs are attached.
func attachSelf() ([]link.Link, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	f, err := elf.Open(exe)
	if err != nil {
		return nil, err
	}
	var entry uint64
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && f.Entry >= p.Vaddr && f.Entry < p.Vaddr+p.Filesz {
			entry = f.Entry - p.Vaddr + p.Off
		}
	}
	f.Close()
	attach := ebpf.AttachNone
	if haveUprobeMulti() {
		attach = ebpf.AttachTraceUprobeMulti // as the probes' programs are loaded
	}
	prog, err := emptyProgram(ebpf.Kprobe, attach)
	if err != nil {
		return nil, fmt.Errorf("load a uprobe program: %w%s", err, permissionHint(err, "CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)"))
	}
	defer prog.Close() // the links hold the program
	return AttachUprobes(exe, os.Getpid(), Uprobe{Symbol: "entry point", Program: prog, Offsets: []uint64{entry}})
}

// CheckRingBuffer creates a ring buffer map.
func CheckRingBuffer() error {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: 4096})
	if err != nil {
		return fmt.Errorf("create a ring buffer: %w", err)
	}
	return m.Close()
}

// KernelBTF is where the kernel describes its types, which the socket programs read
// through (CO-RE).
const KernelBTF = "/sys/kernel/btf/vmlinux"

// CheckKernelBTF checks the kernel's type information is there.
func CheckKernelBTF() error {
	if _, err := os.Stat(KernelBTF); err != nil {
		return fmt.Errorf("%s: %w: use a kernel built with CONFIG_DEBUG_INFO_BTF=y", KernelBTF, err)
	}
	return nil
}

// Lockdown reports the kernel's lockdown mode: from securityfs when it is mounted,
// else from whether the kernel refuses bpf_probe_write_user, the helper integrity
// lockdown takes away. An error says the mode could not be told.
func Lockdown() (string, error) {
	if b, err := os.ReadFile("/sys/kernel/security/lockdown"); err == nil {
		s := string(b) // "none [integrity] confidentiality"
		if i, j := strings.IndexByte(s, '['), strings.IndexByte(s, ']'); i >= 0 && j > i {
			return s[i+1 : j], nil
		}
	}
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.Kprobe, License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R1, 0), asm.Mov.Imm(asm.R2, 0), asm.Mov.Imm(asm.R3, 0),
			asm.FnProbeWriteUser.Call(), asm.Mov.Imm(asm.R0, 0), asm.Return(),
		},
	})
	if err == nil {
		p.Close()
		return "none", nil
	}
	// A tracing program may always use the helper, unless lockdown took it away.
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		log := strings.Join(ve.Log, "\n")
		if strings.Contains(log, "cannot use helper") || strings.Contains(log, "unknown func") {
			return "integrity or confidentiality (bpf_probe_write_user refused)", nil
		}
	}
	return "", fmt.Errorf("neither /sys/kernel/security/lockdown nor a test program tells: %w", err)
}

func permissionHint(err error, caps string) string {
	if errors.Is(err, os.ErrPermission) {
		return ": add " + caps + " to the launcher"
	}
	return ""
}
