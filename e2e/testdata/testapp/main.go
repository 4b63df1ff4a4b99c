// Command testapp is the app the end-to-end tests run under launch. Each mode shows
// one thing the launcher must get right, from the app's side.
//
//	testapp exit N           exit with status N
//	testapp kill-self SIG    die of signal number SIG (default disposition)
//	testapp signals          print "ready", then the number of every signal received,
//	                         one per line, until stdin closes
//	testapp report           print what the app sees of its process as JSON
//	testapp privileges       print its /proc/self/status and the outcome of bpf,
//	                         perf_event_open, mount and umount2 (harmless arguments)
//	                         as JSON
//	testapp orphans N        leave N orphans behind that exit after 100 ms, print
//	                         "spawned", then wait until stdin closes
//	testapp touch FILE       create FILE and exit 0
//	testapp linger MS        print the PID of a child that ignores SIGTERM for MS, exit
//	testapp sleep-ms MS      sleep MS milliseconds, exit 0
//	testapp exec-with BLOCKED IGNORED PROG ARGS...
//	                         exec PROG with the signals in BLOCKED (comma-separated
//	                         numbers, or -) blocked and those in IGNORED ignored, as a
//	                         shell or service manager might start the launcher
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testapp MODE [ARGS]")
		os.Exit(2)
	}
	arg := func(i int) string {
		if len(os.Args) > i {
			return os.Args[i]
		}
		return ""
	}
	switch os.Args[1] {
	case "exit":
		n, _ := strconv.Atoi(arg(2))
		os.Exit(n)
	case "kill-self":
		n, _ := strconv.Atoi(arg(2))
		// The Go runtime handles most signals itself (SIGQUIT dumps goroutines and
		// exits 2): put the kernel's default action back, then raise.
		var dfl [4]uint64 // struct sigaction, handler SIG_DFL
		unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(n), uintptr(unsafe.Pointer(&dfl)), 0, 8, 0, 0)
		unix.Kill(os.Getpid(), syscall.Signal(n))
		time.Sleep(10 * time.Second)
		os.Exit(99)
	case "signals":
		signals()
	case "report":
		json.NewEncoder(os.Stdout).Encode(report())
	case "privileges":
		json.NewEncoder(os.Stdout).Encode(struct {
			Status map[string]string `json:"status"`
			Calls  map[string]string `json:"calls"`
		}{report().Status, calls()})
	case "orphans":
		n, _ := strconv.Atoi(arg(2))
		orphans(n)
	case "orphan-child":
		// Intermediate: start the orphan and exit, so that it is reparented.
		c := exec.Command(os.Args[0], "sleep-ms", "100")
		c.Start()
		os.Exit(0)
	case "sleep-ms":
		ms, _ := strconv.Atoi(arg(2))
		time.Sleep(time.Duration(ms) * time.Millisecond)
	case "touch":
		if err := os.WriteFile(arg(2), nil, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "linger":
		c := exec.Command(os.Args[0], "ignore-term", arg(2))
		if err := c.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		time.Sleep(50 * time.Millisecond) // let it install its handler
		fmt.Println(c.Process.Pid)
		os.Exit(0)
	case "exec-with":
		execWith(parseSigs(arg(2)), parseSigs(arg(3)), os.Args[4:])
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		ms, _ := strconv.Atoi(arg(2))
		time.Sleep(time.Duration(ms) * time.Millisecond)
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", os.Args[1])
		os.Exit(2)
	}
}

func signals() {
	c := make(chan os.Signal, 256)
	var all []os.Signal
	for s := 1; s <= 64; s++ {
		switch syscall.Signal(s) {
		case unix.SIGKILL, unix.SIGSTOP:
			continue
		}
		if s == 32 || s == 33 {
			continue
		}
		all = append(all, syscall.Signal(s))
	}
	signal.Notify(c, all...)
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	fmt.Println("ready")
	for s := range c {
		fmt.Println(int(s.(syscall.Signal)))
	}
}

// Report is what the app sees of its own process.
type Report struct {
	Argv       []string          `json:"argv"`
	Env        []string          `json:"env"`
	Cwd        string            `json:"cwd"`
	FDs        map[string]string `json:"fds"`
	Status     map[string]string `json:"status"` // /proc/self/status
	PID        int               `json:"pid"`
	PPID       int               `json:"ppid"`
	PGID       int               `json:"pgid"`
	SID        int               `json:"sid"`
	Foreground int               `json:"foreground"` // stdin's foreground process group, or -1
}

func report() Report {
	r := Report{Argv: os.Args, Env: os.Environ(), FDs: map[string]string{}, Status: map[string]string{}}
	r.Cwd, _ = os.Getwd()
	// Read the fd table before opening anything else; the directory's own fd shows up.
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		for _, e := range ents {
			target, _ := os.Readlink("/proc/self/fd/" + e.Name())
			r.FDs[e.Name()] = target
		}
	}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok {
				r.Status[k] = strings.TrimSpace(v)
			}
		}
	}
	r.PID, r.PPID = os.Getpid(), os.Getppid()
	r.PGID, _ = unix.Getpgid(0)
	r.SID, _ = unix.Getsid(0)
	r.Foreground = -1
	if pg, err := unix.IoctlGetInt(0, unix.TIOCGPGRP); err == nil {
		r.Foreground = pg
	}
	return r
}

// calls makes the four calls a container's seccomp profile decides for the launcher
// (bpf, perf_event_open, mount, umount2) with arguments that change nothing outside
// the process, and says what each returned: "ok" or the errno's name.
func calls() map[string]string {
	outcome := func(err error) string {
		if err == nil {
			return "ok"
		}
		if e, ok := err.(syscall.Errno); ok {
			return unix.ErrnoName(e)
		}
		return err.Error()
	}
	out := map[string]string{}
	// An array map of one entry, closed at once.
	attr := [5]uint32{2 /* BPF_MAP_TYPE_ARRAY */, 4, 4, 1, 0}
	fd, _, errno := unix.Syscall(unix.SYS_BPF, 0 /* BPF_MAP_CREATE */, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	if errno == 0 {
		unix.Close(int(fd))
		out["bpf"] = "ok"
	} else {
		out["bpf"] = outcome(errno)
	}
	// A software event counting nothing, on this process.
	pe := unix.PerfEventAttr{Type: unix.PERF_TYPE_SOFTWARE, Config: unix.PERF_COUNT_SW_DUMMY, Size: uint32(unsafe.Sizeof(unix.PerfEventAttr{})), Bits: unix.PerfBitDisabled | unix.PerfBitExcludeKernel | unix.PerfBitExcludeHv}
	if pfd, err := unix.PerfEventOpen(&pe, 0, -1, -1, 0); err == nil {
		unix.Close(pfd)
		out["perf_event_open"] = "ok"
	} else {
		out["perf_event_open"] = outcome(err)
	}
	// A path that does not exist: ENOENT when the call is let through.
	const nowhere = "/nonexistent-otel-go-launcher-e2e"
	out["mount"] = outcome(unix.Mount("none", nowhere, "tmpfs", 0, ""))
	out["umount2"] = outcome(unix.Unmount(nowhere, 0))
	return out
}

func orphans(n int) {
	for i := 0; i < n; i++ {
		c := exec.Command(os.Args[0], "orphan-child")
		if err := c.Run(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	fmt.Println("spawned")
	io.Copy(io.Discard, os.Stdin)
}

func parseSigs(list string) []int {
	var out []int
	for _, f := range strings.Split(list, ",") {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// execWith execs argv with a chosen signal mask and ignored set. The mask belongs to
// the thread that calls execve, so everything happens on one locked thread.
func execWith(blocked, ignored []int, argv []string) {
	runtime.LockOSThread()
	for _, s := range ignored {
		ign := [4]uint64{1} // struct sigaction, handler SIG_IGN
		unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(s), uintptr(unsafe.Pointer(&ign)), 0, 8, 0, 0)
	}
	var mask uint64
	for _, s := range blocked {
		mask |= 1 << (s - 1)
	}
	unix.RawSyscall6(unix.SYS_RT_SIGPROCMASK, unix.SIG_BLOCK, uintptr(unsafe.Pointer(&mask)), 0, 8, 0, 0)
	err := syscall.Exec(argv[0], argv, os.Environ())
	fmt.Fprintln(os.Stderr, "exec:", err)
	os.Exit(127)
}
