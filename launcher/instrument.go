package launcher

import (
	"context"
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

// Unavailable explains why a target cannot be instrumented: what is wrong and how to
// fix it. The launcher prints it as its single warning line.
type Unavailable struct {
	Cause string // "missing CAP_SYS_ADMIN, CAP_BPF"
	Fix   string // "add cap_add: [SYS_ADMIN, BPF] ..." ("" when nothing can be done)
	Quiet bool   // off by the user's own choice (OTEL_SDK_DISABLED): no warning
}

func (u *Unavailable) Error() string {
	if u.Fix == "" {
		return u.Cause
	}
	return u.Cause + ": " + u.Fix
}

// Preflight checks what instrumentation needs from the launcher's own process, so
// the common misconfiguration is reported with its fix before anything is tried.
func Preflight() error {
	missing, err := HasEffective(CapSysAdmin, CapBPF, CapPerfmon)
	if err != nil {
		return &Unavailable{Cause: "cannot read the launcher's capabilities: " + err.Error()}
	}
	if len(missing) == 0 {
		return nil
	}
	list := capList(missing)
	return &Unavailable{
		Cause: "the launcher lacks " + list,
		Fix:   "add cap_add: [" + list + "] (Compose) or securityContext.capabilities.add (Kubernetes); the app does not get them",
	}
}
