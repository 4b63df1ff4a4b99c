// Command launch-runtime is an OCI runtime that runs in front of the real one (runc or
// crun): a container that opts in (annotation otel-go-launcher.github.io/trace=true, or
// every container with --all) has its bundle's config.json edited at create or run to
// start its process under the launcher; then, for every container and every
// subcommand, the real runtime is executed in its place with the same arguments,
// standard streams and file descriptors, so its exit code is the caller's.
//
//	launch-runtime [--delegate PATH] [--all] [--launcher PATH] [runc's global flags] COMMAND ...
//
// Tracing never fails a container: an edit that cannot be made is logged (to the
// runtime's --log file) and the container starts as it would have.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/otel-go-launcher/otel-go-launcher/images/bundle"
	"github.com/otel-go-launcher/otel-go-launcher/internal/version"
)

// globalWithValue are runc's global flags that take a value (the subcommand comes
// after them).
var globalWithValue = map[string]bool{"--log": true, "--log-format": true, "--root": true, "--criu": true, "--rootless": true}

// options are launch-runtime's own flags, taken out of the arguments the delegate sees.
type options struct {
	delegate, launcher string
	all                bool
	infoOnly           bool // --version or --help: ours printed, then the delegate's if there is one
}

const usage = `launch-runtime: an OCI runtime in front of runc or crun that starts opted-in
containers under the otel-go-launcher launcher (annotation
otel-go-launcher.github.io/trace=true; OTEL_* settings from annotations
otel-go-launcher.github.io/env.OTEL_NAME=VALUE, other names refused). The app
gets the user, groups, capabilities and seccomp verdicts runc would give it.
Every command is the delegate's.

  --delegate PATH   the real runtime (default: runc, else crun; $LAUNCH_RUNTIME_DELEGATE)
  --launcher PATH   the launcher bind-mounted into traced containers (default: launch
                    next to launch-runtime; $LAUNCH_RUNTIME_LAUNCHER)
  --all             trace every container, annotation or not ($LAUNCH_RUNTIME_ALL=true)

The delegate's own help follows.
`

func main() {
	o, args, err := parseOwn(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "launch-runtime: %v\n", err)
		os.Exit(2)
	}
	delegate, err := findDelegate(o.delegate)
	if err != nil {
		if o.infoOnly {
			os.Exit(0) // --version and --help said what launch-runtime is
		}
		fmt.Fprintf(os.Stderr, "launch-runtime: %v\n", err)
		os.Exit(1)
	}
	if cmd, bundle, logFile := command(args); cmd == "create" || cmd == "run" {
		if traced, err := edit(bundle, o, func(msg string) { logLine(logFile, errors.New(msg)) }); err != nil {
			logLine(logFile, err)
		} else if traced != "" {
			args = withBundle(args, traced)
		}
	}
	err = syscall.Exec(delegate, append([]string{delegate}, args...), os.Environ())
	fmt.Fprintf(os.Stderr, "launch-runtime: exec %s: %v\n", delegate, err)
	os.Exit(1)
}

// parseOwn takes launch-runtime's flags (and LAUNCH_RUNTIME_* variables) out of args,
// wherever they stand before the subcommand.
func parseOwn(args []string) (options, []string, error) {
	o := options{delegate: os.Getenv("LAUNCH_RUNTIME_DELEGATE"), launcher: os.Getenv("LAUNCH_RUNTIME_LAUNCHER"), all: os.Getenv("LAUNCH_RUNTIME_ALL") == "true"}
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, value, hasValue := strings.Cut(a, "=")
		switch name {
		case "--delegate", "--launcher":
			if !hasValue {
				if i+1 == len(args) {
					return o, nil, fmt.Errorf("%s needs a PATH", name)
				}
				i++
				value = args[i]
			}
			if name == "--delegate" {
				o.delegate = value
			} else {
				o.launcher = value
			}
			continue
		case "--all":
			o.all = true
			if hasValue {
				all, err := strconv.ParseBool(value)
				if err != nil {
					return o, nil, fmt.Errorf("--all=%s: want true or false", value)
				}
				o.all = all
			}
			continue
		case "--version", "-v":
			fmt.Printf("launch-runtime version %s\n", version.String())
			o.infoOnly = true
		case "--help", "-h":
			fmt.Print(usage)
			o.infoOnly = true
		}
		if !strings.HasPrefix(a, "-") {
			return o, append(rest, args[i:]...), nil // the subcommand: the rest is the delegate's
		}
		rest = append(rest, a)
		if globalWithValue[a] && i+1 < len(args) {
			i++
			rest = append(rest, args[i])
		}
	}
	return o, rest, nil
}

// findDelegate is --delegate, else runc or crun from PATH or the usual directories
// (engines may call a runtime with a PATH of their own, or none).
func findDelegate(path string) (string, error) {
	if path != "" {
		return exec.LookPath(path)
	}
	for _, name := range []string{"runc", "crun"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
		for _, dir := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
			if fi, err := os.Stat(filepath.Join(dir, name)); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				return filepath.Join(dir, name), nil
			}
		}
	}
	return "", fmt.Errorf("no runtime to run in front of: neither runc nor crun on PATH or in /usr/bin, /usr/sbin (set --delegate PATH)")
}

// command finds the subcommand, its bundle (--bundle/-b, else the working directory)
// and the global --log file in a runc command line.
func command(args []string) (cmd, bundle, logFile string) {
	bundle = "."
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, value, hasValue := strings.Cut(a, "=")
		switch {
		case cmd == "" && name == "--log":
			if !hasValue && i+1 < len(args) {
				i++
				value = args[i]
			}
			logFile = value
		case cmd == "" && globalWithValue[name]:
			if !hasValue {
				i++
			}
		case cmd == "" && !strings.HasPrefix(a, "-"):
			cmd = a
		case cmd != "" && (name == "--bundle" || name == "-b"):
			if !hasValue && i+1 < len(args) {
				i++
				value = args[i]
			}
			bundle = value
		}
	}
	return cmd, bundle, logFile
}

// edit writes the config of a container that opts in, edited for tracing, to a bundle
// of its own, and returns that bundle's directory ("" for a container that does not
// opt in). The engine's config.json is left as it is.
func edit(dir string, o options, warn func(string)) (string, error) {
	launcher := o.launcher
	if launcher == "" {
		self, err := os.Executable()
		if err != nil {
			return "", err
		}
		launcher = filepath.Join(filepath.Dir(self), "launch")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("not tracing the container: %v", err)
	}
	path := filepath.Join(dir, "config.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("not tracing the container: %v", err)
	}
	out, changed, err := bundle.EditConfig(raw, bundle.Options{All: o.all, Launcher: launcher, Version: version.String(), Bundle: dir, Warn: warn})
	if err != nil {
		return "", fmt.Errorf("not tracing the container: %s: %v", path, err)
	}
	if !changed {
		return "", nil
	}
	if _, err := os.Stat(launcher); err != nil {
		return "", fmt.Errorf("not tracing the container: the launcher: %v (install launch next to launch-runtime, or --launcher PATH)", err)
	}
	traced := bundle.TracedDir(dir)
	if err := os.MkdirAll(traced, 0o700); err != nil {
		return "", fmt.Errorf("not tracing the container: %v", err)
	}
	tmp := filepath.Join(traced, "config.json.tmp")
	if err := os.WriteFile(tmp, out, 0o600); err != nil {
		return "", fmt.Errorf("not tracing the container: %v", err)
	}
	if err := os.Rename(tmp, filepath.Join(traced, "config.json")); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("not tracing the container: %v", err)
	}
	return traced, nil
}

// withBundle sets the subcommand's --bundle in a runc command line.
func withBundle(args []string, bundle string) []string {
	out := slices.Clone(args)
	sub := -1
	for i := 0; i < len(out); i++ {
		a := out[i]
		name, _, hasValue := strings.Cut(a, "=")
		switch {
		case sub < 0 && globalWithValue[name]:
			if !hasValue {
				i++
			}
		case sub < 0 && !strings.HasPrefix(a, "-"):
			sub = i
		case sub >= 0 && (name == "--bundle" || name == "-b"):
			if hasValue {
				out[i] = name + "=" + bundle
			} else if i+1 < len(out) {
				out[i+1] = bundle
			}
			return out
		}
	}
	if sub < 0 {
		return out
	}
	return slices.Insert(out, sub+1, "--bundle", bundle)
}

// logLine writes a warning where the runtime logs (runc's --log file, in its JSON
// form), else to stderr.
func logLine(file string, err error) {
	line := fmt.Sprintf("{\"level\":\"warning\",\"msg\":%q,\"time\":%q}\n", "launch-runtime: "+err.Error(), time.Now().UTC().Format(time.RFC3339Nano))
	if file != "" {
		if f, ferr := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); ferr == nil {
			f.WriteString(line)
			f.Close()
			return
		}
	}
	fmt.Fprintf(os.Stderr, "launch-runtime: warning: %v\n", err)
}
