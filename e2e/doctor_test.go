package e2e

import (
	"os"
	"strings"
	"testing"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// launch doctor, with the launcher's capabilities, finds everything working on this
// machine, and says how HTTPS is limited.
func TestDoctor(t *testing.T) {
	testenv.RequireRoot(t)
	recv := testenv.StartReceiver(t)
	e, out, stderr := runLaunch(t, opts{env: append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT="+recv.Endpoint, "OTEL_TRACES_EXPORTER=")}, launchBin(t), "doctor")
	if e.code != 0 || strings.Contains(out, "FAIL") {
		t.Errorf("exit %d\n%s%s", e.code, out, stderr)
	}
	for _, want := range []string{
		"ok     capabilities: SYS_ADMIN",
		"ok     uprobes: attach and detach",
		"ok     probes net/http.server, net/http.client: 9 programs verified",
		"ok     outgoing traceparent: socket programs attach to cgroup v2 /",
		"limit  outgoing traceparent goes on plain HTTP/1 requests only: HTTPS",
		"ok     lockdown: ",
		"ok     offsets database: go1.21.0 to go1.",
		"ok     OTLP endpoint " + recv.Endpoint + " accepts connections",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
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
