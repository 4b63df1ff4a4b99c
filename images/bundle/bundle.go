// Package bundle edits an OCI runtime bundle's config.json for launch-runtime, the OCI
// runtime wrapper: a container that opts in starts under the launcher, bind-mounted
// from the host. It depends on nothing heavier than the runtime-spec types, so that
// the wrapper, which runs for every container an engine starts, starts fast.
package bundle

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/otel-go-launcher/otel-go-launcher/images/internal/rawconfig"
	"github.com/otel-go-launcher/otel-go-launcher/internal/capability"
	"github.com/otel-go-launcher/otel-go-launcher/internal/seccomp"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig"
)

// The edited config goes to a bundle of its own (TracedDir), whose root and relative
// mount sources point back into the engine's bundle: the engine's config.json stays
// what it wrote. Engines read it again later — podman builds a `podman exec` process
// from it — and must not find the launcher's capabilities there.

// Annotations a container opts in and configures tracing with.
const (
	AnnotationTrace     = "otel-go-launcher.github.io/trace"       // "true" opts in
	AnnotationEnvPrefix = "otel-go-launcher.github.io/env."        // env.OTEL_SERVICE_NAME=...
	annotationLaunched  = "otel-go-launcher.github.io/launched-by" // the marker: edited once
)

// LauncherPath is where the launcher is in a traced container (and in an image launch
// wrap wrapped): a directory of its own at the root, which no image uses.
const LauncherPath = "/.otel-go-launcher/launch"

// launcherCapabilities are what the launcher needs: tracing's, and NET_ADMIN for the
// socket programs.
var launcherCapabilities = append(slices.Clone(capability.Tracing), capability.NetAdmin)

// Options say how launch-runtime edits a bundle.
type Options struct {
	All      bool   // every container, annotation or not
	Launcher string // the launcher binary on the host, bind-mounted read-only
	Version  string // recorded in the marker
	// Bundle is the engine's bundle directory, absolute: the root path and relative
	// mount sources are made absolute against it, for the config to work from another
	// directory (TracedDir). Empty leaves them as they are.
	Bundle string
	// Warn is told what of the container's request was not done (an annotation
	// refused), in one line each; nil: nobody.
	Warn func(msg string)
}

// TracedDir is the bundle launch-runtime gives the real runtime for a traced
// container: a directory in the engine's bundle (removed with it) holding only the
// edited config.json.
func TracedDir(bundle string) string { return filepath.Join(bundle, "otel-go-launcher") }

// EditConfig returns config.json edited to start the container's process under
// the launcher, or changed=false and the input untouched when the container does not
// opt in or was edited before. Members the edit does not touch are kept as they are,
// those the runtime-spec types do not know included.
func EditConfig(raw []byte, o Options) (out []byte, changed bool, err error) {
	top, err := rawconfig.Object(raw, "bundle config")
	if err != nil {
		return raw, false, err
	}
	annotations := map[string]string{}
	if err := rawconfig.Optional(top, "annotations", &annotations); err != nil {
		return raw, false, err
	}
	if annotations[annotationLaunched] != "" || !(o.All || annotations[AnnotationTrace] == "true") {
		return raw, false, nil
	}
	proc := map[string]json.RawMessage{}
	if err := rawconfig.Optional(top, "process", &proc); err != nil {
		return raw, false, err
	}
	var args []string
	var user specs.User
	var caps specs.LinuxCapabilities
	var env []string
	if err := rawconfig.Optional(proc, "args", &args); err != nil {
		return raw, false, err
	}
	if len(args) == 0 {
		return raw, false, fmt.Errorf("the container has no process.args")
	}
	if err := rawconfig.Optional(proc, "user", &user); err != nil {
		return raw, false, err
	}
	if err := rawconfig.Optional(proc, "capabilities", &caps); err != nil {
		return raw, false, err
	}
	if err := rawconfig.Optional(proc, "env", &env); err != nil {
		return raw, false, err
	}

	if err := runcRange(user); err != nil {
		// runc refuses such a container; the launcher, root, would have started it.
		return raw, false, err
	}
	original, err := capabilitySets(caps)
	if err != nil {
		return raw, false, err
	}
	// Every flag that sets the app's privileges is given here, from the spec: the app
	// gets exactly what runc would have given it.
	launch := []string{LauncherPath, "--app-caps", original.String()}
	appSeccomp, err := appSeccompFlag(top)
	if err != nil {
		return raw, false, err
	}
	if appSeccomp != "" {
		launch = append(launch, "--app-seccomp", appSeccomp)
	}
	// CAP_SETPCAP lets the launcher take its capabilities out of the app's bounding set
	// (without it, it would set no_new_privs instead); CAP_SETUID and CAP_SETGID let it
	// become a non-root app's user, which runc does before it sets capabilities.
	needs := capability.SetOf(capability.SetPCap) | capability.SetOf(launcherCapabilities...)
	nonRoot := user.UID != 0 || user.GID != 0
	if nonRoot {
		needs |= capability.SetOf(capability.SetUID, capability.SetGID)
		// The launcher runs as root with the spec's additionalGids; the app as the
		// container's user with those groups, as runc gives them (not the image's
		// /etc/group): "inherit", however many there are.
		launch = append(launch, "--user", strconv.FormatUint(uint64(user.UID), 10)+":"+strconv.FormatUint(uint64(user.GID), 10), "--groups", "inherit")
		proc["user"] = rawconfig.Must(specs.User{UID: 0, GID: 0, AdditionalGids: user.AdditionalGids, Umask: user.Umask})
	}
	proc["args"] = rawconfig.Must(append(append(launch, "--"), args...))
	caps.Bounding = union(caps.Bounding, needs)
	caps.Permitted = union(caps.Permitted, needs)
	caps.Effective = union(caps.Effective, needs)
	proc["capabilities"] = rawconfig.Must(caps)
	warn := o.Warn
	if warn == nil {
		warn = func(string) {}
	}
	if env2 := annotatedEnv(slices.Clone(env), annotations, warn); !slices.Equal(env2, env) {
		proc["env"] = rawconfig.Must(env2)
		checkOTelEnv(env2, warn)
	}
	top["process"] = rawconfig.Must(proc)

	if err := allowSyscalls(top); err != nil {
		return raw, false, err
	}

	var mounts []json.RawMessage
	if err := rawconfig.Optional(top, "mounts", &mounts); err != nil {
		return raw, false, err
	}
	if o.Bundle != "" {
		if err := anchorPaths(top, mounts, o.Bundle); err != nil {
			return raw, false, err
		}
	}
	mounts = append(mounts, rawconfig.Must(specs.Mount{Destination: LauncherPath, Type: "bind", Source: o.Launcher, Options: []string{"rbind", "ro", "nosuid", "nodev"}}))
	top["mounts"] = rawconfig.Must(mounts)
	annotations[annotationLaunched] = "launch-runtime " + o.Version
	top["annotations"] = rawconfig.Must(annotations)
	out, err = json.MarshalIndent(top, "", "\t")
	return out, err == nil, err
}

// anchorPaths makes root.path and relative bind mount sources absolute against the
// bundle they were written for: the runtime reads them relative to its bundle
// directory, which is TracedDir's, not the engine's.
func anchorPaths(top map[string]json.RawMessage, mounts []json.RawMessage, bundle string) error {
	root := map[string]json.RawMessage{}
	if err := rawconfig.Optional(top, "root", &root); err != nil {
		return err
	}
	var path string
	if err := rawconfig.Optional(root, "path", &path); err != nil {
		return err
	}
	if path == "" {
		return fmt.Errorf("the bundle config has no root.path")
	}
	if !filepath.IsAbs(path) {
		root["path"] = rawconfig.Must(filepath.Join(bundle, path))
		top["root"] = rawconfig.Must(root)
	}
	for i, m := range mounts {
		mount := map[string]json.RawMessage{}
		if err := json.Unmarshal(m, &mount); err != nil {
			return fmt.Errorf("mounts[%d]: %v", i, err)
		}
		var source, typ string
		var options []string
		rawconfig.Optional(mount, "source", &source)
		rawconfig.Optional(mount, "type", &typ)
		rawconfig.Optional(mount, "options", &options)
		if bind := typ == "bind" || slices.Contains(options, "bind") || slices.Contains(options, "rbind"); bind && source != "" && !filepath.IsAbs(source) {
			mount["source"] = rawconfig.Must(filepath.Join(bundle, source))
			mounts[i] = rawconfig.Must(mount)
		}
	}
	return nil
}

// union is set with the capabilities of add it lacks, named as runtime specs name them.
func union(set []string, add capability.Set) []string {
	out := slices.Clone(set)
	for _, c := range add.Caps() {
		if !slices.Contains(out, c.String()) {
			out = append(out, c.String())
		}
	}
	return out
}

// capabilitySets reads the spec's capability lists. A name this launcher does not
// know (a newer kernel's) cannot be passed on exactly: such a container is not traced.
func capabilitySets(caps specs.LinuxCapabilities) (capability.Sets, error) {
	var s capability.Sets
	for _, l := range []struct {
		names []string
		set   *capability.Set
	}{{caps.Bounding, &s.Bounding}, {caps.Effective, &s.Effective}, {caps.Permitted, &s.Permitted}, {caps.Inheritable, &s.Inheritable}, {caps.Ambient, &s.Ambient}} {
		for _, n := range l.names {
			c, ok := capability.Parse(n)
			if !ok {
				return s, fmt.Errorf("capability %q: not one this launcher knows", n)
			}
			*l.set |= capability.SetOf(c)
		}
	}
	return s, nil
}

// maxRuncID is the largest user or group ID runc accepts.
const maxRuncID = 1<<31 - 1

// runcRange refuses the IDs runc refuses ("uids and gids must be in range
// 0-2147483647"): the container then fails as it would without the launcher.
func runcRange(u specs.User) error {
	ids := append([]uint32{u.UID, u.GID}, u.AdditionalGids...)
	for _, id := range ids {
		if id > maxRuncID {
			return fmt.Errorf("user or group ID %d: runc takes 0-%d, and the container is left to it", id, maxRuncID)
		}
	}
	return nil
}

// annotatedEnv sets the OTEL_* variables the annotations name (env.OTEL_NAME=VALUE).
// Only OpenTelemetry's settings come from annotations: a tenant writes them, and a
// name of another kind (PATH, LD_PRELOAD, LAUNCH_*) or one that would split
// ("env.PATH=/evil:/bin", a newline) is refused, said through warn.
func annotatedEnv(env []string, annotations map[string]string, warn func(string)) []string {
	var keys []string
	for k := range annotations {
		if _, ok := strings.CutPrefix(k, AnnotationEnvPrefix); ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		name := strings.TrimPrefix(k, AnnotationEnvPrefix)
		if !otelName(name) {
			warn(fmt.Sprintf("annotation %q ignored: only OTEL_* variables (letters, digits, _) are set from annotations", k))
			continue
		}
		if strings.ContainsAny(annotations[k], "\x00") {
			warn(fmt.Sprintf("annotation %q ignored: a NUL byte in its value", k))
			continue
		}
		env = rawconfig.SetEnv(env, []string{name + "=" + annotations[k]})
	}
	return env
}

// checkOTelEnv reads the container's OTEL_* settings, those the annotations set
// among them, with the launcher's own reader, and says now, in the runtime's log,
// what the launcher would replace by a default or not trace with: the tenant who
// wrote the annotations sees it where a create's problems go. The files they name are
// the container's, not looked for here.
func checkOTelEnv(env []string, warn func(string)) {
	cfg, err := otelconfig.FromList(env)
	if err != nil {
		warn("OTEL_* settings: the launcher will run the app untraced: " + strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	for _, w := range cfg.Warnings {
		warn("OTEL_* settings: " + w)
	}
}

// otelName reports whether name is an OpenTelemetry setting's name: OTEL_ and then
// letters, digits and underscores.
func otelName(name string) bool {
	rest, ok := strings.CutPrefix(name, "OTEL_")
	if !ok || rest == "" {
		return false
	}
	for _, c := range []byte(rest) {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// appSeccompFlag is the value of the launcher's --app-seccomp for the container's
// seccomp profile: its default action, architectures and flags, and its rules for the
// launcher's calls (the rest stays with the container's filter), "" without a
// profile. A profile whose verdicts for those calls the launcher cannot reproduce
// exactly is an error: such a container is not traced.
func appSeccompFlag(top map[string]json.RawMessage) (string, error) {
	linux := map[string]json.RawMessage{}
	if err := rawconfig.Optional(top, "linux", &linux); err != nil {
		return "", err
	}
	var p *specs.LinuxSeccomp
	if err := rawconfig.Optional(linux, "seccomp", &p); err != nil || p == nil {
		return "", err
	}
	own := specs.LinuxSeccomp{DefaultAction: p.DefaultAction, DefaultErrnoRet: p.DefaultErrnoRet, Architectures: p.Architectures, Flags: p.Flags}
	for _, r := range p.Syscalls {
		var names []string
		for _, n := range r.Names {
			if slices.Contains(seccomp.LauncherCalls, n) {
				names = append(names, n)
			}
		}
		if len(names) > 0 {
			r.Names = names
			own.Syscalls = append(own.Syscalls, r)
		}
	}
	if _, err := seccomp.Compile(&own); err != nil {
		return "", fmt.Errorf("the container's seccomp profile: %w", err)
	}
	out, err := json.Marshal(own)
	return string(out), err
}

// allowSyscalls lets the launcher make its calls (seccomp.LauncherCalls), which
// seccomp profiles allow only with capabilities the container was not started with
// (Docker's and podman's default profiles gate them on CAP_SYS_ADMIN, CAP_BPF,
// CAP_PERFMON): in the container's filter (runc's), the rules that name them lose
// those names and one rule allows them. Every other rule stays as written. The app
// gets the profile's own verdicts for those calls back from the filter the launcher
// adds before it starts (--app-seccomp): filters stack, and the kernel takes the most
// restrictive verdict.
func allowSyscalls(top map[string]json.RawMessage) error {
	linux := map[string]json.RawMessage{}
	if err := rawconfig.Optional(top, "linux", &linux); err != nil {
		return err
	}
	profile := map[string]json.RawMessage{}
	if err := rawconfig.Optional(linux, "seccomp", &profile); err != nil || len(profile) == 0 {
		return err
	}
	var rules []specs.LinuxSyscall
	if err := rawconfig.Optional(profile, "syscalls", &rules); err != nil {
		return err
	}
	var kept []specs.LinuxSyscall
	for _, r := range rules {
		r.Names = slices.DeleteFunc(r.Names, func(n string) bool { return slices.Contains(seccomp.LauncherCalls, n) })
		if len(r.Names) > 0 {
			kept = append(kept, r)
		}
	}
	kept = append(kept, specs.LinuxSyscall{Names: seccomp.LauncherCalls, Action: specs.ActAllow})
	profile["syscalls"] = rawconfig.Must(kept)
	linux["seccomp"] = rawconfig.Must(profile)
	top["linux"] = rawconfig.Must(linux)
	return nil
}
