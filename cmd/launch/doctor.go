package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/otel-go-launcher/otel-go-launcher/bpf"
	"github.com/otel-go-launcher/otel-go-launcher/internal/capability"
	"github.com/otel-go-launcher/otel-go-launcher/launcher"
	"github.com/otel-go-launcher/otel-go-launcher/offsets"
	"github.com/otel-go-launcher/otel-go-launcher/probes"
	"github.com/otel-go-launcher/otel-go-launcher/probes/kit"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig"
)

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:  "doctor",
		Usage: "check that this host or container can run traced apps, and say how to fix what cannot",
		Description: `doctor does here, once and on a small scale, what tracing an app does: it loads the
probes' BPF programs, attaches a uprobe and the socket programs, reads the
settings and sends the collector an empty export as the exporter would. Each line says what works or what does not and the fix. Run it in the
container, with the capabilities the launcher gets there. Exit code 1 if tracing
cannot work.`,
		Action: func(c *cli.Context) error {
			if !useOffsetsDB(c, "launch doctor") {
				return exitError{2}
			}
			slog.SetDefault(slog.New(newLineHandler(os.Stderr, slog.LevelWarn)))
			telemetry.RouteInternalLogs()
			otel, err := otelConfig(c)
			if failed := doctor(os.Stdout, otel, err); failed {
				return exitError{1}
			}
			return nil
		},
	}
}

// doctor prints the report and says whether anything needed failed. Every line is
// the result of a check.
func doctor(w io.Writer, otel otelconfig.Config, otelErr error) (failed bool) {
	var fs []kit.Finding
	add := func(status kit.Status, format string, args ...any) {
		fs = append(fs, kit.Finding{Status: status, Text: fmt.Sprintf(format, args...)})
	}
	check := func(err error, ok string, args ...any) {
		if err != nil {
			add(kit.Fail, "%v", err)
		} else {
			add(kit.OK, ok, args...)
		}
	}

	release, major, minor := bpf.KernelRelease()
	if major > bpf.MinKernel[0] || major == bpf.MinKernel[0] && minor >= bpf.MinKernel[1] {
		add(kit.OK, "kernel %s (%d.%d or later needed)", release, bpf.MinKernel[0], bpf.MinKernel[1])
	} else {
		add(kit.Fail, "kernel %s: the probes need %d.%d or later: run on a newer kernel", release, bpf.MinKernel[0], bpf.MinKernel[1])
	}

	missing, err := launcher.HasEffective(capability.Tracing...)
	switch {
	case err != nil:
		add(kit.Fail, "capabilities: %v", err)
	case len(missing) > 0:
		add(kit.Fail, "capabilities: missing %s: add cap_add: [SYS_ADMIN, BPF, PERFMON] (Compose) or securityContext.capabilities.add (Kubernetes); BPF checks skipped until then", capNames(missing))
	default:
		add(kit.OK, "capabilities: SYS_ADMIN (uprobes), BPF, PERFMON; the app runs without them")
	}

	if err == nil && len(missing) == 0 {
		check(bpf.CheckBPF(), "BPF: programs load")
		check(bpf.CheckUprobes(), "uprobes: attach and detach")
		if err := bpf.CheckRelease(); err != nil {
			add(kit.Warn, "exit: uprobes cannot be handed to the kernel to detach in the background (%v): the launcher waits for their detaching at the app's exit, 40-100 ms", err)
		} else {
			add(kit.OK, "exit: uprobes are handed to the kernel to detach in the background: the launcher exits right after the app's last export")
		}
		check(bpf.CheckRingBuffer(), "ring buffers")
		fs = append(fs, probes.CheckHost(context.Background(), probes.Options{Telemetry: otel})...)
		if mode, err := bpf.Lockdown(); err != nil {
			add(kit.Warn, "lockdown: unknown (%v); the launcher never writes to the app's memory, so any mode works", err)
		} else {
			add(kit.OK, "lockdown: %s; the launcher never writes to the app's memory", mode)
		}
	}
	check(bpf.CheckKernelBTF(), "kernel BTF at %s", bpf.KernelBTF)

	if db, err := offsets.CurrentDatabase(); err != nil {
		add(kit.Fail, "offsets database: %v", err)
	} else if std := db.Modules["std"]; std == nil || len(std.Versions) == 0 {
		add(kit.Warn, "offsets database: empty: binaries without DWARF get offsets from their type descriptors only")
	} else {
		add(kit.OK, "offsets database: %s to %s (%d Go releases), for binaries without DWARF; newer releases use the binary's own type descriptors",
			std.Versions[0], std.Versions[len(std.Versions)-1], len(std.Versions))
	}

	fs = append(fs, telemetryFindings(otel, otelErr)...)
	for _, f := range fs {
		fmt.Fprintf(w, "%-5s  %s\n", f.Status, f.Text)
		failed = failed || f.Status == kit.Fail
	}
	return failed
}

// telemetryFindings check the OTEL_* configuration and, with the OTLP exporter, that
// the collector accepts an export as the exporter will send it.
func telemetryFindings(otel otelconfig.Config, err error) []kit.Finding {
	switch {
	case err != nil:
		return []kit.Finding{{Status: kit.Fail, Text: "configuration: " + strings.ReplaceAll(err.Error(), "\n", "; ")}}
	case otel.Disabled:
		return []kit.Finding{{Status: kit.Warn, Text: "tracing off: OTEL_SDK_DISABLED=true"}}
	}
	var fs []kit.Finding
	for _, s := range otel.Settings() {
		fs = append(fs, kit.Finding{Status: kit.OK, Text: "configuration: " + s})
	}
	for _, w := range otel.Warnings {
		fs = append(fs, kit.Finding{Status: kit.Warn, Text: "configuration: " + w})
	}
	if otel.Baggage {
		fs = append(fs, baggageLimit)
	}
	return append(append(fs, traceExportFinding(otel)), metricsFinding(otel.Metrics))
}

// baggageLimit: the kernel inserts a traceparent (and the incoming tracestate) into
// outgoing requests, but no baggage: it would have to keep each request's baggage (up
// to 8 KiB by the W3C's limits) for every call the handler makes.
var baggageLimit = kit.Finding{Status: kit.Limit, Text: "baggage: OTEL_PROPAGATORS has baggage (the default), but the launcher does not carry W3C baggage from incoming requests into outgoing ones; a baggage header the app writes itself passes as written"}

// traceExportFinding says where spans go and, with the OTLP exporter, whether the
// collector accepts an export.
func traceExportFinding(otel otelconfig.Config) kit.Finding {
	if len(otel.Exporters) == 0 {
		return kit.Finding{Status: kit.Warn, Text: "no exporter (OTEL_TRACES_EXPORTER=none): spans are made and dropped"}
	}
	if !slices.Contains(otel.Exporters, "otlp") {
		return kit.Finding{Status: kit.OK, Text: "exporters: " + strings.Join(otel.Exporters, ", ")}
	}
	if err := telemetry.CheckExport(context.Background(), otel.OTLP); err != nil {
		return kit.Finding{Status: kit.Warn, Text: fmt.Sprintf("OTLP endpoint %s: an export failed: %v: spans are dropped until a collector accepts them there (OTEL_EXPORTER_OTLP_ENDPOINT, _PROTOCOL, _CERTIFICATE, _HEADERS)", otel.OTLP, err)}
	}
	return kit.Finding{Status: kit.OK, Text: fmt.Sprintf("OTLP endpoint %s accepts exports", otel.OTLP)}
}

// metricsFinding says where the request metrics go, and how often.
func metricsFinding(m otelconfig.Metrics) kit.Finding {
	if m.Off != "" {
		return kit.Finding{Status: kit.Warn, Text: "metrics off: " + m.Off}
	}
	if len(m.Exporters) == 0 {
		return kit.Finding{Status: kit.OK, Text: "metrics off (OTEL_METRICS_EXPORTER=none)"}
	}
	to := strings.Join(m.Exporters, ", ")
	if !slices.Contains(m.Exporters, "otlp") {
		return kit.Finding{Status: kit.OK, Text: fmt.Sprintf("metrics: request durations every %s (%s) to %s", m.Interval, m.Temporality, to)}
	}
	to = strings.Replace(to, "otlp", "otlp "+m.OTLP.String(), 1)
	if err := telemetry.CheckMetricsExport(context.Background(), m); err != nil {
		return kit.Finding{Status: kit.Warn, Text: fmt.Sprintf("metrics: request durations every %s (%s) to %s: an export failed: %v: metrics are dropped until a collector accepts them there (OTEL_EXPORTER_OTLP_[METRICS_]ENDPOINT, _PROTOCOL, _CERTIFICATE, _HEADERS)", m.Interval, m.Temporality, to, err)}
	}
	return kit.Finding{Status: kit.OK, Text: fmt.Sprintf("metrics: request durations every %s (%s) to %s, which accepts exports", m.Interval, m.Temporality, to)}
}

func capNames(caps []capability.Cap) string {
	names := make([]string, len(caps))
	for i, c := range caps {
		names[i] = c.String()
	}
	return strings.Join(names, ", ")
}
