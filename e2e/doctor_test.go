package e2e

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// launch doctor, with the launcher's capabilities, finds everything working on this
// machine, and says how HTTPS is limited.
func TestDoctor(t *testing.T) {
	testenv.RequireRoot(t)
	recv := testenv.StartReceiver(t)
	e, out, stderr := runLaunch(t, opts{env: append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT="+recv.Endpoint, "OTEL_TRACES_EXPORTER=",
		"OTEL_METRICS_EXPORTER=", "OTEL_METRIC_EXPORT_INTERVAL=", "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=")}, launchBin(t), "doctor")
	if e.code != 0 || strings.Contains(out, "FAIL") {
		t.Errorf("exit %d\n%s%s", e.code, out, stderr)
	}
	for _, want := range []string{
		"ok     capabilities: SYS_ADMIN",
		"ok     uprobes: attach and detach",
		"ok     exit: uprobes are handed to the kernel to detach in the background",
		"ok     start: the app starts while the probes load",
		"ok     probes net/http.server, net/http.client, x/net/http2.server: 17 programs verified",
		"ok     probes database/sql: 11 programs verified",
		"ok     probes go-redis: 4 programs verified",
		"ok     probes kafka-go: 4 programs verified",
		"limit  kafka-go: produced messages carry no trace context from the launcher",
		"ok     probes chi.route: 1 program verified",
		"ok     probes gorilla/mux.route: 1 program verified",
		"ok     probes gin.route: 1 program verified",
		"ok     probes echo.route: 1 program verified",
		"ok     outgoing traceparent: socket programs attach to the app's own cgroup v2 (here /otel-go-launcher-test-",
		"they see the TCP connections of its processes only, no other container's or host process's",
		"limit  outgoing traceparent goes on plain HTTP/1 requests and plain HTTP/2 (h2c, gRPC without TLS) streams only: TLS",
		"limit  outgoing traceparent: a traceparent or tracestate the app writes itself (a proxy forwarding its caller's, or its own) gets the client span's in place, but goes as written where the kernel cannot change it safely: an HTTP/1 header line split across two writes, an HTTP/2 field sent as an index",
		"each is counted and said when the launcher exits",
		"ok     lockdown: ",
		"ok     offsets database: go1.21.0 to go1.",
		"ok     OTLP endpoint " + recv.Endpoint + " (grpc, plaintext) accepts exports",
		"ok     metrics: request durations every 1m0s (cumulative) to otlp " + recv.Endpoint + " (grpc, plaintext), which accepts exports",
		"ok     configuration: traces: otlp\n",
		"ok     configuration: sampler: parentbased_always_on\n",
		"ok     configuration: propagation: W3C trace context joined from incoming requests and inserted into outgoing ones; W3C baggage not carried",
		"ok     configuration: batches: every 5s, up to 512 spans an export, 32768 spans queued per exporter, export timeout 30s\n",
		"limit  baggage: OTEL_PROPAGATORS has baggage (the default), but the launcher does not carry W3C baggage",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
	// No line says ok without having checked: the capability line about NET_ADMIN
	// is gone, the socket programs' line says what attached.
	if strings.Contains(out, "SYS_ADMIN covers the socket programs") {
		t.Errorf("an unchecked ok line:\n%s", out)
	}

	// From the host's root cgroup, where the programs would see every process's
	// connections, doctor says they will not attach, and why.
	root := "echo $$ > " + testenv.Cgroup2Mount(t) + "/cgroup.procs && exec \"$@\""
	_, out, _ = runLaunch(t, opts{env: append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT="+recv.Endpoint), wrap: []string{"sh", "-c", root, "sh"}}, launchBin(t), "doctor")
	if !strings.Contains(out, "FAIL   outgoing traceparent: the app is in the host's root cgroup v2 (/), where socket programs would run on every connection of every process on the host") {
		t.Errorf("doctor in the root cgroup:\n%s", out)
	}
}

// Doctor checks the endpoint as the exporter will use it: the default is plaintext
// localhost:4317; TLS against a plaintext collector fails; http/protobuf posts to
// /v1/traces; an endpoint no export could use fails, naming the variable.
func TestDoctorEndpoint(t *testing.T) {
	testenv.RequireRoot(t)
	recv := testenv.StartReceiver(t)
	var posted atomic.Value
	httpRecv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/traces" { // doctor checks the metrics' endpoint, here the same receiver, too
			posted.Store(r.Method + " " + r.URL.Path + " " + r.Header.Get("Content-Type") + " " + r.Header.Get("Api-Key"))
		}
	}))
	defer httpRecv.Close()
	plain := strings.TrimPrefix(recv.Endpoint, "http://")
	for _, c := range []struct {
		env  []string
		code int
		want string
	}{
		{[]string{"OTEL_EXPORTER_OTLP_ENDPOINT=https://" + plain}, 0, "warn   OTLP endpoint https://" + plain + " (grpc, TLS): an export failed: Unavailable"},
		{[]string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + plain, "OTEL_EXPORTER_OTLP_INSECURE=true"}, 0, "ok     OTLP endpoint http://" + plain + " (grpc, plaintext) accepts exports"},
		{[]string{"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT=" + httpRecv.URL, "OTEL_EXPORTER_OTLP_HEADERS=api-key=s3cr%3Dt"}, 0,
			"ok     OTLP endpoint " + httpRecv.URL + "/v1/traces (http/protobuf, plaintext) accepts exports"},
		{[]string{"OTEL_EXPORTER_OTLP_ENDPOINT=ftp://" + plain}, 1, "FAIL   configuration: OTEL_EXPORTER_OTLP_ENDPOINT=ftp://" + plain + `: scheme "ftp"`},
		{[]string{"OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:99999"}, 1, "FAIL   configuration: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:99999: port 99999 is not 1-65535"},
		{[]string{"OTEL_BSP_SCHEDULE_DELAY=soon", "OTEL_EXPORTER_OTLP_ENDPOINT=" + recv.Endpoint}, 0, "warn   configuration: OTEL_BSP_SCHEDULE_DELAY=soon: want milliseconds: using 5000"},
		// Another SDK's exporter is said, not reported as "none"; the default is used.
		{[]string{"OTEL_METRICS_EXPORTER=prometheus", "OTEL_EXPORTER_OTLP_ENDPOINT=" + recv.Endpoint}, 0,
			"warn   configuration: OTEL_METRICS_EXPORTER=prometheus: prometheus not an exporter the launcher has (otlp, console, none): left out, using otlp, the default"},
		{[]string{"OTEL_PROPAGATORS=Baggage", "OTEL_EXPORTER_OTLP_ENDPOINT=" + recv.Endpoint}, 0,
			"warn   configuration: OTEL_PROPAGATORS=Baggage has no tracecontext: incoming traceparents are not joined and outgoing requests get none"},
		{[]string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=garbage", "OTEL_EXPORTER_OTLP_ENDPOINT=" + recv.Endpoint}, 0, "warn   metrics off: OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=garbage"},
		// The metrics' endpoint is checked with an export too.
		{[]string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=http://127.0.0.1:1/v1/metrics", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL=http/protobuf", "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT=2000", "OTEL_EXPORTER_OTLP_ENDPOINT=" + recv.Endpoint}, 0,
			"warn   metrics: request durations every 1m0s (cumulative) to otlp http://127.0.0.1:1/v1/metrics (http/protobuf, plaintext): an export failed: "},
	} {
		env := append(os.Environ(), "OTEL_TRACES_EXPORTER=", "OTEL_EXPORTER_OTLP_PROTOCOL=", "OTEL_EXPORTER_OTLP_HEADERS=", "OTEL_EXPORTER_OTLP_INSECURE=")
		e, out, stderr := runLaunch(t, opts{env: append(env, c.env...)}, launchBin(t), "doctor")
		if e.code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("%q: exit %d, want %d and %q in\n%s%s", c.env, e.code, c.code, c.want, out, stderr)
		}
	}
	// Flags over LAUNCH_ variables over OTEL_* over defaults, as the run takes them.
	env := append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT="+recv.Endpoint, "OTEL_BSP_MAX_QUEUE_SIZE=5000", "LAUNCH_MAX_QUEUE=")
	for _, c := range []struct {
		env  []string
		args []string
		want int
	}{{nil, nil, 5000}, {[]string{"LAUNCH_MAX_QUEUE=2000"}, nil, 2000}, {[]string{"LAUNCH_MAX_QUEUE=2000"}, []string{"--max-queue", "1000"}, 1000}} {
		_, out, _ := runLaunch(t, opts{env: append(env, c.env...)}, append(append([]string{launchBin(t)}, c.args...), "doctor")...)
		if want := fmt.Sprintf("ok     configuration: batches: every 5s, up to 512 spans an export, %d spans queued per exporter", c.want); !strings.Contains(out, want) {
			t.Errorf("%q %q: no %q in\n%s", c.env, c.args, want, out)
		}
	}
	if got, _ := posted.Load().(string); got != "POST /v1/traces application/x-protobuf s3cr=t" {
		t.Errorf("the http/protobuf check sent %q", got)
	}
	// The specification's default endpoint, with a collector there or not.
	env = append(os.Environ(), "OTEL_TRACES_EXPORTER=", "OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=", "OTEL_EXPORTER_OTLP_PROTOCOL=")
	want := "OTLP endpoint http://localhost:4317 (grpc, plaintext, the default: set OTEL_EXPORTER_OTLP_ENDPOINT)"
	if l, err := net.Listen("tcp", "127.0.0.1:4317"); err == nil {
		l.Close()
		_, out, _ := runLaunch(t, opts{env: env}, launchBin(t), "doctor")
		if !strings.Contains(out, "warn   "+want+": an export failed") {
			t.Errorf("no collector at the default endpoint:\n%s", out)
		}
		testenv.StartReceiverAt(t, "127.0.0.1:4317")
		_, out, _ = runLaunch(t, opts{env: env}, launchBin(t), "doctor")
		if !strings.Contains(out, "ok     "+want+" accepts exports") {
			t.Errorf("a plaintext collector at the default endpoint:\n%s", out)
		}
	} else {
		testenv.Require(t, false, "port 4317 free for the default endpoint: %v", err)
	}
}

// Without them it fails, with the fix, and skips what cannot be checked.
func TestDoctorWithoutCapabilities(t *testing.T) {
	testenv.RequireRoot(t)
	drop := []string{testenv.RequireCommand(t, "setpriv"), "--bounding-set=-sys_admin,-bpf,-perfmon", "--inh-caps=-sys_admin,-bpf,-perfmon", "--"}
	e, out, _ := runLaunch(t, opts{wrap: drop}, launchBin(t), "doctor")
	if e.code != 1 || !strings.Contains(out, "FAIL   capabilities: missing CAP_SYS_ADMIN, CAP_BPF, CAP_PERFMON: add cap_add: [SYS_ADMIN, BPF, PERFMON]") ||
		strings.Contains(out, "programs verified") {
		t.Errorf("exit %d\n%s", e.code, out)
	}
}
