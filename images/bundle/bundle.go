package images

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The OCI runtime wrapper's edit of a container bundle's config.json (launch-runtime):
// a container that opts in starts under the launcher, bind-mounted from the host.

// Annotations a container opts in and configures tracing with.
const (
	AnnotationTrace     = "otel-go-launcher.github.io/trace"       // "true" opts in
	AnnotationEnvPrefix = "otel-go-launcher.github.io/env."        // env.OTEL_SERVICE_NAME=...
	annotationLaunched  = "otel-go-launcher.github.io/launched-by" // the marker: edited once
)

// BundleLauncherPath is where the launcher is mounted in a traced container.
const BundleLauncherPath = LauncherPath

// launcherCapabilities are what the launcher needs (and drops for the app unless the
// container gave them to it).
var launcherCapabilities = []string{"CAP_SYS_ADMIN", "CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"}

// droppedForApp are the capabilities the launcher takes from the app by default
// (launcher.LauncherCapabilities): those the container had are given back with
// --keep-caps, so that the app ends with the sets the spec gave it.
var droppedForApp = []string{"CAP_SYS_ADMIN", "CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_RESOURCE"}

// BundleOptions say how launch-runtime edits a bundle.
type BundleOptions struct {
	All      bool   // every container, annotation or not
	Launcher string // the launcher binary on the host, bind-mounted read-only
	Version  string // recorded in the marker
}

// EditBundleConfig returns config.json edited to start the container's process under
// the launcher, or changed=false and the input untouched when the container does not
// opt in or was edited before. Members the edit does not touch are kept as they are,
// those the runtime-spec types do not know included.
func EditBundleConfig(raw []byte, o BundleOptions) (out []byte, changed bool, err error) {
	top, err := decodeObject(raw, "bundle config")
	if err != nil {
		return raw, false, err
	}
	annotations := map[string]string{}
	if err := decodeOptional(top, "annotations", &annotations); err != nil {
		return raw, false, err
	}
	if annotations[annotationLaunched] != "" || !(o.All || annotations[AnnotationTrace] == "true") {
		return raw, false, nil
	}
	proc := map[string]json.RawMessage{}
	if err := decodeOptional(top, "process", &proc); err != nil {
		return raw, false, err
	}
	var args []string
	var user specs.User
	var caps specs.LinuxCapabilities
	var env []string
	if err := decodeOptional(proc, "args", &args); err != nil {
		return raw, false, err
	}
	if len(args) == 0 {
		return raw, false, fmt.Errorf("the container has no process.args")
	}
	if err := decodeOptional(proc, "user", &user); err != nil {
		return raw, false, err
	}
	if err := decodeOptional(proc, "capabilities", &caps); err != nil {
		return raw, false, err
	}
	if err := decodeOptional(proc, "env", &env); err != nil {
		return raw, false, err
	}

	launch := []string{BundleLauncherPath}
	if keep := kept(caps.Bounding); len(keep) > 0 {
		launch = append(launch, "--keep-caps", strings.Join(keep, ","))
	}
	if user.UID != 0 || user.GID != 0 {
		// The launcher runs as root; the app as the container's user.
		launch = append(launch, "--user", strconv.FormatUint(uint64(user.UID), 10)+":"+strconv.FormatUint(uint64(user.GID), 10))
		proc["user"] = mustJSON(specs.User{UID: 0, GID: 0, AdditionalGids: user.AdditionalGids, Umask: user.Umask})
	}
	proc["args"] = mustJSON(append(append(launch, "--"), args...))
	caps.Bounding = union(caps.Bounding, launcherCapabilities)
	caps.Permitted = union(caps.Permitted, launcherCapabilities)
	caps.Effective = union(caps.Effective, launcherCapabilities)
	proc["capabilities"] = mustJSON(caps)
	var keys []string
	for k := range annotations {
		if name, ok := strings.CutPrefix(k, AnnotationEnvPrefix); ok && name != "" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = setEnv(env, []string{strings.TrimPrefix(k, AnnotationEnvPrefix) + "=" + annotations[k]})
	}
	if len(keys) > 0 {
		proc["env"] = mustJSON(env)
	}
	top["process"] = mustJSON(proc)

	if err := allowSyscalls(top); err != nil {
		return raw, false, err
	}

	var mounts []json.RawMessage
	if err := decodeOptional(top, "mounts", &mounts); err != nil {
		return raw, false, err
	}
	mounts = append(mounts, mustJSON(specs.Mount{Destination: BundleLauncherPath, Type: "bind", Source: o.Launcher, Options: []string{"rbind", "ro", "nosuid", "nodev"}}))
	top["mounts"] = mustJSON(mounts)
	annotations[annotationLaunched] = "launch-runtime " + o.Version
	top["annotations"] = mustJSON(annotations)
	out, err = json.MarshalIndent(top, "", "\t")
	return out, err == nil, err
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
	if err := decodeOptional(top, "linux", &linux); err != nil {
		return err
	}
	seccomp := map[string]json.RawMessage{}
	if err := decodeOptional(linux, "seccomp", &seccomp); err != nil || len(seccomp) == 0 {
		return err
	}
	var rules []specs.LinuxSyscall
	if err := decodeOptional(seccomp, "syscalls", &rules); err != nil {
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
	seccomp["syscalls"] = mustJSON(kept)
	linux["seccomp"] = mustJSON(seccomp)
	top["linux"] = mustJSON(linux)
	return nil
}
