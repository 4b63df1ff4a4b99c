package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	"go.opentelemetry.io/otel"
	"google.golang.org/grpc/grpclog"
)

// RouteInternalLogs sends the OTel SDK's and gRPC's own log lines through the
// launcher's logger (slog.Default), so that they come out in its format, at its level:
// their errors as warnings, everything else as debug lines. Call it once the logger is
// set up and before anything uses gRPC: gRPC's logger may not change while gRPC runs.
var RouteInternalLogs = sync.OnceFunc(func() {
	otel.SetLogger(logr.New(sdkSink{}))
	grpclog.SetLoggerV2(grpcLogger{})
})

// sdkSink is a logr sink for the OTel SDK's internal logger.
type sdkSink struct{ values string }

func (sdkSink) Init(logr.RuntimeInfo) {}

func (sdkSink) Enabled(int) bool {
	return slog.Default().Enabled(context.Background(), slog.LevelDebug)
}

func (s sdkSink) Info(_ int, msg string, kv ...any) {
	slog.Debug("OpenTelemetry SDK: " + msg + s.values + pairs(kv))
}

func (s sdkSink) Error(err error, msg string, kv ...any) {
	line := fmt.Sprintf("OpenTelemetry SDK: %s: %v%s%s", msg, err, s.values, pairs(kv))
	if envReading[msg] {
		slog.Debug(line + " (the launcher's own reading of the variable said it; the exporter is given its setting)")
		return
	}
	slog.Warn(line)
}

// envReading are the messages of the SDK's OTLP exporters about the OTEL_EXPORTER_OTLP_*
// variables they read themselves. The launcher's metrics exporters are given every such
// setting explicitly, as otelconfig.FromEnv read it, replacing theirs: what was wrong with a
// variable is said once, by Config.Warnings or its error, in words true of what the
// launcher did with it ("invalid header key" would be said of a header the exporter
// was then given anyway, or of none).
var envReading = map[string]bool{
	"parse headers": true, "escape header value": true, "parse duration": true, "parse url": true,
	"read tls ca cert file": true, "create tls cert pool": true, "read tls client cert": true,
	"read tls client key": true, "create tls client key pair": true,
}

func (s sdkSink) WithValues(kv ...any) logr.LogSink { return sdkSink{s.values + pairs(kv)} }

func (s sdkSink) WithName(string) logr.LogSink { return s }

func pairs(kv []any) string {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, " %v=%v", kv[i], kv[i+1])
	}
	return b.String()
}

// grpcLogger is gRPC's logger.
type grpcLogger struct{}

func (grpcLogger) Info(args ...any)   { slog.Debug("gRPC: " + fmt.Sprint(args...)) }
func (grpcLogger) Infoln(args ...any) { slog.Debug("gRPC: " + sprintln(args)) }
func (grpcLogger) Infof(format string, args ...any) {
	slog.Debug("gRPC: " + fmt.Sprintf(format, args...))
}
func (grpcLogger) Warning(args ...any)   { slog.Debug("gRPC: " + fmt.Sprint(args...)) }
func (grpcLogger) Warningln(args ...any) { slog.Debug("gRPC: " + sprintln(args)) }
func (grpcLogger) Warningf(format string, args ...any) {
	slog.Debug("gRPC: " + fmt.Sprintf(format, args...))
}
func (grpcLogger) Error(args ...any)   { slog.Warn("gRPC: " + fmt.Sprint(args...)) }
func (grpcLogger) Errorln(args ...any) { slog.Warn("gRPC: " + sprintln(args)) }
func (grpcLogger) Errorf(format string, args ...any) {
	slog.Warn("gRPC: " + fmt.Sprintf(format, args...))
}
func (grpcLogger) Fatal(args ...any) { slog.Error("gRPC: " + fmt.Sprint(args...)); os.Exit(1) }
func (grpcLogger) Fatalln(args ...any) {
	slog.Error("gRPC: " + sprintln(args))
	os.Exit(1)
}
func (grpcLogger) Fatalf(format string, args ...any) {
	slog.Error("gRPC: " + fmt.Sprintf(format, args...))
	os.Exit(1)
}
func (grpcLogger) V(int) bool { return false }

func sprintln(args []any) string { return strings.TrimSuffix(fmt.Sprintln(args...), "\n") }
