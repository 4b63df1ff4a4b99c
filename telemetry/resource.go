package telemetry

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"runtime"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/otel-go-launcher/otel-go-launcher/internal/version"
)

// App describes the instrumented program: the resource is the app's, not the launcher's.
type App struct {
	Path      string // its executable
	PID       int
	GoVersion string // "go1.26.8"
}

// appResource: service.name defaults to the app's executable name; what the
// configuration read from the environment (Config.Resource) names overrides what is
// detected.
func appResource(ctx context.Context, app App, configured []attribute.KeyValue) (*resource.Resource, error) {
	attrs := []attribute.KeyValue{
		semconv.ServiceName(filepath.Base(app.Path)),
		semconv.ProcessPID(app.PID),
		semconv.ProcessExecutableName(filepath.Base(app.Path)),
		semconv.ProcessRuntimeName("go"),
		semconv.HostArchKey.String(runtime.GOARCH),
		semconv.TelemetryDistroName("otel-go-launcher"),
		semconv.TelemetryDistroVersion(version.String()),
	}
	if p, err := filepath.Abs(app.Path); err == nil {
		attrs = append(attrs, semconv.ProcessExecutablePath(p))
	}
	if app.GoVersion != "" {
		attrs = append(attrs, semconv.ProcessRuntimeVersion(app.GoVersion))
	}
	if id := containerID(); id != "" {
		attrs = append(attrs, semconv.ContainerID(id))
	}
	return resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithAttributes(attrs...),
		resource.WithAttributes(configured...), // last: the configuration wins
	)
}

// A container runtime's ID: 64 hex digits in a cgroup path or bind mount source.
var containerIDPattern = regexp.MustCompile(`(?:^|[/-])([0-9a-f]{64})(?:\.scope|/|$)`)

// containerID finds the container's ID in /proc/self/cgroup (cgroup v1, and v2 under
// systemd) or /proc/self/mountinfo (the runtime's /etc/hostname and /etc/resolv.conf
// mounts, which cgroup namespaces do not hide). "" outside a container.
func containerID() string {
	for _, file := range []string{"/proc/self/cgroup", "/proc/self/mountinfo"} {
		f, err := os.Open(file)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if m := containerIDPattern.FindStringSubmatch(sc.Text()); m != nil {
				f.Close()
				return m[1]
			}
		}
		f.Close()
	}
	return ""
}
