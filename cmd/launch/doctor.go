package main

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/otel-go-launcher/otel-go-launcher/bpf"
	"github.com/otel-go-launcher/otel-go-launcher/launcher"
	"github.com/otel-go-launcher/otel-go-launcher/offsets"
	"github.com/otel-go-launcher/otel-go-launcher/probes"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:  "doctor",
		Usage: "check that this host or container can run traced apps, and say how to fix what cannot",
		Description: `doctor does here, once and on a small scale, what tracing an app does: it loads the
probes' BPF programs, attaches a uprobe and the socket programs, and reads the
settings. Each line says what works or what does not and the fix. Run it in the
container, with the capabilities the launcher gets there. Exit code 1 if tracing
cannot work.`,
		Action: func(c *cli.Context) error {
			if !useOffsetsDB(c, "launch doctor") {
				return exitError{2}
			}
			if failed := doctor(os.Stdout); failed {
				return exitError{1}
			}
			return nil
		},
	}
}

// finding is one line of the report.
type finding struct {
	status string // ok, FAIL, warn, limit
	what   string
}

// doctor prints the report and says whether anything needed failed.
func doctor(w io.Writer) (failed bool) {
	var fs []finding
	add := func(status, format string, args ...any) {
		fs = append(fs, finding{status, fmt.Sprintf(format, args...)})
		failed = failed || status == "FAIL"
	}
	check := func(err error, ok string, args ...any) {
		if err != nil {
			add("FAIL", "%v", err)
		} else {
			add("ok", ok, args...)
		}
	}

	release, major, minor := bpf.KernelRelease()
	if major > bpf.MinKernel[0] || major == bpf.MinKernel[0] && minor >= bpf.MinKernel[1] {
		add("ok", "kernel %s (%d.%d or later needed)", release, bpf.MinKernel[0], bpf.MinKernel[1])
	} else {
		add("FAIL", "kernel %s: the probes need %d.%d or later: run on a newer kernel", release, bpf.MinKernel[0], bpf.MinKernel[1])
	}

	missing, err := launcher.HasEffective(launcher.CapSysAdmin, launcher.CapBPF, launcher.CapPerfmon)
	switch {
	case err != nil:
		add("FAIL", "capabilities: %v", err)
	case len(missing) > 0:
		add("FAIL", "capabilities: missing %s: add cap_add: [SYS_ADMIN, BPF, PERFMON] (Compose) or securityContext.capabilities.add (Kubernetes); BPF checks skipped until then", capNames(missing))
	default:
		add("ok", "capabilities: SYS_ADMIN (uprobes), BPF, PERFMON; the app runs without them")
	}
	if missing, err := launcher.HasEffective(launcher.CapNetAdmin); err == nil && len(missing) > 0 {
		add("ok", "capabilities: no NET_ADMIN; SYS_ADMIN covers the socket programs on this kernel (add NET_ADMIN if an LSM asks for it)")
	}

	privileged := err == nil && len(missing) == 0
	if privileged {
		bpfChecks(add, check)
	}
	check(bpf.CheckKernelBTF(), "kernel BTF at %s", bpf.KernelBTF)
	add("limit", "outgoing traceparent goes on plain HTTP/1 requests only: HTTPS is encrypted before the kernel sees it, and HTTP/2 is not handled; those calls get client spans, and the next service starts a new trace")

	if db, err := offsets.CurrentDatabase(); err != nil {
		add("FAIL", "offsets database: %v", err)
	} else if std := db.Modules["std"]; std == nil || len(std.Versions) == 0 {
		add("warn", "offsets database: empty: binaries without DWARF get offsets from their type descriptors only")
	} else {
		add("ok", "offsets database: %s to %s (%d Go releases), for binaries without DWARF; newer releases use the binary's own type descriptors",
			std.Versions[0], std.Versions[len(std.Versions)-1], len(std.Versions))
	}

	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_MEMLOCK, &rl) == nil {
		add("ok", "memlock: %s; kernels since 5.11 charge BPF memory to the cgroup, not to this limit", limitString(rl.Cur))
	}

	if err := telemetry.CheckEnv(); err != nil {
		if err == telemetry.ErrDisabled {
			add("warn", "tracing off: OTEL_SDK_DISABLED=true")
		} else {
			add("FAIL", "configuration: %v", err)
		}
	} else {
		status, what := endpointStatus()
		add(status, "%s", what)
	}

	for _, f := range fs {
		fmt.Fprintf(w, "%-5s  %s\n", f.status, f.what)
	}
	return failed
}

// bpfChecks load and attach: they need the launcher's capabilities.
func bpfChecks(add func(status, format string, args ...any), check func(err error, ok string, args ...any)) {
	check(bpf.CheckBPF(), "BPF: programs load")
	check(bpf.CheckUprobes(), "uprobes: attach and detach")
	check(bpf.CheckRingBuffer(), "ring buffers")
	for _, c := range probes.CheckHost() {
		names := strings.Join(c.Probes, ", ")
		check(c.Load, "probes %s: %d programs verified", names, c.Programs)
		switch {
		case c.Sockets != nil && c.Cgroup != "":
			add("FAIL", "outgoing traceparent: cgroup %s: %v: client spans are still made", c.Cgroup, c.Sockets)
		case c.Sockets != nil:
			add("FAIL", "outgoing traceparent: %v: client spans are still made", c.Sockets)
		case c.Cgroup != "":
			add("ok", "outgoing traceparent: socket programs attach to cgroup v2 %s", c.Cgroup)
		}
	}
	add("ok", "lockdown: %s; the launcher never writes to the app's memory", bpf.Lockdown())
}

// endpointStatus says whether the OTLP endpoint accepts connections.
func endpointStatus() (status, what string) {
	endpoint := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if endpoint == "" {
		endpoint = os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	if endpoint == "" {
		endpoint = "http://localhost:4317"
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return "FAIL", fmt.Sprintf("OTLP endpoint %q: not a URL: set OTEL_EXPORTER_OTLP_ENDPOINT=http://HOST:PORT", endpoint)
	}
	host := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	c, err := net.DialTimeout("tcp", host, 2*time.Second)
	if err != nil {
		return "warn", fmt.Sprintf("OTLP endpoint %s: %v: spans will be dropped until a collector listens there (set OTEL_EXPORTER_OTLP_ENDPOINT)", endpoint, err)
	}
	c.Close()
	return "ok", "OTLP endpoint " + endpoint + " accepts connections"
}

func capNames(caps []launcher.Capability) string {
	names := make([]string, len(caps))
	for i, c := range caps {
		names[i] = c.String()
	}
	return strings.Join(names, ", ")
}

func limitString(v uint64) string {
	if v == unix.RLIM_INFINITY {
		return "unlimited"
	}
	return fmt.Sprintf("%d KiB", v/1024)
}
