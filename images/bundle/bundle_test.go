package bundle_test

import (
	"encoding/json"
	"os"
	"reflect"
	"strconv"
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
	if want := []string{"/.otel-go-launcher/launch", "--app-caps", "bounding=CHOWN,NET_ADMIN;effective=CHOWN;permitted=CHOWN;inheritable=;ambient=",
		"--app-seccomp", `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["bpf"],"action":"SCMP_ACT_ALLOW"},{"names":["perf_event_open"],"action":"SCMP_ACT_ERRNO"}]}`,
		"--user", "1000:1000", "--groups", "inherit", "--", "/app", "-addr", ":8080"}; !reflect.DeepEqual(p.Args, want) {
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
	// The app's sets are the spec's, whatever the launcher needs; a root container's
	// app runs as the launcher's user, whose groups runc set from the spec.
	given := strings.Replace(string(in), `"bounding": ["CAP_CHOWN", "CAP_NET_ADMIN"]`, `"bounding": ["CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"]`, 1)
	asRoot := strings.Replace(string(in), `"uid": 1000, "gid": 1000`, `"uid": 0, "gid": 0`, 1)
	for config, want := range map[string]string{
		given:  "/.otel-go-launcher/launch --app-caps bounding=SETGID,SETUID,SETPCAP;effective=CHOWN;permitted=CHOWN;inheritable=;ambient= --app-seccomp",
		asRoot: "/.otel-go-launcher/launch --app-caps bounding=CHOWN,NET_ADMIN;effective=CHOWN;permitted=CHOWN;inheritable=;ambient= --app-seccomp {",
	} {
		out, _, err := bundle.EditConfig([]byte(config), opts)
		got.Process.Args = nil
		if err == nil {
			err = json.Unmarshal(out, &got)
		}
		if args := strings.Join(got.Process.Args, " "); err != nil || !strings.HasPrefix(args, want) || (config == asRoot) == strings.Contains(args, "--user") {
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

// A tenant's annotations set OTEL_* variables and nothing else: other names, and keys
// that would split into another variable (env.PATH=/evil:/bin once gave
// PATH=/evil:/bin=z), are refused one line each. The fixture is the hostile set.
func TestHostileAnnotations(t *testing.T) {
	annotations, err := os.ReadFile("testdata/hostile-annotations.json")
	if err != nil {
		t.Fatal(err)
	}
	config := strings.Replace(bundleConfig, "{%s}", string(annotations), 1)
	var warnings []string
	out, changed, err := bundle.EditConfig([]byte(config), bundle.Options{Launcher: "/l", Warn: func(m string) { warnings = append(warnings, m) }})
	if err != nil || !changed {
		t.Fatalf("changed %v, err %v", changed, err)
	}
	var got struct{ Process struct{ Env []string } }
	json.Unmarshal(out, &got)
	want := []string{"PATH=/usr/bin", "OTEL_SERVICE_NAME=svc", "OTEL_RESOURCE_ATTRIBUTES=a=b,c=d\nsecond line"}
	if !reflect.DeepEqual(got.Process.Env, want) {
		t.Errorf("env %q, want %q", got.Process.Env, want)
	}
	if len(warnings) != 10 {
		t.Errorf("%d warnings, want one for each of the 10 refused annotations:\n%s", len(warnings), strings.Join(warnings, "\n"))
	}
	for _, w := range warnings {
		if strings.Contains(w, "\n") || !strings.Contains(w, "ignored") {
			t.Errorf("warning %q: want one line saying the annotation was ignored", w)
		}
	}
}

// What runc would refuse, or what the launcher cannot give the app exactly, is left
// to runc as the engine wrote it: no edit, and why.
func TestNotTraced(t *testing.T) {
	in := strings.Replace(bundleConfig, "%s", `"otel-go-launcher.github.io/trace": "true"`, 1)
	for name, c := range map[string]struct{ old, new, why string }{
		"uid 4294967294":                {`"uid": 1000`, `"uid": 4294967294`, "runc takes 0-2147483647"},
		"gid 2147483648":                {`"gid": 1000`, `"gid": 2147483648`, "runc takes 0-2147483647"},
		"an additional gid past runc's": {`"additionalGids": [1000, 5]`, `"additionalGids": [1000, 4294967294]`, "runc takes 0-2147483647"},
		"an unknown capability":         {`"CAP_CHOWN", "CAP_NET_ADMIN"`, `"CAP_CHOWN", "CAP_FROM_THE_FUTURE"`, "CAP_FROM_THE_FUTURE"},
		"a notify action":               {`"action": "SCMP_ACT_ERRNO"}`, `"action": "SCMP_ACT_NOTIFY"}`, "not reproducible"},
	} {
		config := strings.Replace(in, c.old, c.new, 1)
		if config == in {
			t.Fatalf("%s: the fixture has no %q", name, c.old)
		}
		out, changed, err := bundle.EditConfig([]byte(config), bundle.Options{Launcher: "/l"})
		if changed || string(out) != config || err == nil || !strings.Contains(err.Error(), c.why) {
			t.Errorf("%s: changed %v, err %v; want the config untouched and an error saying %q", name, changed, err, c.why)
		}
	}
}

// Tens of thousands of supplementary groups reach the app through the launcher's own
// (runc sets them), not its arguments, which could not hold them (~18,000 once gave
// "argument list too long").
func TestManyGroups(t *testing.T) {
	gids := make([]string, 20000)
	for i := range gids {
		gids[i] = strconv.Itoa(100000 + i)
	}
	config := strings.Replace(strings.Replace(bundleConfig, "%s", `"otel-go-launcher.github.io/trace": "true"`, 1), `[1000, 5]`, "["+strings.Join(gids, ",")+"]", 1)
	out, changed, err := bundle.EditConfig([]byte(config), bundle.Options{Launcher: "/l"})
	if err != nil || !changed {
		t.Fatal(changed, err)
	}
	var got struct {
		Process struct {
			Args []string
			User struct{ AdditionalGids []uint32 }
		}
	}
	json.Unmarshal(out, &got)
	size := 0
	for _, a := range got.Process.Args {
		size += len(a)
	}
	if size > 4096 || !strings.Contains(strings.Join(got.Process.Args, " "), "--groups inherit") || len(got.Process.User.AdditionalGids) != 20000 {
		t.Errorf("arguments of %d bytes, %d groups for the launcher; want --groups inherit and the launcher holding all 20000", size, len(got.Process.User.AdditionalGids))
	}
}

// The OTEL_* settings annotations give are read by the launcher's own reader at
// create: what it would replace by a default, or not trace with, is said in the
// runtime's log, one line each.
func TestAnnotatedSettingsChecked(t *testing.T) {
	for _, c := range []struct{ annotations, want string }{
		{`"otel-go-launcher.github.io/env.OTEL_TRACES_EXPORTER": "zipkin"`, "OTEL_* settings: OTEL_TRACES_EXPORTER=zipkin: zipkin not an exporter the launcher has"},
		{`"otel-go-launcher.github.io/env.OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://collector:4317"`, "OTEL_* settings: the launcher will run the app untraced: OTEL_EXPORTER_OTLP_ENDPOINT=ftp://collector:4317"},
		// The certificate is the container's file, not this host's.
		{`"otel-go-launcher.github.io/env.OTEL_EXPORTER_OTLP_CERTIFICATE": "/etc/ca.pem"`, ""},
	} {
		config := strings.Replace(bundleConfig, "%s", `"otel-go-launcher.github.io/trace": "true", `+c.annotations, 1)
		var warnings []string
		if _, _, err := bundle.EditConfig([]byte(config), bundle.Options{Launcher: "/l", Warn: func(m string) { warnings = append(warnings, m) }}); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(warnings, "\n"); c.want == "" && got != "" || !strings.Contains(got, c.want) {
			t.Errorf("%s: warnings %q, want %q", c.annotations, got, c.want)
		}
	}
}
