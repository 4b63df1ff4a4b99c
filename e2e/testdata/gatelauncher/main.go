// Command gatelauncher is launch with a scripted Instrumenter instead of eBPF, so the
// tests can observe the start gate from inside: what the app's process looks like while
// held, what happens when attaching is slow, fails or is required, and how the session
// is flushed. GATE_TEST selects the script; the launcher code is the product's.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/otel-go-launcher/otel-go-launcher/launcher"
)

func main() {
	cfg := launcher.Config{
		Argv:          os.Args[1:],
		Instrumenter:  scripted(os.Getenv("GATE_TEST")),
		AttachTimeout: 5 * time.Second,
		FlushTimeout:  5 * time.Second,
	}
	if d, err := time.ParseDuration(os.Getenv("GATE_ATTACH_TIMEOUT")); err == nil {
		cfg.AttachTimeout = d
	}
	if d, err := time.ParseDuration(os.Getenv("GATE_FLUSH_TIMEOUT")); err == nil {
		cfg.FlushTimeout = d
	}
	cfg.RequireInstrumentation = os.Getenv("GATE_REQUIRE") != ""
	os.Exit(launcher.Run(cfg))
}

type scripted string

type session struct{ block bool }

func (s session) Shutdown(ctx context.Context) error {
	if s.block {
		<-ctx.Done()
		fmt.Fprintln(os.Stderr, "gatelauncher: shutdown gave up:", ctx.Err())
		return ctx.Err()
	}
	fmt.Fprintln(os.Stderr, "gatelauncher: flushed")
	return nil
}

func (s scripted) Instrument(ctx context.Context, t launcher.Target) (launcher.Session, error) {
	switch s {
	case "inspect":
		// Report the held process as the tests need to see it.
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", t.PID))
		self, _ := os.Readlink("/proc/self/exe")
		pgid, _ := syscall.Getpgid(t.PID)
		sid := sessionOf(t.PID)
		fmt.Fprintf(os.Stderr, "gatelauncher: held pid=%d exe_is_launcher=%v ppid=%d pgid=%d sid=%d my_pid=%d my_sid=%d path=%s\n",
			t.PID, exe == self, parentOf(t.PID), pgid, sid, os.Getpid(), sessionOf(os.Getpid()), t.Path)
		time.Sleep(100 * time.Millisecond)
		return session{}, nil
	case "slow":
		<-ctx.Done() // attach never completes before the timeout
		return nil, ctx.Err()
	case "fail":
		return nil, &launcher.Unavailable{Err: errors.New("scripted failure"), Fix: "none"}
	case "late":
		// Attaching completes after --attach-timeout, while the app runs.
		time.Sleep(300 * time.Millisecond)
		return session{}, nil
	case "late-at-exit":
		// Attaching completes just as the app exits (the launcher cancels ctx then).
		<-ctx.Done()
		return session{}, nil
	case "signal-self":
		// A signal for the app arrives while it is held.
		syscall.Kill(os.Getpid(), syscall.SIGTERM)
		time.Sleep(100 * time.Millisecond)
		return session{}, nil
	case "chmod":
		// The program stops being executable while held: the exec fails after release.
		os.Chmod(t.Path, 0o644)
		return session{}, nil
	case "block-flush":
		return session{block: true}, nil
	}
	return nil, errors.New("unknown GATE_TEST")
}

func parentOf(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	n, _ := strconv.Atoi(f[1])
	return n
}

func sessionOf(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	n, _ := strconv.Atoi(f[3])
	return n
}
