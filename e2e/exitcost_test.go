package e2e

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// When the app exits, what is buffered goes out at once and the launcher exits: the
// batch delay and the metrics period, a minute each here, are not waited for. The
// one-call command's span and its duration histogram have reached the collector when
// the launcher has exited, and the exit code passes through, as PID 1 too. (The bench's
// exit section measures how soon: milliseconds.)
func TestExitFlushesAtOnce(t *testing.T) {
	testenv.RequireRoot(t)
	onecall := testenv.Build(t, "./e2e/testdata/onecall", "CGO_ENABLED=0")
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer target.Close()
	for _, pid1 := range []bool{false, true} {
		recv := testenv.StartReceiver(t)
		env := append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT="+recv.Endpoint, "OTEL_BSP_SCHEDULE_DELAY=60000",
			"OTEL_METRICS_EXPORTER=otlp", "OTEL_METRIC_EXPORT_INTERVAL=60000")
		e, stdout, stderr := runLaunch(t, opts{env: env, pid1: pid1}, launchBin(t), "--", onecall, target.URL)
		ended := time.Now()
		if e.code != 0 {
			t.Fatalf("pid1 %v: launcher %v\n%s", pid1, e, stderr)
		}
		ns, err := strconv.ParseInt(strings.TrimSpace(stdout), 10, 64)
		if err != nil {
			t.Fatalf("pid1 %v: the app printed %q\n%s", pid1, stdout, stderr)
		}
		after := ended.Sub(time.Unix(0, ns))
		if after > time.Second {
			t.Errorf("pid1 %v: the launcher exited %v after the app", pid1, after)
		}
		t.Logf("pid1 %v: the launcher exited %v after the app", pid1, after)
		if spans := recv.Spans(); len(spans) != 1 || spans[0].Name != "GET" {
			t.Errorf("pid1 %v: %d spans at the launcher's exit, want the one GET: %+v\n%s", pid1, len(spans), spans, stderr)
		}
		found := false
		for _, h := range recv.Histograms() {
			found = found || h.Metric == "http.client.request.duration" && h.Count == 1
		}
		if !found {
			t.Errorf("pid1 %v: no http.client.request.duration of one call at the launcher's exit: %+v", pid1, recv.Histograms())
		}
	}
}
