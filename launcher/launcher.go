// Package launcher supervises the app: it starts it behind a start gate, lets an
// Instrumenter attach to it there, relays signals, reaps zombies, and exits with the
// app's exit code, like an init (tini) that also traces.
package launcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/otel-go-launcher/otel-go-launcher/internal/capability"
	"github.com/otel-go-launcher/otel-go-launcher/internal/seccomp"
	"github.com/otel-go-launcher/otel-go-launcher/launcher/gate"
)

// Exit codes of the launcher itself; otherwise it exits with the app's.
const (
	ExitInstrumentationRequired = 1   // --require-instrumentation and tracing is off
	ExitUsage                   = 2   // bad flags or arguments
	exitCannotExec              = 126 // the app exists but could not be started
	exitNotFound                = 127 // the app was not found
)

// Config is what `launch -- PROG ARGS` was asked to do.
type Config struct {
	Argv                   []string // PROG and its arguments
	Instrumenter           Instrumenter
	AttachTimeout          time.Duration    // the gate opens after this even if attaching goes on
	FlushTimeout           time.Duration    // bound on flushing telemetry at exit
	Grace                  time.Duration    // >0: TERM, then KILL after this, leftover descendants
	SignalGroup            bool             // relay signals to the app's process group
	KeepCaps               capability.Set   // launcher capabilities the app may keep (--keep-caps)
	DropCaps               capability.Set   // more capabilities to take from the app (--drop-caps)
	AppCaps                *capability.Sets // the app's sets exactly (--app-caps), in place of the two above
	AppSeccomp             *seccomp.Filter  // the app's filter for the launcher's calls, from the container's profile (--app-seccomp)
	User                   *Credential      // run the app as this user (nil: as the launcher)
	RequireInstrumentation bool             // do not start the app untraced
}

// Run starts the app, supervises it to the end and returns the exit code for the
// launcher. It must be the only code in the process that starts or waits for children.
func Run(cfg Config) int {
	if len(cfg.Argv) == 0 || cfg.Argv[0] == "" {
		slog.Error("no program to run: usage: launch [flags] -- PROG [ARGS...]")
		return ExitUsage
	}
	// Registered at init when possible; first, as it reads the inherited dispositions.
	in := gate.TakeSignals()
	ignored := in.Ignored
	// SIGTTIN/SIGTTOU: never stop in a background process group (as tini). SIGPIPE: a
	// write to a closed stderr or collector socket returns EPIPE instead of killing us.
	signal.Ignore(unix.SIGTTIN, unix.SIGTTOU, unix.SIGPIPE)
	if os.Getpid() != 1 {
		// Orphans of the app come to us instead of to an init that may not reap.
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			slog.Warn("cannot become a child subreaper; the app's orphans are reaped by its ancestors", "err", err)
		}
	}

	proc, err := startGate()
	if err != nil {
		slog.Error(err.Error())
		return exitCannotExec
	}
	in.Wait()
	slog.Debug("relaying signals", "pid", os.Getpid(), "app_pid", proc.Pid)
	s := &supervisor{cfg: cfg, sigs: in.C, proc: proc, reap: startReaper(proc.Pid)}

	path, code, err := lookupProgram(cfg.Argv[0])
	if err != nil {
		slog.Error(err.Error())
		proc.abort()
		<-s.reap.appExit
		return code
	}
	spec := gate.Spec{
		Path:       path,
		Argv:       cfg.Argv,
		Env:        appEnv(os.Environ(), cfg.User),
		Foreground: ownsTerminal(),
		Ignored:    ignored,
	}
	if spec.Caps, err = appCaps(cfg); err == nil {
		spec.Seccomp, err = appSeccomp(cfg, spec.Caps)
	}
	if err != nil {
		// Never start the app with privileges it was not meant to have.
		slog.Error("not starting " + path + ": " + err.Error())
		proc.abort()
		<-s.reap.appExit
		return exitCannotExec
	}
	if u := cfg.User; u != nil {
		spec.User = &gate.User{UID: u.UID, GID: u.GID, Groups: u.Groups}
	}
	return s.run(path, spec)
}

type supervisor struct {
	cfg     Config
	sigs    chan os.Signal
	proc    *gatedProcess
	reap    *reaper
	pending []os.Signal // received while the app was not running yet

	// attached is closed once the Instrumenter has returned, session (nil without
	// one) set: maybe after the gate opened (--attach-timeout).
	attached chan struct{}
	session  Session
	gc       int // the garbage collector's percentage, set aside while attaching
}

// settle puts the launcher in its steady state once attaching is over, which may be
// after the gate opened (a Loading session, --attach-timeout): garbage collection
// back on, one CPU, start-up's memory given back.
func (s *supervisor) settle() {
	<-s.attached
	if l, ok := s.session.(Loading); ok {
		<-l.Loaded()
	}
	debug.SetGCPercent(s.gc)
	settle()
}

func (s *supervisor) run(path string, spec gate.Spec) int {
	t := Target{PID: s.proc.Pid, Path: path}
	ctx, cancelAttach := context.WithCancel(context.Background())
	defer cancelAttach()

	if appExit, err := s.attach(ctx, t); appExit != nil {
		// Killed at the gate, before the app ran.
		return exitCode(*appExit)
	} else if err != nil {
		if s.cfg.RequireInstrumentation {
			slog.Error(fmt.Sprintf("not starting %s: tracing is required (--require-instrumentation) and unavailable: %s", t.Path, oneLine(err)))
			s.proc.abort()
			<-s.reap.appExit
			return ExitInstrumentationRequired
		}
		var u *Unavailable
		if errors.As(err, &u) && u.Quiet {
			slog.Info(fmt.Sprintf("not tracing %s: %s", t.Path, oneLine(err)))
		} else {
			slog.Warn(fmt.Sprintf("not tracing %s: %s; the app runs without tracing", t.Path, oneLine(err)))
		}
	}

	if code, err := s.proc.release(spec); err != nil {
		slog.Error(err.Error())
		if ws, ok := s.awaitApp(time.Second); ok {
			return exitCode(ws)
		}
		return code
	}
	for _, sig := range s.pending {
		s.relay(sig)
	}
	s.pending = nil
	go s.settle()

	var status unix.WaitStatus
	for waiting := true; waiting; {
		select {
		case sig := <-s.sigs:
			s.relay(sig)
		case status = <-s.reap.appExit:
			waiting = false
		}
	}
	slog.Debug("app exited", "pid", t.PID, "status", describeStatus(status))
	s.flush(cancelAttach)
	if s.cfg.Grace > 0 {
		s.endDescendants()
	}
	return exitCode(status)
}

var errAttachTimeout = errors.New("attaching took longer than --attach-timeout")

// attach runs the Instrumenter while the app waits at the gate, queueing signals meant
// for the app. It returns the app's wait status if it died at the gate.
func (s *supervisor) attach(ctx context.Context, t Target) (*unix.WaitStatus, error) {
	// No garbage collection while attaching: loading and analysis allocate a few
	// megabytes, and collecting them mid-way would only lengthen the wait. settle
	// turns it back on.
	s.gc = debug.SetGCPercent(-1)
	s.attached = make(chan struct{})
	done := make(chan error, 1)
	go func() {
		sess, err := s.cfg.Instrumenter.Instrument(ctx, t)
		s.session = sess // read only after attached is closed
		close(s.attached)
		done <- err
	}()
	timeout := time.NewTimer(s.cfg.AttachTimeout)
	defer timeout.Stop()
	for {
		select {
		case sig := <-s.sigs:
			s.pending = append(s.pending, sig)
		case err := <-done:
			return nil, err
		case <-timeout.C:
			// The gate opens now; probes that attach later still trace later requests.
			go func() {
				if err := <-done; err == nil && ctx.Err() == nil {
					slog.Info("tracing attached after the app started", "pid", t.PID)
				}
			}()
			return nil, fmt.Errorf("%w (%s); requests before attaching completes are not traced", errAttachTimeout, s.cfg.AttachTimeout)
		case ws := <-s.reap.appExit:
			return &ws, nil
		}
	}
}

// relay forwards a signal the launcher received to the app (or its process group).
func (s *supervisor) relay(sig os.Signal) {
	sysSig := sig.(syscall.Signal)
	var err error
	if s.cfg.SignalGroup {
		err = unix.Kill(-s.proc.Pid, sysSig)
	} else {
		err = s.proc.signal(sysSig)
	}
	if err != nil && !errors.Is(err, unix.ESRCH) {
		slog.Warn("cannot relay "+signalName(sysSig)+" to the app", "pid", s.proc.Pid, "err", err)
		return
	}
	slog.Debug("relayed signal", "signal", signalName(sysSig), "pid", s.proc.Pid)
}

// awaitApp waits up to d for the app's exit status.
func (s *supervisor) awaitApp(d time.Duration) (unix.WaitStatus, bool) {
	select {
	case ws := <-s.reap.appExit:
		return ws, true
	case <-time.After(d):
		return 0, false
	}
}

// flush hands what tracing holds to the exporter, within --flush-timeout. An
// Instrumenter still attaching (past --attach-timeout) is told to stop first, and its
// session, should it return one even so, is flushed too: none is left behind.
func (s *supervisor) flush(cancelAttach context.CancelFunc) {
	cancelAttach()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.FlushTimeout)
	defer cancel()
	select {
	case <-s.attached:
	case <-ctx.Done():
		slog.Warn("attaching tracing did not stop within --flush-timeout; exiting without flushing", "flush_timeout", s.cfg.FlushTimeout)
		return
	}
	if s.session == nil {
		return
	}
	if e, ok := s.session.(ExitAware); ok {
		e.AppExited(time.Duration(s.reap.appExitAt.Load()))
	}
	if err := s.session.Shutdown(ctx); err != nil {
		// The session's errors say what each is about (flushing spans, flushing
		// metrics, detaching probes): "at exit" adds when, and no signal of its own.
		slog.Warn("at exit: " + oneLine(err))
		// Out of time, the session still says how many spans were dropped: worth
		// a moment more, or they would vanish without a word.
		if a, ok := s.session.(interface{ Accounted() <-chan struct{} }); ok {
			select {
			case <-a.Accounted():
			case <-time.After(lateReport):
			}
		}
	}
}

// lateReport bounds the wait for a session's loss report after --flush-timeout.
const lateReport = 2 * time.Second

// endDescendants asks what the app left behind to stop (SIGTERM), and kills what is
// still there after --grace.
func (s *supervisor) endDescendants() {
	if !signalDescendants(unix.SIGTERM) {
		return
	}
	select {
	case <-s.reap.done:
		return
	case <-time.After(s.cfg.Grace):
	}
	slog.Info("descendants still running after --grace; killing them", "grace", s.cfg.Grace)
	signalDescendants(unix.SIGKILL)
	select {
	case <-s.reap.done:
	case <-time.After(time.Second):
	}
}

// ownsTerminal reports whether stdin is a terminal whose foreground process group is
// the launcher's: then the app takes the foreground, as under tini. A launcher started
// in the background leaves the terminal to its shell.
func ownsTerminal() bool {
	pgrp, err := unix.IoctlGetInt(0, unix.TIOCGPGRP)
	return err == nil && pgrp == unix.Getpgrp()
}
