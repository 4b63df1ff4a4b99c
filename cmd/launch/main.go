// Command launch runs a Go program with OpenTelemetry tracing attached from eBPF,
// as the container's init: launch [flags] -- PROG [ARGS...].
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/otel-go-launcher/otel-go-launcher/internal/version"
	"github.com/otel-go-launcher/otel-go-launcher/launcher"
	"github.com/otel-go-launcher/otel-go-launcher/offsets"
	"github.com/otel-go-launcher/otel-go-launcher/probes"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig"
)

func main() {
	// The app's process at the start gate never gets here: package launcher/gate
	// runs it from its init, before the rest of the program initializes.
	os.Exit(run(os.Args))
}

// exitError carries the launcher's exit code out of a cli action.
type exitError struct{ code int }

func (e exitError) Error() string { return "exit " + fmt.Sprint(e.code) }

// splitCommand separates the launcher's arguments from the app's: everything after the
// first "--" is the app's, even words that look like our flags or subcommands. command
// is nil when there is no "--".
func splitCommand(args []string) (own, command []string) {
	for i, a := range args {
		if a == "--" {
			return args[:i], append([]string{}, args[i+1:]...)
		}
	}
	return args, nil
}

func run(args []string) int {
	args, command := splitCommand(args)
	app := newApp(command)
	err := app.Run(args)
	var exit exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.code
	default:
		fmt.Fprintf(os.Stderr, "launch: %v\n", err)
		return launcher.ExitUsage
	}
}

func flagEnv(name string) []string {
	env := []byte("LAUNCH_")
	for _, c := range []byte(name) {
		switch {
		case c == '-':
			env = append(env, '_')
		case c >= 'a' && c <= 'z':
			env = append(env, c-'a'+'A')
		default:
			env = append(env, c)
		}
	}
	return []string{string(env)}
}

// bindEnv gives each flag but the command-line-only ones its LAUNCH_ variable. Every
// flag type of the CLI library has the EnvVars field; a flag without one is a
// programming error, which the tests catch at once.
func bindEnv(flags []cli.Flag) {
	for _, f := range flags {
		if slices.Contains(commandLineOnly, f.Names()[0]) || slices.Contains(repeatedOnly, f.Names()[0]) {
			continue
		}
		field := reflect.ValueOf(f).Elem().FieldByName("EnvVars")
		if !field.IsValid() {
			panic(fmt.Sprintf("flag --%s (%T) has no EnvVars to bind LAUNCH_ variables to", f.Names()[0], f))
		}
		field.Set(reflect.ValueOf(flagEnv(f.Names()[0])))
	}
}

// commandLineOnly are the flags that set the app's privileges or choose a path root
// reads or writes. The environment belongs to the app: whoever writes the image or the
// pod sets it (and, under launch-runtime, its annotations), so these flags have no
// LAUNCH_ variable, and one that is set is refused (refusedEnv) rather than quietly
// ignored. They come from the command line, which the operator owns.
var commandLineOnly = []string{"keep-caps", "drop-caps", "app-caps", "app-seccomp", "user", "groups", "cpu-profile", "offsets-db"}

// repeatedOnly are flags given once per value, each whole (wrap's --env KEY=VALUE):
// one variable cannot say them, so they have none (and one set is no error: LAUNCH_ENV
// may well be an app's own).
var repeatedOnly = []string{"env"}

// refusedEnv is the error for a LAUNCH_ variable of a command-line-only flag in env,
// or nil.
func refusedEnv(env []string) error {
	for _, name := range commandLineOnly {
		v := flagEnv(name)[0]
		for _, kv := range env {
			if strings.HasPrefix(kv, v+"=") {
				return fmt.Errorf("%s is set, but --%s is taken from the command line only: it sets what the app may do or where the launcher writes, and the environment belongs to the app; unset %s and pass --%s to launch", v, name, v, name)
			}
		}
	}
	return nil
}

// commands are launch's subcommands. Their names are launcher.Subcommands, the list
// the start gate's init goes by (it must not fork a gate process for them, and runs
// before any of this): a test holds the two to one list.
func commands() []*cli.Command {
	return []*cli.Command{inspectCommand(), doctorCommand(), wrapCommand()}
}

func newApp(command []string) *cli.App {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "log-level", Value: "warn", Usage: "launcher messages on stderr: debug, info, warn or error"},
		&cli.DurationFlag{Name: "attach-timeout", Value: 5 * time.Second, Usage: "let the app go on after this long even if probes are still attaching (its calls until then are not traced)"},
		&cli.BoolFlag{Name: "gate", Usage: "keep the app at the start gate until every probe is attached, as --require-instrumentation does; by default it starts once a small hold program is in place, and only its first instrumented call waits for the probes"},
		&cli.DurationFlag{Name: "flush-timeout", Value: 5 * time.Second, Usage: "bound on exporting buffered spans and metrics after the app exits"},
		&cli.DurationFlag{Name: "grace", Value: 0, Usage: "when the app exits, send SIGTERM to what it left running and SIGKILL after this `DURATION` (0: leave it running)"},
		&cli.BoolFlag{Name: "signal-group", Usage: "relay signals to the app's whole process group, not only to the app"},
		&cli.StringFlag{Name: "keep-caps", Usage: "comma-separated `LIST` of the launcher's capabilities the app may keep (SYS_ADMIN, BPF, PERFMON, NET_ADMIN, SYS_PTRACE, SYS_RESOURCE are removed by default); command line only"},
		&cli.StringFlag{Name: "drop-caps", Usage: "comma-separated `LIST` of more capabilities the app must not have, from every set including the bounding set (for a runtime that gives the launcher capabilities the container was not given); command line only"},
		&cli.StringFlag{Name: "app-caps", Usage: "the app's capability sets exactly, as an OCI runtime gives them: `SETS` = bounding=LIST;effective=LIST;permitted=LIST;inheritable=LIST;ambient=LIST (every set named, LIST comma-separated, empty for none), in place of --keep-caps and --drop-caps; what launch-runtime passes; command line only"},
		&cli.StringFlag{Name: "app-seccomp", Usage: "the container's OCI seccomp profile as `JSON` (linux.seccomp of config.json): the app gets its verdicts for bpf, perf_event_open, mount and umount2, which the container's filter allows the launcher, from a filter added before the app starts; without it, an app under a seccomp filter that lost the launcher's capabilities gets EPERM for bpf and perf_event_open, as engines' default profiles give it; what launch-runtime passes; command line only"},
		&cli.StringFlag{Name: "user", Usage: "run the app as `NAME|UID[:GROUP|GID]` (from /etc/passwd and /etc/group) with that user's HOME where the runtime set root's, while the launcher keeps its privileges; command line only"},
		&cli.StringFlag{Name: "groups", Usage: "with --user: the app's supplementary groups, exactly, as a comma-separated `LIST` of GIDs (empty for none), in place of the user's groups in /etc/group; \"inherit\": the launcher's own (those the runtime gave the container's process); command line only"},
		&cli.BoolFlag{Name: "require-instrumentation", Usage: "exit 1 instead of starting the app untraced"},
		&cli.BoolFlag{Name: "propagate", Value: true, Usage: "insert a W3C traceparent naming the client span into the app's outgoing HTTP/1 requests and plaintext HTTP/2 streams (gRPC, h2c), from the kernel (needs CAP_NET_ADMIN and cgroup v2; TLS cannot be changed below it: HTTPS and gRPC-with-TLS calls get client spans only); --propagate=false to leave requests as they are"},
		&cli.StringFlag{Name: "offsets-db", Usage: "take struct field offsets for binaries without DWARF from this `FILE` (written by make offsets) instead of the database built into the launcher: for Go releases newer than the launcher; command line only"},
		&cli.IntFlag{Name: "max-queue", Value: otelconfig.DefaultMaxQueueSize, Usage: "spans held in memory per exporter while the collector is slow or away (`N`, ~300 bytes each; OTEL_BSP_MAX_QUEUE_SIZE sets it too, this flag wins); past it, spans are dropped and counted, never the app slowed"},
		&cli.StringFlag{Name: "ring-buffer", Value: "1MiB", Usage: "kernel buffer per probe for spans on their way to the exporter (`SIZE`: a power of two, KiB or MiB); when it is full, spans are dropped and counted, never the app slowed"},
		&cli.StringFlag{Name: "cpu-profile", Usage: "write a CPU profile of the launcher itself (go tool pprof) to `FILE` when it exits: where its time per span goes; command line only"},
	}
	cmds := commands()
	bindEnv(flags)
	for _, c := range cmds {
		bindEnv(c.Flags)
	}
	return &cli.App{
		Name:      "launch",
		Usage:     "run a Go program with OpenTelemetry tracing from eBPF, as its init",
		UsageText: "launch [flags] -- PROG [ARGS...]\nlaunch inspect [--json] BINARY\nlaunch doctor\nlaunch wrap [flags] SRC DST",
		Description: `launch starts PROG as its child and holds it at a start gate while eBPF probes are
attached to it, then lets it run, so that its first request is traced. It relays
signals to PROG, reaps zombies, and exits with PROG's exit code (128+N if signal N
killed it; 127 if PROG was not found, 126 if it could not be executed). PROG runs
without the capabilities the launcher needs. If tracing cannot be set up, launch
says why in one line and runs PROG anyway.

A flag, launch's or its commands', can also be set with an environment variable
LAUNCH_<FLAG>, for example LAUNCH_ATTACH_TIMEOUT=2s or LAUNCH_PLATFORM=linux/amd64
(wrap), except the flags that set the app's privileges or a path (--keep-caps,
--drop-caps, --app-caps, --app-seccomp, --user, --groups, --cpu-profile,
--offsets-db): the environment belongs to the app, so those are taken from the
command line only, and launch refuses to start when their variable is set; and wrap's
repeated --env. Tracing is configured with the standard OTEL_* variables; where a flag
and one say the same (--max-queue and OTEL_BSP_MAX_QUEUE_SIZE), the flag or its
LAUNCH_ variable wins. launch doctor prints the configuration in effect.`,
		Version:         version.String(),
		Flags:           flags,
		Commands:        cmds,
		HideHelpCommand: true,
		ExitErrHandler:  func(*cli.Context, error) {},
		// For every command: inspect and doctor read --offsets-db too.
		Before:                func(*cli.Context) error { return refusedEnv(os.Environ()) },
		CustomAppHelpTemplate: "",
		Action: func(c *cli.Context) error {
			return exitError{runApp(c, command)}
		},
	}
}

// otelConfig is the OpenTelemetry configuration: the OTEL_* variables, with the flags
// that say the same things on top (--max-queue, or LAUNCH_MAX_QUEUE, over
// OTEL_BSP_MAX_QUEUE_SIZE). The app's run and doctor take it from here alike.
func otelConfig(c *cli.Context) (otelconfig.Config, error) {
	cfg, err := otelconfig.FromEnv()
	if n := c.Int("max-queue"); c.IsSet("max-queue") && n > 0 {
		cfg.Batch = cfg.Batch.WithMaxQueueSize(n)
	}
	return cfg, err
}

func runApp(c *cli.Context, command []string) int {
	// The OpenTelemetry configuration, read once; what tracing needs is prepared in
	// the background from here, unless it is off.
	if n := c.Int("max-queue"); c.IsSet("max-queue") && n <= 0 {
		fmt.Fprintf(os.Stderr, "launch: --max-queue %d: want a positive number of spans\n", n)
		return launcher.ExitUsage
	}
	otel, otelErr := otelConfig(c)
	probeOpts := probes.Options{Telemetry: otel, Propagate: c.Bool("propagate")}
	if otelErr == nil && !otel.Disabled {
		probes.Prepare(probeOpts)
	}
	level, err := parseLevel(c.String("log-level"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "launch: --log-level %q: want debug, info, warn or error\n", c.String("log-level"))
		return launcher.ExitUsage
	}
	slog.SetDefault(slog.New(newLineHandler(os.Stderr, level)))
	telemetry.RouteInternalLogs()
	for _, w := range otel.Warnings {
		slog.Warn(w)
	}

	if !useOffsetsDB(c, "launch") {
		return launcher.ExitUsage
	}
	if path := c.String("cpu-profile"); path != "" {
		stop, err := startCPUProfile(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "launch: --cpu-profile: %v\n", err)
			return launcher.ExitUsage
		}
		defer stop()
	}
	if command == nil {
		command = c.Args().Slice()
	}
	if len(command) == 0 {
		fmt.Fprintln(os.Stderr, "launch: no program to run: usage: launch [flags] -- PROG [ARGS...]")
		return launcher.ExitUsage
	}
	cfg := launcher.Config{
		Argv:                   command,
		AttachTimeout:          c.Duration("attach-timeout"),
		FlushTimeout:           c.Duration("flush-timeout"),
		Grace:                  c.Duration("grace"),
		SignalGroup:            c.Bool("signal-group"),
		RequireInstrumentation: c.Bool("require-instrumentation"),
	}
	// The app's own start overlaps the probes' loading, unless it must not run
	// untraced at all: then it waits at the gate, and does not start if they fail.
	probeOpts.Overlap = !c.Bool("gate") && !cfg.RequireInstrumentation
	probeOpts.HoldLimit = cfg.AttachTimeout
	if probeOpts.RingBufferSize, err = parseSize(c.String("ring-buffer")); err != nil {
		fmt.Fprintf(os.Stderr, "launch: --ring-buffer %q: %v\n", c.String("ring-buffer"), err)
		return launcher.ExitUsage
	}
	switch {
	case otelErr != nil:
		cfg.Instrumenter = launcher.Untraced{Err: &launcher.Unavailable{Err: otelErr}}
	case otel.Disabled:
		cfg.Instrumenter = launcher.Untraced{Err: &launcher.Unavailable{Err: telemetry.ErrDisabled, Quiet: true}}
	default:
		cfg.Instrumenter = ebpfInstrumenter{probes: probeOpts}
	}
	if cfg.KeepCaps, err = launcher.ParseKeepCaps(c.String("keep-caps")); err != nil {
		fmt.Fprintf(os.Stderr, "launch: %v\n", err)
		return launcher.ExitUsage
	}
	if cfg.DropCaps, err = launcher.ParseDropCaps(c.String("drop-caps")); err != nil {
		fmt.Fprintf(os.Stderr, "launch: %v\n", err)
		return launcher.ExitUsage
	}
	if c.IsSet("app-caps") {
		if c.IsSet("keep-caps") || c.IsSet("drop-caps") {
			fmt.Fprintln(os.Stderr, "launch: --app-caps gives the app's sets exactly: drop --keep-caps and --drop-caps")
			return launcher.ExitUsage
		}
		if cfg.AppCaps, err = launcher.ParseAppCaps(c.String("app-caps")); err != nil {
			fmt.Fprintf(os.Stderr, "launch: %v\n", err)
			return launcher.ExitUsage
		}
	}
	if c.IsSet("app-seccomp") {
		if cfg.AppSeccomp, err = launcher.ParseAppSeccomp(c.String("app-seccomp")); err != nil {
			fmt.Fprintf(os.Stderr, "launch: %v\n", err)
			return launcher.ExitUsage
		}
	}
	if u := c.String("user"); u != "" {
		if cfg.User, err = launcher.ResolveUser(u); err != nil {
			fmt.Fprintf(os.Stderr, "launch: %v\n", err)
			return launcher.ExitUsage
		}
	}
	if c.IsSet("groups") {
		if cfg.User == nil {
			fmt.Fprintf(os.Stderr, "launch: --groups needs --user (the app's user)\n")
			return launcher.ExitUsage
		}
		if cfg.User.Groups, err = launcher.ParseGroups(c.String("groups")); err != nil {
			fmt.Fprintf(os.Stderr, "launch: %v\n", err)
			return launcher.ExitUsage
		}
	}
	return launcher.Run(cfg)
}

// useOffsetsDB applies --offsets-db, reporting a bad file.
func useOffsetsDB(c *cli.Context, prefix string) bool {
	path := c.String("offsets-db")
	if path == "" {
		return true
	}
	if err := offsets.UseDatabaseFile(path); err != nil {
		fmt.Fprintf(os.Stderr, "%s: --offsets-db: %v\n", prefix, err)
		return false
	}
	return true
}

// parseSize reads "4096", "256KiB" or "1MiB": a power of two of at least 4 KiB (a page).
func parseSize(s string) (int, error) {
	mult := 1
	switch {
	case strings.HasSuffix(s, "KiB"):
		s, mult = strings.TrimSuffix(s, "KiB"), 1<<10
	case strings.HasSuffix(s, "MiB"):
		s, mult = strings.TrimSuffix(s, "MiB"), 1<<20
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n <= 0 {
		return 0, errors.New("want a size such as 1MiB")
	}
	n *= mult
	if n < 4096 || n&(n-1) != 0 || n > 1<<30 {
		return 0, errors.New("want a power of two from 4KiB to 1024MiB")
	}
	return n, nil
}

// startCPUProfile profiles the launcher's CPU into the file at path until stop.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			slog.Warn("--cpu-profile " + path + ": " + err.Error())
		}
	}, nil
}
