package launcher

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/otel-go-launcher/otel-go-launcher/internal/capability"
)

// Target is the app's process while it waits at the start gate.
type Target struct {
	PID  int    // the app's PID, unchanged when the gate opens
	Path string // the program it will exec, resolved on PATH
}

// Instrumenter attaches tracing to a target held at the start gate.
type Instrumenter interface {
	// Instrument attaches what it can before ctx ends. A Session, even a partial
	// one, means tracing is on; an error means it is off, and the app runs anyway
	// unless the user required instrumentation.
	Instrument(ctx context.Context, t Target) (Session, error)
}

// Session is live instrumentation; Shutdown flushes what it holds and detaches.
type Session interface {
	Shutdown(ctx context.Context) error
}

// Loading is a Session that goes on attaching after Instrument returned: its app is
// let go at once, and held by the kernel at its first instrumented call until the
// probes are in place. The launcher keeps start-up's settings (no garbage collection,
// every CPU) until Loaded is closed.
type Loading interface {
	Loaded() <-chan struct{}
}

// ExitAware is a Session that wants to know when the app exited: the launcher tells it
// before Shutdown, so that what was still in flight then ends then.
type ExitAware interface {
	// AppExited: the app exited at monotonic (CLOCK_MONOTONIC), when the launcher
	// reaped it.
	AppExited(monotonic time.Duration)
}

// Unavailable explains why a target cannot be instrumented: what is wrong and how to
// fix it. The launcher prints it as its single warning line.
type Unavailable struct {
	Err   error  // what is wrong: "the launcher lacks SYS_ADMIN", errors joined per probe
	Fix   string // "add cap_add: [SYS_ADMIN, BPF] ..." ("" when nothing can be done)
	Quiet bool   // off by the user's own choice (OTEL_SDK_DISABLED): no warning
}

func (u *Unavailable) Error() string {
	if u.Fix == "" {
		return oneLine(u.Err)
	}
	return oneLine(u.Err) + ": " + u.Fix
}

func (u *Unavailable) Unwrap() error { return u.Err }

// oneLine is err's message on one line: the launcher says what could not be traced in
// one, and errors.Join puts one error per line.
func oneLine(err error) string {
	if err == nil {
		return ""
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var parts []string
		for _, e := range j.Unwrap() {
			parts = append(parts, oneLine(e))
		}
		return strings.Join(parts, "; ")
	}
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

// Untraced is the Instrumenter for an app that will not be traced: Instrument returns
// Err (an *Unavailable), so that the launcher says so, or refuses to start the app
// under --require-instrumentation, as for any other failure.
type Untraced struct{ Err error }

func (u Untraced) Instrument(context.Context, Target) (Session, error) { return nil, u.Err }

// Preflight checks what instrumentation needs from the launcher's own process, so
// the common misconfiguration is reported with its fix before anything is tried.
func Preflight() error {
	missing, err := HasEffective(capability.Tracing...)
	if err != nil {
		return &Unavailable{Err: fmt.Errorf("cannot read the launcher's capabilities: %w", err)}
	}
	if len(missing) == 0 {
		return nil
	}
	list := capability.SetOf(missing...).Join(", ")
	return &Unavailable{
		Err: errors.New("the launcher lacks " + list),
		Fix: "add cap_add: [" + list + "] (Compose) or securityContext.capabilities.add (Kubernetes); the app does not get them",
	}
}
