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

// launcherCapabilities are what the launcher needs (and drops for the app unless the
// container gave them to it).
var launcherCapabilities = []string{"CAP_SYS_ADMIN", "CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"}

// droppedForApp are the capabilities the launcher takes from the app by default
// (launcher.LauncherCapabilities): those the container had are given back with
// --keep-caps, so that the app ends with the sets the spec gave it.
var droppedForApp = []string{"CAP_SYS_ADMIN", "CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_RESOURCE"}

// Options say how launch-runtime edits a bundle.
type Options struct {
	All      bool   // every container, annotation or not
	Launcher string // the launcher binary on the host, bind-mounted read-only
	Version  string // recorded in the marker
	// Bundle is the engine's bundle directory, absolute: the root path and relative
	// mount sources are made absolute against it, for the config to work from another
	// directory (TracedDir). Empty leaves them as they are.
	Bundle string
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

	launch := []string{LauncherPath}
	if keep := kept(caps.Bounding); len(keep) > 0 {
		launch = append(launch, "--keep-caps", strings.Join(keep, ","))
	}
	// CAP_SETPCAP lets the launcher take its capabilities out of the app's bounding set
	// (without it, it would set no_new_privs instead); CAP_SETUID and CAP_SETGID let it
	// become a non-root app's user, which runc does before it lowers capabilities. Those
	// the container was not given, the app does not get.
	needs := append([]string{"CAP_SETPCAP"}, launcherCapabilities...)
	nonRoot := user.UID != 0 || user.GID != 0
	if nonRoot {
		needs = append(needs, "CAP_SETUID", "CAP_SETGID")
	}
	var drop []string
	for _, c := range needs {
		if !slices.Contains(caps.Bounding, c) && !slices.Contains(droppedForApp, c) {
			drop = append(drop, strings.TrimPrefix(c, "CAP_"))
		}
	}
	if len(drop) > 0 {
		launch = append(launch, "--drop-caps", strings.Join(drop, ","))
	}
	if nonRoot {
		// The launcher runs as root; the app as the container's user.
		// The app gets exactly the spec's additionalGids, as runc gives them, not the
		// user's groups in the image's /etc/group.
		gids := make([]string, len(user.AdditionalGids))
		for i, g := range user.AdditionalGids {
			gids[i] = strconv.FormatUint(uint64(g), 10)
		}
		launch = append(launch, "--user", strconv.FormatUint(uint64(user.UID), 10)+":"+strconv.FormatUint(uint64(user.GID), 10), "--groups="+strings.Join(gids, ","))
		proc["user"] = rawconfig.Must(specs.User{UID: 0, GID: 0, AdditionalGids: user.AdditionalGids, Umask: user.Umask})
	}
	proc["args"] = rawconfig.Must(append(append(launch, "--"), args...))
	caps.Bounding = union(caps.Bounding, needs)
	caps.Permitted = union(caps.Permitted, needs)
	caps.Effective = union(caps.Effective, needs)
	proc["capabilities"] = rawconfig.Must(caps)
	var keys []string
	for k := range annotations {
		if name, ok := strings.CutPrefix(k, AnnotationEnvPrefix); ok && name != "" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = rawconfig.SetEnv(env, []string{strings.TrimPrefix(k, AnnotationEnvPrefix) + "=" + annotations[k]})
	}
	if len(keys) > 0 {
		proc["env"] = rawconfig.Must(env)
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

// kept are the capabilities the launcher would take from the app but the container
// gave it, as --keep-caps names them.
func kept(bounding []string) []string {
	var keep []string
	for _, c := range droppedForApp {
		if slices.Contains(bounding, c) {
			keep = append(keep, strings.TrimPrefix(c, "CAP_"))
		}
	}
	return keep
}

func union(set, add []string) []string {
	out := slices.Clone(set)
	for _, c := range add {
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// launcherSyscalls are what the launcher calls that seccomp profiles allow only with
// capabilities the container was not started with (Docker's and podman's default
// profiles gate them on CAP_SYS_ADMIN, CAP_BPF, CAP_PERFMON): the profile was made
// before the capabilities were added here. The app runs under the same filter; the
// capabilities it lacks still refuse it these calls.
var launcherSyscalls = []string{"bpf", "perf_event_open", "mount", "umount2"}

// allowSyscalls adds a rule allowing launcherSyscalls to the container's seccomp
// filter, if it has one, in place of any rule that named them.
func allowSyscalls(top map[string]json.RawMessage) error {
	linux := map[string]json.RawMessage{}
	if err := rawconfig.Optional(top, "linux", &linux); err != nil {
		return err
	}
	seccomp := map[string]json.RawMessage{}
	if err := rawconfig.Optional(linux, "seccomp", &seccomp); err != nil || len(seccomp) == 0 {
		return err
	}
	var rules []specs.LinuxSyscall
	if err := rawconfig.Optional(seccomp, "syscalls", &rules); err != nil {
		return err
	}
	var kept []specs.LinuxSyscall
	for _, r := range rules {
		r.Names = slices.DeleteFunc(r.Names, func(n string) bool { return slices.Contains(launcherSyscalls, n) })
		if len(r.Names) > 0 {
			kept = append(kept, r)
		}
	}
	kept = append(kept, specs.LinuxSyscall{Names: launcherSyscalls, Action: specs.ActAllow})
	seccomp["syscalls"] = rawconfig.Must(kept)
	linux["seccomp"] = rawconfig.Must(seccomp)
	top["linux"] = rawconfig.Must(linux)
	return nil
}
