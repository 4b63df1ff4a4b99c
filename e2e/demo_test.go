package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// demoAllowed are the lines of a clean demo that match demoProblem, each with why it
// is not one.
var demoAllowed = []struct {
	line   *regexp.Regexp
	reason string
}{
	{regexp.MustCompile(`^\s*KIND\s+SERVICE\s+ROUTE\s+REQUESTS\s+ERRORS\s+P50\s+P99$`), "the metrics table's header: ERRORS is a column"},
}

// demoProblem is what no line of a clean demo may say.
var demoProblem = regexp.MustCompile(`(?i)warning|error|failed`)

// make demo is the first thing a user runs: it must show whole traces as trees and the
// metrics table, and say nothing that looks like a problem (the launcher's warning
// about a receiver without metrics went unnoticed there). It runs scripts/demo.sh as
// make demo does, with the launcher under test, on free ports (not the demo's own,
// which another run may hold) and building into a directory of its own.
func TestDemo(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "curl")
	bash := testenv.RequireCommand(t, "bash")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bash, filepath.Join(testenv.RepoRoot(), "scripts", "demo.sh"))
	// The demo as a user's first run has it: no OpenTelemetry or launcher settings of
	// this environment's.
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "OTEL_") || strings.HasPrefix(kv, "LAUNCH_") || strings.HasPrefix(kv, "DEMO_")
	})
	cmd.Env = append(env, "LAUNCH="+launchBin(t), "DEMO_BIN="+t.TempDir(),
		"DEMO_APP="+freeAddr(t), "DEMO_OTLP_GRPC="+freeAddr(t), "DEMO_OTLP_HTTP="+freeAddr(t))
	cmd.WaitDelay = 5 * time.Second // a process left holding the output must not hang the test
	b, err := cmd.CombinedOutput()
	out := string(b)
	if err != nil {
		t.Fatalf("scripts/demo.sh: %v\n%s", err, out)
	}
	for _, l := range strings.Split(out, "\n") {
		if !demoProblem.MatchString(l) {
			continue
		}
		allowed := false
		for _, a := range demoAllowed {
			allowed = allowed || a.line.MatchString(l)
		}
		if !allowed {
			t.Errorf("the demo says %q: a clean run must not (or add it to demoAllowed, with the reason)", l)
		}
	}
	for _, want := range []struct{ what, re string }{
		{"the trace of /greet as a tree: the client span indented under the server span, the /hello server span under it",
			`(?m)^  [·█]+  GET /greet/\{name\}  SERVER .*\n  [·█]+  └─ GET  CLIENT .*\n  [·█]+     └─ GET /hello/\{name\}  SERVER `},
		{"the span whose parent came in a traceparent header, as a root saying so",
			`(?m)^  [·█]+  GET /hello/\{name\}  SERVER .*url.path=/hello/otel.*\(parent 00f067aa0ba902b7 not received\)$`},
		{"the metrics table's header", `(?m)^  KIND +SERVICE +ROUTE +REQUESTS +ERRORS +P50 +P99$`},
		// /hello/first, /hello/gopher, /hello/otel and /hello/kernel (from /greet)
		{"the table's row for /hello", `(?m)^  http server +hello-service +GET /hello/\{name\} +4 +0 +[~≤]\S+ +[~≤]\S+$`},
		{"the table's row for the call out", `(?m)^  http client +hello-service +GET 127\.0\.0\.1:\d+ +1 +0 `},
		{"the app's capabilities by name, none of the launcher's", `(?m)^hello-service \(pid \d+\): of the launcher's own capabilities \(.*\), it has none$`},
	} {
		if !regexp.MustCompile(want.re).MatchString(out) {
			t.Errorf("the demo does not show %s (%s):\n%s", want.what, want.re, out)
		}
	}
}
