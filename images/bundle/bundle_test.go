package bundle_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/otel-go-launcher/otel-go-launcher/images/bundle"
)

const bundleConfig = `{
	"ociVersion": "1.0.2",
	"process": {
		"user": {"uid": 1000, "gid": 1000, "additionalGids": [1000, 5]},
		"args": ["/app", "-addr", ":8080"],
		"env": ["PATH=/usr/bin", "OTEL_SERVICE_NAME=old"],
		"cwd": "/",
		"capabilities": {"bounding": ["CAP_CHOWN", "CAP_NET_ADMIN"], "effective": ["CAP_CHOWN"], "permitted": ["CAP_CHOWN"]},
		"vendorField": {"kept": true}
	},
	"root": {"path": "rootfs"},
	"mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
		{"destination": "/data", "type": "bind", "source": "data", "options": ["rbind"]},
		{"destination": "/etc/hosts", "type": "none", "source": "/run/hosts", "options": ["bind"]}],
	"annotations": {%s},
	"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
		{"names": ["read", "bpf"], "action": "SCMP_ACT_ALLOW", "args": []},
		{"names": ["perf_event_open"], "action": "SCMP_ACT_ERRNO"}
	]}, "namespaces": [{"type": "pid"}]}
}`

func TestEditConfig(t *testing.T) {
	opts := bundle.Options{Launcher: "/usr/local/bin/launch", Version: "v1"}
	// Not opted in: untouched, byte for byte.
	plain := []byte(strings.Replace(bundleConfig, "%s", `"other": "x"`, 1))
	out, changed, err := bundle.EditConfig(plain, opts)
	if err != nil || changed || string(out) != string(plain) {
		t.Fatalf("a container that does not opt in: changed %v, err %v", changed, err)
	}

	in := []byte(strings.Replace(bundleConfig, "%s", `"otel-go-launcher.github.io/trace": "true", "otel-go-launcher.github.io/env.OTEL_SERVICE_NAME": "svc"`, 1))
	out, changed, err = bundle.EditConfig(in, opts)
	if err != nil || !changed {
		t.Fatalf("opted in: changed %v, err %v", changed, err)
	}
	var got struct {
		Process struct {
			User         map[string]any
			Args, Env    []string
			Capabilities map[string][]string
			VendorField  map[string]bool `json:"vendorField"`
		}
		Root        map[string]string
		Mounts      []map[string]any
		Annotations map[string]string
		Linux       struct {
			Seccomp struct {
				Syscalls []struct {
					Names  []string
					Action string
				}
			}
			Namespaces []map[string]string
		}
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	p := got.Process
	if want := []string{"/.otel-go-launcher/launch", "--keep-caps", "NET_ADMIN", "--drop-caps", "SETPCAP,SETUID,SETGID", "--user", "1000:1000", "--groups=1000,5", "--", "/app", "-addr", ":8080"}; !reflect.DeepEqual(p.Args, want) {
		t.Errorf("args %q, want %q", p.Args, want)
	}
	if p.User["uid"] != float64(0) || p.User["gid"] != float64(0) {
		t.Errorf("user %v, want root for the launcher", p.User)
	}
	for _, set := range []string{"bounding", "effective", "permitted"} {
		for _, c := range []string{"CAP_SYS_ADMIN", "CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_CHOWN", "CAP_SETPCAP", "CAP_SETUID", "CAP_SETGID"} {
			if !contains(p.Capabilities[set], c) {
				t.Errorf("%s capabilities %v lack %s", set, p.Capabilities[set], c)
			}
		}
	}
	if want := []string{"PATH=/usr/bin", "OTEL_SERVICE_NAME=svc"}; !reflect.DeepEqual(p.Env, want) {
		t.Errorf("env %q, want %q", p.Env, want)
	}
	if !p.VendorField["kept"] || got.Root["path"] != "rootfs" || len(got.Linux.Namespaces) != 1 {
		t.Errorf("members the edit does not know were lost:\n%s", out)
	}
	last := got.Mounts[len(got.Mounts)-1]
	if last["destination"] != "/.otel-go-launcher/launch" || last["source"] != "/usr/local/bin/launch" || last["type"] != "bind" {
		t.Errorf("launcher mount %v", last)
	}
	rules := got.Linux.Seccomp.Syscalls
	if len(rules) != 2 || !reflect.DeepEqual(rules[0].Names, []string{"read"}) || rules[1].Action != "SCMP_ACT_ALLOW" || !contains(rules[1].Names, "bpf") || !contains(rules[1].Names, "perf_event_open") {
		t.Errorf("seccomp rules %+v", rules)
	}

	// A second pass changes nothing.
	again, changed, err := bundle.EditConfig(out, opts)
	if err != nil || changed || string(again) != string(out) {
		t.Errorf("second pass: changed %v, err %v", changed, err)
	}
	// Capabilities the container was given are not dropped; a root container's
	// launcher needs no CAP_SETUID or CAP_SETGID.
	given := strings.Replace(string(in), `"bounding": ["CAP_CHOWN", "CAP_NET_ADMIN"]`, `"bounding": ["CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"]`, 1)
	asRoot := strings.Replace(string(in), `"uid": 1000, "gid": 1000`, `"uid": 0, "gid": 0`, 1)
	for config, want := range map[string]string{given: "/.otel-go-launcher/launch --user 1000:1000 --groups=1000,5 -- /app", asRoot: "/.otel-go-launcher/launch --keep-caps NET_ADMIN --drop-caps SETPCAP -- /app"} {
		out, _, err := bundle.EditConfig([]byte(config), opts)
		got.Process.Args = nil
		if err == nil {
			err = json.Unmarshal(out, &got)
		}
		if args := strings.Join(got.Process.Args, " "); err != nil || !strings.HasPrefix(args, want) {
			t.Errorf("args %q (%v), want %q ...", args, err, want)
		}
	}
	// From another directory: the root and relative bind sources point back into the
	// engine's bundle; what is absolute or not a bind stays.
	opts.Bundle = "/run/bundle"
	if out, _, err = bundle.EditConfig(in, opts); err != nil {
		t.Fatal(err)
	}
	got.Mounts = nil
	json.Unmarshal(out, &got)
	if got.Root["path"] != "/run/bundle/rootfs" || got.Mounts[0]["source"] != "proc" || got.Mounts[1]["source"] != "/run/bundle/data" || got.Mounts[2]["source"] != "/run/hosts" {
		t.Errorf("anchored at the bundle: root %v, mounts %v", got.Root, got.Mounts)
	}
	if bundle.TracedDir("/run/bundle") != "/run/bundle/otel-go-launcher" {
		t.Errorf("TracedDir: %s", bundle.TracedDir("/run/bundle"))
	}
	// --all without the annotation.
	if _, changed, _ := bundle.EditConfig(plain, bundle.Options{All: true, Launcher: "/l"}); !changed {
		t.Error("--all did not edit a container without the annotation")
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
