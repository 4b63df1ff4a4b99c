package seccomp

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
	"github.com/otel-go-launcher/otel-go-launcher/launcher/gate"
)

func errnoP(n uint) *uint { return &n }

// call is a system call made under a filter: an architecture, a call name and its
// arguments.
type call struct {
	arch arch
	name string
	args [6]uint64
}

// run interprets prog on the seccomp_data of c, as the kernel would: the opcodes the
// assembler emits, nothing else.
func run(t *testing.T, prog []Instruction, c call) uint32 {
	t.Helper()
	var data [64]byte
	binary.LittleEndian.PutUint32(data[0:], c.arch.number[c.name])
	binary.LittleEndian.PutUint32(data[4:], c.arch.audit)
	for i, a := range c.args {
		binary.LittleEndian.PutUint64(data[16+8*i:], a)
	}
	var acc uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case ldAbsW:
			acc = binary.LittleEndian.Uint32(data[in.K:])
		case andK:
			acc &= in.K
		case ja:
			pc += int(in.K)
		case jeqK, jgtK, jgeK:
			ok := acc == in.K
			if in.Code == jgtK {
				ok = acc > in.K
			} else if in.Code == jgeK {
				ok = acc >= in.K
			}
			if ok {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case retK:
			return in.K
		default:
			t.Fatalf("opcode %#x at %d", in.Code, pc)
		}
	}
	t.Fatal("ran off the end of the program")
	return 0
}

var podmanLike = specs.LinuxSeccomp{
	DefaultAction: specs.ActErrno, DefaultErrnoRet: errnoP(38),
	Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
	Syscalls: []specs.LinuxSyscall{
		{Names: []string{"read", "mount", "umount2", "write"}, Action: specs.ActAllow},
		{Names: []string{"bpf", "perf_event_open", "setns"}, Action: specs.ActErrno, ErrnoRet: errnoP(1)},
	},
}

func eq(i uint, v uint64) specs.LinuxSeccompArg {
	return specs.LinuxSeccompArg{Index: i, Value: v, Op: specs.OpEqualTo}
}

func withRules(base specs.LinuxSeccomp, rules ...specs.LinuxSyscall) *specs.LinuxSeccomp {
	p := base
	p.Syscalls = append([]specs.LinuxSyscall{{Names: []string{"read", "mount", "umount2"}, Action: specs.ActAllow}}, rules...)
	return &p
}

// The verdicts runc and libseccomp give the same profiles (measured with podman 4.3,
// runc 1.1.5, libseccomp 2.5.4 on this project's machines: perf_event_open(0, 0, ...)
// under each profile): a rule without conditions decides alone and the first one wins;
// conditional rules of one action match when any does; a rule with the default action
// is skipped.
func TestVerdicts(t *testing.T) {
	allow, def := uint32(retAllow), uint32(retErrno|38)
	errno := func(n uint32) uint32 { return retErrno | n }
	perf := func(args ...uint64) call {
		c := call{arch: archX8664, name: "perf_event_open"}
		copy(c.args[:], args)
		return c
	}
	base := specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: errnoP(38), Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}}
	cases := []struct {
		name  string
		p     *specs.LinuxSeccomp
		calls map[*call]uint32
	}{
		{"podman's default", &podmanLike, map[*call]uint32{
			{arch: archX8664, name: "bpf"}: errno(1), {arch: archX8664, name: "perf_event_open"}: errno(1),
			{arch: archX8664, name: "mount"}: allow, {arch: archX8664, name: "umount2"}: allow,
			{arch: archI386, name: "perf_event_open"}: errno(1), {arch: archI386, name: "mount"}: allow,
			{arch: archX32, name: "bpf"}: errno(1),
		}},
		{"no rule: the default", withRules(base), map[*call]uint32{{arch: archX8664, name: "bpf"}: def, {arch: archI386, name: "bpf"}: def}},
		{"allow then errno", withRules(base, specs.LinuxSyscall{Names: []string{"perf_event_open"}, Action: specs.ActAllow}, specs.LinuxSyscall{Names: []string{"perf_event_open"}, Action: specs.ActErrno, ErrnoRet: errnoP(13)}),
			map[*call]uint32{ptr(perf()): allow}},
		{"errno then allow", withRules(base, specs.LinuxSyscall{Names: []string{"perf_event_open"}, Action: specs.ActErrno, ErrnoRet: errnoP(13)}, specs.LinuxSyscall{Names: []string{"perf_event_open"}, Action: specs.ActAllow}),
			map[*call]uint32{ptr(perf()): errno(13)}},
		{"the default's action skipped", withRules(base, specs.LinuxSyscall{Names: []string{"perf_event_open"}, Action: specs.ActErrno, ErrnoRet: errnoP(38)}, specs.LinuxSyscall{Names: []string{"perf_event_open"}, Action: specs.ActAllow}),
			map[*call]uint32{ptr(perf()): allow}},
		{"a wide rule over a conditional one", withRules(base, specs.LinuxSyscall{Names: []string{"perf_event_open"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{eq(0, 0)}}, specs.LinuxSyscall{Names: []string{"perf_event_open"}, Action: specs.ActErrno, ErrnoRet: errnoP(13)}),
			map[*call]uint32{ptr(perf()): errno(13), ptr(perf(1)): errno(13)}},
		{"argument-restricted allow", withRules(base, specs.LinuxSyscall{Names: []string{"perf_event_open"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{eq(2, 7), eq(3, 1<<40|5)}}),
			map[*call]uint32{ptr(perf()): def, ptr(perf(0, 0, 7, 1<<40|5)): allow, ptr(perf(0, 0, 7, 5)): def, ptr(perf(0, 0, 8, 1<<40|5)): def}},
		{"one argument twice: either", withRules(base, specs.LinuxSyscall{Names: []string{"perf_event_open"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{eq(1, 3), eq(1, 4)}}),
			map[*call]uint32{ptr(perf(0, 3)): allow, ptr(perf(0, 4)): allow, ptr(perf(0, 5)): def}},
		{"operators", withRules(base,
			specs.LinuxSyscall{Names: []string{"perf_event_open"}, Action: specs.ActErrno, ErrnoRet: errnoP(20), Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: 1<<32 + 10, Op: specs.OpGreaterThan}, {Index: 1, Value: 1<<32 + 10, Op: specs.OpLessEqual},
				{Index: 2, Value: 0xff00, ValueTwo: 0x1200, Op: specs.OpMaskedEqual}, {Index: 3, Value: 9, Op: specs.OpNotEqual},
				{Index: 4, Value: 1 << 33, Op: specs.OpGreaterEqual}, {Index: 5, Value: 6, Op: specs.OpLessThan}}}),
			map[*call]uint32{
				ptr(perf(1<<32+11, 1<<32+10, 0x12ab, 0, 1<<33, 5)):      errno(20),
				ptr(perf(2<<32, 0, 0x1200, 10, 1<<34, 0)):               errno(20),
				ptr(perf(1<<32+10, 1<<32+10, 0x12ab, 0, 1<<33, 5)):      def, // not >
				ptr(perf(1<<32+11, 1<<32+11, 0x12ab, 0, 1<<33, 5)):      def, // not <=
				ptr(perf(1<<32+11, 1<<32+10, 0x13ab, 0, 1<<33, 5)):      def, // mask
				ptr(perf(1<<32+11, 1<<32+10, 0x12ab, 9, 1<<33, 5)):      def, // ==
				ptr(perf(1<<32+11, 1<<32+10, 0x12ab, 0, 1<<33-1, 5)):    def, // not >=
				ptr(perf(1<<32+11, 1<<32+10, 0x12ab, 0, 1<<33, 6)):      def, // not <
				ptr(perf(0xffffffff, 1<<32+10, 0x12ab, 0, 1<<33, 5)):    def, // a lower high half
				ptr(perf(1<<33+1, 1<<32+10, 1<<40|0x1200, 0, 1<<33, 5)): errno(20),
			}},
		{"32-bit compat: low halves", withRules(base, specs.LinuxSyscall{Names: []string{"perf_event_open"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{eq(0, 1<<32|3)}}),
			map[*call]uint32{{arch: archI386, name: "perf_event_open", args: [6]uint64{3}}: allow, {arch: archI386, name: "perf_event_open", args: [6]uint64{4}}: def,
				ptr(perf(3)): def, ptr(perf(1<<32 | 3)): allow}},
		{"kill, trap, log, trace", withRules(base,
			specs.LinuxSyscall{Names: []string{"bpf"}, Action: specs.ActKillProcess}, specs.LinuxSyscall{Names: []string{"mount"}, Action: specs.ActTrap},
			specs.LinuxSyscall{Names: []string{"umount2"}, Action: specs.ActTrace}, specs.LinuxSyscall{Names: []string{"perf_event_open"}, Action: specs.ActLog}),
			map[*call]uint32{{arch: archX8664, name: "bpf"}: retKillProcess, {arch: archX8664, name: "mount"}: allow, // the first wide rule (read, mount, umount2) wins
				{arch: archX8664, name: "perf_event_open"}: retLog}},
		{"x32 not listed: left to the container's filter", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno},
			map[*call]uint32{{arch: archX32, name: "bpf"}: allow, {arch: archI386, name: "bpf"}: allow, {arch: archX8664, name: "bpf"}: retErrno | eperm}},
	}
	for _, c := range cases {
		f, err := compile(c.p, "amd64")
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		for cl, want := range c.calls {
			if got := run(t, f.Program, *cl); got != want {
				t.Errorf("%s: %s on %s %x: %#x, want %#x", c.name, cl.name, cl.arch.name, cl.args, got, want)
			}
		}
		// Other calls are the container filter's to decide.
		if got := run(t, f.Program, call{arch: archX8664, name: "other", args: [6]uint64{}}); got != retAllow {
			t.Errorf("%s: an unrelated call: %#x", c.name, got)
		}
	}
	// arm64 and its compat arm.
	f, err := compile(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{specs.ArchARM},
		Syscalls: []specs.LinuxSyscall{{Names: []string{"bpf"}, Action: specs.ActErrno}}}, "arm64")
	if err != nil {
		t.Fatal(err)
	}
	for cl, want := range map[*call]uint32{{arch: archAArch64, name: "bpf"}: retErrno | eperm, {arch: archARM, name: "bpf"}: retErrno | eperm,
		{arch: archAArch64, name: "mount"}: retAllow, {arch: archX8664, name: "bpf"}: retAllow} {
		if got := run(t, f.Program, *cl); got != want {
			t.Errorf("arm64: %s on %s: %#x, want %#x", cl.name, cl.arch.name, got, want)
		}
	}
}

func ptr(c call) *call { return &c }

// What cannot be reproduced exactly is refused, so that such a container runs as its
// profile says, untraced.
func TestUnsupported(t *testing.T) {
	base := specs.LinuxSeccomp{DefaultAction: specs.ActErrno}
	for name, p := range map[string]*specs.LinuxSeccomp{
		"notify": withRules(base, specs.LinuxSyscall{Names: []string{"bpf"}, Action: specs.ActNotify}),
		"conditional rules of different actions": withRules(base,
			specs.LinuxSyscall{Names: []string{"perf_event_open"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{eq(0, 0)}},
			specs.LinuxSyscall{Names: []string{"perf_event_open"}, Action: specs.ActErrno, ErrnoRet: errnoP(13), Args: []specs.LinuxSeccompArg{eq(1, 0)}}),
		"default notify": {DefaultAction: specs.ActNotify},
	} {
		if _, err := compile(p, "amd64"); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: %v, want ErrUnsupported", name, err)
		}
	}
	for name, p := range map[string]*specs.LinuxSeccomp{
		"an unknown action":   withRules(base, specs.LinuxSyscall{Names: []string{"bpf"}, Action: "SCMP_ACT_NOPE"}),
		"an argument index 6": withRules(base, specs.LinuxSyscall{Names: []string{"bpf"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{eq(6, 0)}}),
		"an unknown operator": withRules(base, specs.LinuxSyscall{Names: []string{"bpf"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Op: "SCMP_CMP_NOPE"}}}),
	} {
		if _, err := compile(p, "amd64"); err == nil {
			t.Errorf("%s: compiled", name)
		}
	}
}

// The kernel takes the programs and gives the calls the verdicts above: each profile
// in a process of its own (a test binary re-run), which installs the filter with the
// start gate's code and makes the calls.
func TestKernel(t *testing.T) {
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skip("filters are built for amd64 and arm64")
	}
	testenv.RequireRoot(t)
	base := specs.LinuxSeccomp{DefaultAction: specs.ActAllow}
	for _, c := range []struct {
		name string
		p    *specs.LinuxSeccomp
		want string // perf_event_open(0,...), perf_event_open(0,7,...), bpf, mount(0,...), umount2(0)
	}{
		{"podman's default", &podmanLike, "errno 1, errno 1, errno 1, allowed, allowed"},
		{"argument-restricted", withRules(base, specs.LinuxSyscall{Names: []string{"perf_event_open"}, Action: specs.ActErrno, ErrnoRet: errnoP(77), Args: []specs.LinuxSeccompArg{eq(1, 7)}},
			specs.LinuxSyscall{Names: []string{"bpf", "mount"}, Action: specs.ActErrno, ErrnoRet: errnoP(78)}),
			"allowed, errno 77, errno 78, errno 78, allowed"},
		{"deny", nil, "errno 1, errno 1, errno 1, allowed, allowed"},
		{"with a flag (seccomp(2), not prctl)", func() *specs.LinuxSeccomp {
			p := withRules(base, specs.LinuxSyscall{Names: []string{"bpf"}, Action: specs.ActErrno, ErrnoRet: errnoP(78)})
			p.Flags = []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog}
			return p
		}(), "allowed, allowed, errno 78, allowed, allowed"},
	} {
		var f *Filter
		var err error
		if c.p == nil {
			f, err = Deny("bpf", "perf_event_open")
		} else {
			f, err = Compile(c.p)
		}
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(f)
		cmd := exec.Command(os.Args[0], "-test.run=^TestKernelChild$")
		cmd.Env = append(os.Environ(), "SECCOMP_TEST_FILTER="+string(raw))
		out, err := cmd.CombinedOutput()
		got := strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
		if err != nil || got != c.want {
			t.Errorf("%s: %q (%v), want %q\n%s", c.name, got, err, c.want, out)
		}
	}
}

// TestKernelChild is TestKernel's process under a filter.
func TestKernelChild(t *testing.T) {
	raw := os.Getenv("SECCOMP_TEST_FILTER")
	if raw == "" {
		t.Skip("run by TestKernel")
	}
	var f Filter
	if err := json.Unmarshal([]byte(raw), &f); err != nil {
		t.Fatal(err)
	}
	runtime.LockOSThread() // the filter is the thread's
	g := &gate.Filter{Flags: f.Flags}
	for _, in := range f.Program {
		g.Program = append(g.Program, gate.Instruction{Code: in.Code, Jt: in.Jt, Jf: in.Jf, K: in.K})
	}
	if err := gate.InstallFilter(g); err != nil {
		t.Fatal(err)
	}
	nr := map[string]uintptr{}
	native, _, _ := archesFor(runtime.GOARCH)
	for k, v := range native.number {
		nr[k] = uintptr(v)
	}
	// Arguments the kernel refuses by itself (a null pointer, an unknown command):
	// its own errno says the filter let the call through.
	ours := map[syscall.Errno]bool{1: true, 77: true, 78: true}
	var res []string
	for _, c := range []struct {
		name string
		args [6]uintptr
	}{{"perf_event_open", [6]uintptr{}}, {"perf_event_open", [6]uintptr{0, 7}}, {"bpf", [6]uintptr{9999}}, {"mount", [6]uintptr{}}, {"umount2", [6]uintptr{}}} {
		_, _, e := syscall.RawSyscall6(nr[c.name], c.args[0], c.args[1], c.args[2], c.args[3], c.args[4], c.args[5])
		if ours[e] {
			res = append(res, fmt.Sprintf("errno %d", int(e)))
		} else {
			res = append(res, "allowed")
		}
	}
	fmt.Println(strings.Join(res, ", "))
}

// What the app's filter adds to a system call the container's filter lets through: a
// getppid loop on one thread under a filter standing for the container's (allow all),
// without and with the app's filter for the podman-like profile on top (the thread
// exits with its goroutine, taking its filters along).
func BenchmarkSyscall(b *testing.B) {
	f, err := Compile(&podmanLike)
	if err != nil {
		b.Fatal(err)
	}
	g := &gate.Filter{Flags: f.Flags}
	for _, in := range f.Program {
		g.Program = append(g.Program, gate.Instruction{Code: in.Code, Jt: in.Jt, Jf: in.Jf, K: in.K})
	}
	for _, filtered := range []bool{false, true} {
		b.Run(fmt.Sprintf("filtered=%v", filtered), func(b *testing.B) {
			done := make(chan error)
			go func() {
				runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
				container := &gate.Filter{Program: []gate.Instruction{{Code: retK, K: retAllow}}}
				if err := gate.InstallFilter(container); err != nil {
					done <- err
					return
				}
				if filtered {
					if err := gate.InstallFilter(g); err != nil {
						done <- err
						return
					}
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					syscall.RawSyscall(syscall.SYS_GETPPID, 0, 0, 0)
				}
				done <- nil
			}()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}
