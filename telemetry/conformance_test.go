package telemetry

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/proto"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig"
)

// conformanceRow is one setting of the environment specification (an OTLP exporter's,
// the proxy variables, a reader's or processor's), as one signal's exporter reads it.
// env's names are OTEL_EXPORTER_OTLP_'s suffixes unless they begin with OTEL_ or end
// with _PROXY; placeholders in its values ({grpc}, {http-tls}, {ca}, ...) are the
// test's receivers and files. want is what the launcher delivers (the test's outcome
// words, "fail" for nothing); sdk, when it differs, is what the SDK delivers, and why
// says why.
type conformanceRow struct {
	name     string
	env      map[string]string
	scenario string // what the child does, in the test's terms ("": one export)
	want     string
	sdk      string
	why      string
	within   time.Duration // the launcher's export ends within it (0: unchecked)
	atLeast  time.Duration // nor before it (0: unchecked)
	sdkToo   bool          // and the SDK's
}

// conformanceRows: the specification's list, for gRPC and http/protobuf.
var conformanceRows = []conformanceRow{
	// Endpoint: generic (a base for HTTP) or traces-specific (as it is), with or without
	// a path; a gRPC endpoint may be HOST:PORT.
	{name: "endpoint generic, grpc", env: map[string]string{"ENDPOINT": "http://{grpc}"}, want: "grpc plain"},
	{name: "endpoint generic with a path, grpc", env: map[string]string{"ENDPOINT": "http://{grpc}/some/path"}, want: "grpc plain"},
	{name: "endpoint traces-specific wins, grpc", env: map[string]string{"ENDPOINT": "http://{dead}", "TRACES_ENDPOINT": "http://{grpc}"}, want: "grpc plain"},
	{name: "endpoint HOST:PORT, grpc", env: map[string]string{"ENDPOINT": "localhost:{grpc-port}", "INSECURE": "true"}, want: "grpc plain"},
	{name: "endpoint IP:PORT, grpc", env: map[string]string{"ENDPOINT": "127.0.0.1:{grpc-port}", "INSECURE": "true", "TIMEOUT": "500"}, want: "grpc plain",
		sdk: "fail", why: "the SDK's url.Parse refuses an IP:PORT without a scheme (a colon in the first path segment) and falls back to localhost:4317; the specification allows HOST:PORT for gRPC"},
	{name: "endpoint generic, http", env: map[string]string{"PROTOCOL": "http/protobuf", "ENDPOINT": "http://{http}"}, want: "http:/v1/traces plain"},
	{name: "endpoint generic with a path, http", env: map[string]string{"PROTOCOL": "http/protobuf", "ENDPOINT": "http://{http}/base/"}, want: "http:/base/v1/traces plain"},
	{name: "endpoint traces-specific with a path, http", env: map[string]string{"PROTOCOL": "http/protobuf", "TRACES_ENDPOINT": "http://{http}/custom/path"}, want: "http:/custom/path plain"},
	{name: "endpoint traces-specific without a path, http", env: map[string]string{"PROTOCOL": "http/protobuf", "TRACES_ENDPOINT": "http://{http}"}, want: "http:/ plain"},
	// Protocol.
	{name: "protocol traces-specific wins", env: map[string]string{"PROTOCOL": "grpc", "TRACES_PROTOCOL": "http/protobuf", "ENDPOINT": "http://{http}"}, want: "http:/v1/traces plain"},
	{name: "protocol http/json", env: map[string]string{"PROTOCOL": "http/json", "ENDPOINT": "http://{http}"}, want: "http:/v1/traces plain",
		sdk: "http:/v1/traces ct=application/json plain", why: "the launcher encodes protobuf only: http/json is sent as http/protobuf, to the same path (every otelconfig.OTLP/HTTP receiver takes both), with a warning"},
	// Headers: URL-encoded values, decoded then trimmed; the traces-specific variable
	// replaces the generic one; entries the exporters could not send are left out.
	{name: "headers url-encoded, grpc", env: map[string]string{"ENDPOINT": "http://{grpc}", "HEADERS": "api-key=s3cr%3Dt,tenant= a%20b "}, want: "grpc plain {api-key:s3cr=t,tenant:a b}"},
	{name: "headers url-encoded, http", env: map[string]string{"PROTOCOL": "http/protobuf", "ENDPOINT": "http://{http}", "HEADERS": "api-key=s3cr%3Dt,tenant= a%20b "},
		want: "http:/v1/traces plain {Api-Key:s3cr=t,Tenant:a b}"},
	{name: "headers traces-specific replace generic", env: map[string]string{"ENDPOINT": "http://{grpc}", "HEADERS": "a=1", "TRACES_HEADERS": "b=2"}, want: "grpc plain {b:2}"},
	{name: "headers name not a token, no =, grpc", env: map[string]string{"ENDPOINT": "http://{grpc}", "HEADERS": "x bad=1,api-key=k,novalue"}, want: "grpc plain {api-key:k}"},
	{name: "headers name not a token, no =, http", env: map[string]string{"PROTOCOL": "http/protobuf", "ENDPOINT": "http://{http}", "HEADERS": "x bad=1,api-key=k,novalue"},
		want: "http:/v1/traces plain {Api-Key:k}"},
	{name: "headers value with a control character, http", env: map[string]string{"PROTOCOL": "http/protobuf", "ENDPOINT": "http://{http}", "HEADERS": "api-key=k,x-ctl=a%0Ab"},
		want: "http:/v1/traces plain {Api-Key:k}", sdk: "fail", why: "the SDK keeps the header and net/http refuses every request with it; the launcher leaves it out, said"},
	{name: "headers value with a control character, grpc", env: map[string]string{"ENDPOINT": "http://{grpc}", "HEADERS": "api-key=k,x-ctl=a%0Ab"},
		want: "grpc plain {api-key:k}", sdk: "fail", why: "the SDK keeps the header and grpc-go refuses every call with it (INTERNAL); the launcher leaves it out, said"},
	{name: "headers token gRPC refuses, grpc", env: map[string]string{"ENDPOINT": "http://{grpc}", "HEADERS": "x!y=1,api-key=k"},
		want: "grpc plain {api-key:k}", sdk: "fail", why: "x!y is an HTTP token, not a gRPC metadata key: the SDK keeps it and grpc-go refuses every call (INTERNAL); the launcher leaves it out, said"},
	// Compression: gzip or none, in any case as the specification's enums (the SDK's
	// exporters take lower case only).
	{name: "compression gzip, grpc", env: map[string]string{"ENDPOINT": "http://{grpc}", "COMPRESSION": "gzip"}, want: "grpc plain gzip"},
	{name: "compression gzip, http", env: map[string]string{"PROTOCOL": "http/protobuf", "ENDPOINT": "http://{http}", "COMPRESSION": "gzip"}, want: "http:/v1/traces plain gzip"},
	{name: "compression none, grpc", env: map[string]string{"ENDPOINT": "http://{grpc}", "COMPRESSION": "none"}, want: "grpc plain"},
	{name: "compression GZIP, http", env: map[string]string{"PROTOCOL": "http/protobuf", "ENDPOINT": "http://{http}", "COMPRESSION": "GZIP"}, want: "http:/v1/traces plain gzip",
		sdk: "http:/v1/traces plain", why: "the specification reads enum values in any case; the SDK's exporter sends GZIP uncompressed"},
	{name: "compression traces-specific wins, grpc", env: map[string]string{"ENDPOINT": "http://{grpc}", "COMPRESSION": "gzip", "TRACES_COMPRESSION": "none"}, want: "grpc plain"},
	// Timeout: a collector that never answers.
	{name: "timeout, grpc", env: map[string]string{"ENDPOINT": "http://{grpc-stall}", "TIMEOUT": "300"}, want: "fail", within: 2 * time.Second, sdkToo: true},
	// The SDK's HTTP exporter bounds each attempt by the timeout and retries one that
	// timed out until its caller's deadline: the export is not bounded by it (the
	// child's 2 s bound it here); both fail.
	{name: "timeout, http", env: map[string]string{"PROTOCOL": "http/protobuf", "ENDPOINT": "http://{http-stall}", "TIMEOUT": "300"}, want: "fail", within: 2 * time.Second},
	{name: "timeout traces-specific wins, grpc", env: map[string]string{"ENDPOINT": "http://{grpc-stall}", "TIMEOUT": "60000", "TRACES_TIMEOUT": "300"}, want: "fail", within: 2 * time.Second, sdkToo: true},
	// TLS and insecure: the scheme decides; OTEL_EXPORTER_OTLP_INSECURE only for a gRPC
	// endpoint without one, true only for "true" in any case.
	{name: "tls https + certificate, grpc", env: map[string]string{"ENDPOINT": "https://{grpc-tls}", "CERTIFICATE": "{ca}"}, want: "grpc tls"},
	{name: "tls https + certificate, http", env: map[string]string{"PROTOCOL": "http/protobuf", "ENDPOINT": "https://{http-tls}", "CERTIFICATE": "{ca}"}, want: "http:/v1/traces tls"},
	{name: "insecure false, HOST:PORT, grpc", env: map[string]string{"ENDPOINT": "localhost:{grpc-tls-port}", "INSECURE": "false", "CERTIFICATE": "{ca}"}, want: "grpc tls"},
	{name: "insecure 1 is not true, HOST:PORT, grpc", env: map[string]string{"ENDPOINT": "localhost:{grpc-tls-port}", "INSECURE": "1", "CERTIFICATE": "{ca}"}, want: "grpc tls"},
	{name: "insecure TRUE, HOST:PORT, grpc", env: map[string]string{"ENDPOINT": "localhost:{grpc-port}", "INSECURE": "TRUE"}, want: "grpc plain"},
	{name: "insecure traces-specific wins, grpc", env: map[string]string{"ENDPOINT": "localhost:{grpc-port}", "INSECURE": "false", "TRACES_INSECURE": "true"}, want: "grpc plain"},
	{name: "insecure false, http:// endpoint, grpc", env: map[string]string{"ENDPOINT": "http://{grpc}", "INSECURE": "false", "TIMEOUT": "500"}, want: "grpc plain",
		sdk: "fail", why: "the specification applies INSECURE only to a gRPC endpoint without a scheme; the SDK applies it after the scheme, and speaks TLS to http://"},
	{name: "insecure false, http:// endpoint, http", env: map[string]string{"PROTOCOL": "http/protobuf", "ENDPOINT": "http://{http}", "INSECURE": "false"}, want: "http:/v1/traces plain",
		sdk: "fail", why: "the same: the SDK speaks TLS to an http:// endpoint when INSECURE=false"},
	{name: "insecure true, https:// endpoint, grpc", env: map[string]string{"ENDPOINT": "https://{grpc-tls}", "CERTIFICATE": "{ca}", "INSECURE": "true", "TIMEOUT": "500"}, want: "grpc tls"},
	{name: "insecure true, https:// endpoint, http", env: map[string]string{"PROTOCOL": "http/protobuf", "ENDPOINT": "https://{http-tls}", "CERTIFICATE": "{ca}", "INSECURE": "true", "TIMEOUT": "500"},
		want: "http:/v1/traces tls", sdk: "fail", why: "the SDK's HTTP exporter applies INSECURE after the scheme, then refuses the CA with it (it does not start); the scheme decides"},
	// Certificate: the collector's CA; without it, a certificate that does not verify
	// fails every export - over gRPC UNAVAILABLE, retried until the timeout by both; over
	// HTTP at once (well before a timeout of 5 s, with room for a loaded machine), by both.
	{name: "certificate none, grpc", env: map[string]string{"ENDPOINT": "https://{grpc-tls}", "TIMEOUT": "500"}, want: "fail", within: 2 * time.Second, sdkToo: true},
	{name: "certificate none, http", env: map[string]string{"PROTOCOL": "http/protobuf", "ENDPOINT": "https://{http-tls}", "TIMEOUT": "5000"}, want: "fail", within: 2 * time.Second, sdkToo: true},
	{name: "certificate traces-specific wins, grpc", env: map[string]string{"ENDPOINT": "https://{grpc-tls}", "CERTIFICATE": "{other-ca}", "TRACES_CERTIFICATE": "{ca}"}, want: "grpc tls"},
	{name: "certificate with an http:// endpoint, http", env: map[string]string{"PROTOCOL": "http/protobuf", "ENDPOINT": "http://{http}", "CERTIFICATE": "{ca}"}, want: "http:/v1/traces plain",
		sdk: "fail", why: "the SDK's HTTP exporter refuses TLS settings with an http:// endpoint (it does not start); the scheme decides, as the specification says, and a CA set for other endpoints does no harm"},
	// Client certificate and key: mTLS.
	{name: "client certificate, grpc", env: map[string]string{"ENDPOINT": "https://{grpc-mtls}", "CERTIFICATE": "{ca}", "CLIENT_CERTIFICATE": "{client-cert}", "CLIENT_KEY": "{client-key}"},
		want: "grpc tls client=launcher-test-client"},
	{name: "client certificate, http", env: map[string]string{"PROTOCOL": "http/protobuf", "ENDPOINT": "https://{http-mtls}", "CERTIFICATE": "{ca}", "CLIENT_CERTIFICATE": "{client-cert}", "CLIENT_KEY": "{client-key}"},
		want: "http:/v1/traces tls client=launcher-test-client"},
	{name: "client certificate traces-specific, grpc", env: map[string]string{"ENDPOINT": "https://{grpc-mtls}", "CERTIFICATE": "{ca}", "TRACES_CLIENT_CERTIFICATE": "{client-cert}", "TRACES_CLIENT_KEY": "{client-key}"},
		want: "grpc tls client=launcher-test-client"},
	{name: "client certificate none, grpc", env: map[string]string{"ENDPOINT": "https://{grpc-mtls}", "CERTIFICATE": "{ca}", "TIMEOUT": "500"}, want: "fail"},
	{name: "client certificate none, http", env: map[string]string{"PROTOCOL": "http/protobuf", "ENDPOINT": "https://{http-mtls}", "CERTIFICATE": "{ca}", "TIMEOUT": "500"}, want: "fail"},
	// Both fail, differently: the launcher refuses the setting at start (said); the SDK
	// ignores a certificate without its key.
	{name: "client certificate without its key, grpc", env: map[string]string{"ENDPOINT": "https://{grpc-mtls}", "CERTIFICATE": "{ca}", "CLIENT_CERTIFICATE": "{client-cert}", "TIMEOUT": "500"}, want: "fail"},
	// Proxies (HTTP_PROXY, HTTPS_PROXY, NO_PROXY), at this host's non-loopback address:
	// Go's rules never proxy localhost or a loopback address.
	{name: "proxy HTTP_PROXY, http", env: map[string]string{"PROTOCOL": "http/protobuf", "ENDPOINT": "http://{host-http}", "HTTP_PROXY": "{proxy}"}, want: "http:/v1/traces plain proxied"},
	{name: "proxy NO_PROXY bypasses, http", env: map[string]string{"PROTOCOL": "http/protobuf", "ENDPOINT": "http://{host-http}", "HTTP_PROXY": "{proxy}", "NO_PROXY": "{host}"}, want: "http:/v1/traces plain"},
	{name: "proxy HTTPS_PROXY (CONNECT), https", env: map[string]string{"PROTOCOL": "http/protobuf", "ENDPOINT": "https://{host-http-tls}", "CERTIFICATE": "{ca}", "HTTPS_PROXY": "{proxy}"},
		want: "http:/v1/traces tls proxied"},
	{name: "proxy never for loopback, http", env: map[string]string{"PROTOCOL": "http/protobuf", "ENDPOINT": "http://{http}", "HTTP_PROXY": "{proxy}"}, want: "http:/v1/traces plain"},
	{name: "proxy HTTPS_PROXY (CONNECT), grpc", env: map[string]string{"ENDPOINT": "http://{host-grpc}", "HTTPS_PROXY": "{proxy}"}, want: "grpc plain proxied"},
}

const (
	conformanceChildEnv    = "TELEMETRY_CONFORMANCE_CHILD"    // the row's name: run as the child
	conformanceScenarioEnv = "TELEMETRY_CONFORMANCE_SCENARIO" // the row's scenario
	conformanceMarker      = "conformance result: "
)

// For each setting of the OTLP exporter specification, the SDK's trace exporter
// (otlptracegrpc or otlptracehttp v1.47.0, built from the environment alone) and the
// launcher's pipeline (otelconfig.FromEnv, New, Emit, Shutdown) send a span to the same
// receivers: it arrives, or not, the same way - path, headers, compression, TLS, client
// certificate, proxy - but where a row says why not. Each row runs in a process of its
// own with that environment (Go reads the proxy variables once a process, and the SDK
// reads its variables when an exporter is made): this test binary again.
func TestOTLPConformance(t *testing.T) {
	if name := os.Getenv(conformanceChildEnv); name != "" {
		traceConformanceChild(name)
		return
	}
	setup := newConformanceSetup(t, "OTEL_METRICS_EXPORTER=none")
	setup.run(t, "TestOTLPConformance", conformanceRows, func(_ conformanceRow, name string, _ conformanceResult) (string, string) {
		return setup.recs.outcome(exportName(name, "ours"), setup.proxy), setup.recs.outcome(exportName(name, "sdk"), setup.proxy)
	})
}

// exportName is what the export of who ("sdk" or "ours") in the child named name
// carries - a span's name, a resource attribute -: one no other export's has in it.
func exportName(name, who string) string { return name + who + ";" }

// conformanceSetup is what every row of a conformance test shares: the receivers and
// what they took, the proxy, the PKI's files, and the children's environment.
type conformanceSetup struct {
	recs   *conformanceRecords
	proxy  *forwardProxy
	places *strings.Replacer // a row's placeholders
	base   []string          // the children's environment before the row's
}

// newConformanceSetup starts the receivers - gRPC and HTTP, each in plaintext, TLS,
// mTLS and one that never answers ("stall"), and a gRPC one that answers each
// connection's first request late ("slow") - and the proxy; the children's environment
// is this process's without any variable a row may set, and with extra.
func newConformanceSetup(t *testing.T, extra ...string) *conformanceSetup {
	host := reachableHost(t)
	pki := newTestPKI(t, host)
	s := &conformanceSetup{recs: &conformanceRecords{}, proxy: newForwardProxy(t)}
	grpcAddr := func(mode string) string { return startGRPCReceiver(t, pki, mode, s.recs) }
	httpAddr := func(mode string) string { return startHTTPReceiver(t, pki, mode, s.recs) }
	port := func(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead.Close()
	g, gt, gm, gs, gl := grpcAddr("plain"), grpcAddr("tls"), grpcAddr("mtls"), grpcAddr("stall"), grpcAddr("slow")
	h, ht, hm, hs := httpAddr("plain"), httpAddr("tls"), httpAddr("mtls"), httpAddr("stall")
	s.places = strings.NewReplacer(
		"{grpc}", "127.0.0.1:"+port(g), "{grpc-port}", port(g), "{grpc-tls}", "127.0.0.1:"+port(gt), "{grpc-tls-port}", port(gt),
		"{grpc-mtls}", "127.0.0.1:"+port(gm), "{grpc-stall}", "127.0.0.1:"+port(gs), "{grpc-slow}", "127.0.0.1:"+port(gl),
		"{http}", "127.0.0.1:"+port(h), "{http-tls}", "127.0.0.1:"+port(ht), "{http-mtls}", "127.0.0.1:"+port(hm), "{http-stall}", "127.0.0.1:"+port(hs),
		"{host-http}", net.JoinHostPort(host, port(h)), "{host-http-tls}", net.JoinHostPort(host, port(ht)), "{host-grpc}", net.JoinHostPort(host, port(g)),
		"{host}", host, "{proxy}", s.proxy.URL, "{dead}", dead.Addr().String(),
		"{ca}", pki.ca, "{other-ca}", pki.otherCA, "{client-cert}", pki.clientCert, "{client-key}", pki.clientKey)

	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "OTEL_") && !strings.HasSuffix(strings.ToUpper(name), "_PROXY") && name != "REQUEST_METHOD" && name != "GORACE" {
			s.base = append(s.base, kv)
		}
	}
	// Under -race a process waits 1 s at exit (for late reports) unless told not to.
	s.base = append(s.base, "OTEL_EXPORTER_OTLP_TIMEOUT=1500", "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	s.base = append(s.base, extra...)
	return s
}

// run runs each row's child (the test named test, again) in parallel, and holds what
// outcome says each exporter delivered - the launcher's, the SDK's - to the row.
func (s *conformanceSetup) run(t *testing.T, test string, rows []conformanceRow, outcome func(row conformanceRow, name string, res conformanceResult) (ours, sdk string)) {
	children := make(chan struct{}, 12) // at once: each waits more than it works
	for i, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			if row.sdk != "" && row.why == "" {
				t.Fatal("a row that differs says why")
			}
			name := fmt.Sprintf("conformance-row-%02d;", i) // no name is in another
			env := append(slices.Clone(s.base), conformanceChildEnv+"="+name, conformanceScenarioEnv+"="+row.scenario)
			for k, v := range row.env {
				if !strings.HasSuffix(k, "_PROXY") && !strings.HasPrefix(k, "OTEL_") {
					k = "OTEL_EXPORTER_OTLP_" + k
				}
				env = append(env, k+"="+s.places.Replace(v))
			}
			// The child starts before t.Parallel: most of a row's time is waiting (for a
			// timeout, a slow receiver), and -parallel (GOMAXPROCS) rows at a time would
			// add the waits up.
			done := make(chan error, 1)
			var res conformanceResult
			go func() {
				children <- struct{}{}
				defer func() { <-children }()
				var err error
				res, err = runConformanceChild(test, env)
				done <- err
			}()
			t.Parallel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			ours, sdk := outcome(row, name, res)
			wantSDK := row.want
			if row.sdk != "" {
				wantSDK = row.sdk
			}
			t.Logf("launcher: %s (%v, %s); SDK: %s (%v, %s)", ours, res.Ours.Err, res.Ours.Took, sdk, res.SDK.Err, res.SDK.Took)
			if ours != row.want || sdk != wantSDK {
				t.Errorf("launcher %q, SDK %q; want %q, %q\nlauncher's warnings %q\nchild's stderr:\n%s", ours, sdk, row.want, wantSDK, res.Ours.Warnings, res.stderr)
			}
			if row.within > 0 && (res.Ours.Took > row.within || row.sdkToo && res.SDK.Took > row.within) {
				t.Errorf("the exports took %s (launcher) and %s (SDK), want within %s", res.Ours.Took, res.SDK.Took, row.within)
			}
			if res.Ours.Took < row.atLeast || row.sdkToo && res.SDK.Took < row.atLeast {
				t.Errorf("the exports took %s (launcher) and %s (SDK), want at least %s", res.Ours.Took, res.SDK.Took, row.atLeast)
			}
		})
	}
}

// conformanceExport is what a child says of one exporter's export.
type conformanceExport struct {
	Err      string
	Took     time.Duration
	Warnings []string
	Dropped  uint64 // the spans the launcher's queue dropped
}

// conformanceResult is what a child says of each exporter's export.
type conformanceResult struct {
	SDK, Ours conformanceExport
	stderr    string
}

// runConformanceChild runs test in a child process with env, and returns what the
// child said.
func runConformanceChild(test string, env []string) (conformanceResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return conformanceResult{}, fmt.Errorf("child: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	var res conformanceResult
	for _, line := range strings.Split(stdout.String(), "\n") {
		if j, ok := strings.CutPrefix(line, conformanceMarker); ok {
			res.stderr = stderr.String()
			return res, json.Unmarshal([]byte(j), &res)
		}
	}
	return res, fmt.Errorf("child said nothing:\n%s%s", stdout.String(), stderr.String())
}

// sayConformance is how a child says its result.
func sayConformance(res conformanceResult) {
	j, _ := json.Marshal(res)
	fmt.Println(conformanceMarker + string(j))
}

// measure runs export and notes its duration and error in e.
func (e *conformanceExport) measure(export func() error) {
	begin := time.Now()
	err := export()
	e.Took = time.Since(begin)
	if err != nil {
		e.Err = err.Error()
	}
}

// envProtocol is the protocol the environment asks of a signal's OTLP exporter, as
// autoexport chooses between the SDK's: grpc unless said otherwise.
func envProtocol(signal string) string {
	for _, v := range []string{"OTEL_EXPORTER_OTLP_" + signal + "_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := strings.TrimSpace(os.Getenv(v)); p != "" {
			return p
		}
	}
	return "grpc"
}

// stubSpan is the i-th of the SDK's spans named name: a sampled root server span.
func stubSpan(name string, i int) sdktrace.ReadOnlySpan {
	now := time.Now()
	id := trace.SpanID{1, byte(i), byte(i >> 8)}
	return tracetest.SpanStub{Name: name, SpanKind: trace.SpanKindServer, StartTime: now, EndTime: now.Add(time.Millisecond),
		SpanContext:          trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, byte(i), byte(i >> 8)}, SpanID: id, TraceFlags: trace.FlagsSampled}),
		Resource:             resource.Empty(),
		InstrumentationScope: instrumentation.Scope{Name: LauncherScope.Name},
	}.Snapshot()
}

// traceConformanceChild exports one span with the SDK's exporter, then with the
// launcher's pipeline, both configured by this process's environment alone, and says
// how each went.
func traceConformanceChild(name string) {
	var res conformanceResult
	// The SDK's: otlptracegrpc or otlptracehttp by the protocol, as autoexport chooses,
	// within a deadline of the caller's (the batch span processor's, in an app).
	res.SDK.measure(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		exp, err := envTraceExporter(ctx)
		if err != nil {
			return err
		}
		err = exp.ExportSpans(ctx, []sdktrace.ReadOnlySpan{stubSpan(exportName(name, "sdk"), 1)})
		exp.Shutdown(ctx)
		return err
	})
	// The launcher's.
	res.Ours.measure(func() error {
		p, err := envPipeline(&res.Ours)
		if err != nil {
			return err
		}
		mono := monoNow()
		p.Emit(&Span{TraceID: trace.TraceID{2}, SpanID: trace.SpanID{2}, Kind: trace.SpanKindServer, Name: exportName(name, "ours"), Start: mono, End: mono + 1e6})
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			return err
		}
		if st := p.Stats()[0]; st.Exported != 1 {
			return fmt.Errorf("not exported: %s", st.LastError)
		}
		return nil
	})
	sayConformance(res)
}

// envTraceExporter is the SDK's OTLP trace exporter the environment asks for.
func envTraceExporter(ctx context.Context) (*otlptrace.Exporter, error) {
	if envProtocol("TRACES") == "grpc" {
		return otlptracegrpc.New(ctx)
	}
	return otlptracehttp.New(ctx)
}

// envPipeline is the launcher's pipeline as the environment configures it; its
// configuration's warnings go to e.
func envPipeline(e *conformanceExport) (*Pipeline, error) {
	cfg, err := otelconfig.FromEnv()
	e.Warnings = cfg.Warnings
	if err != nil {
		return nil, err
	}
	return New(context.Background(), App{Path: "/conformance"}, cfg)
}

// conformanceRecord is one export a receiver took.
type conformanceRecord struct {
	body        []byte // the request, uncompressed: its export's name is in it
	kind        string // "grpc", or "http:" and the path
	contentType string // http
	headers     map[string]string
	gzip, tls   bool
	client      string // the client certificate's common name
	remote      string // the connection's remote address
}

type conformanceRecords struct {
	mu   sync.Mutex
	recs []conformanceRecord
}

func (c *conformanceRecords) add(r conformanceRecord) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recs = append(c.recs, r)
}

// of is what the receivers took of the export named name, in the order they took it.
func (c *conformanceRecords) of(name string) []conformanceRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	var got []conformanceRecord
	for _, r := range c.recs {
		if bytes.Contains(r.body, []byte(name)) {
			got = append(got, r)
		}
	}
	return got
}

// outcome says how the export named name arrived: "grpc" or "http:PATH", "tls" (with
// the client's certificate) or "plain", "gzip", "proxied", {headers}; "fail" if it did
// not.
func (c *conformanceRecords) outcome(name string, proxy *forwardProxy) string {
	got := c.of(name)
	if len(got) == 0 {
		return "fail"
	}
	r := got[0]
	words := []string{r.kind}
	if r.kind != "grpc" && r.contentType != "application/x-protobuf" {
		words = append(words, "ct="+r.contentType)
	}
	switch {
	case r.tls && r.client != "":
		words = append(words, "tls client="+r.client)
	case r.tls:
		words = append(words, "tls")
	default:
		words = append(words, "plain")
	}
	if r.gzip {
		words = append(words, "gzip")
	}
	if proxy.through(r.remote) {
		words = append(words, "proxied")
	}
	if len(r.headers) > 0 {
		var kv []string
		for k, v := range r.headers {
			kv = append(kv, k+":"+v)
		}
		slices.Sort(kv)
		words = append(words, "{"+strings.Join(kv, ",")+"}")
	}
	if len(got) > 1 {
		words = append(words, "x"+strconv.Itoa(len(got)))
	}
	return strings.Join(words, " ")
}

// serverTLS is a receiver's TLS: none ("plain", "stall", "slow"), the test CA's server
// certificate ("tls"), and a client's certificate required ("mtls").
func (p *testPKI) serverTLS(mode string) *tls.Config {
	switch mode {
	case "tls":
		return &tls.Config{Certificates: []tls.Certificate{p.server}}
	case "mtls":
		return &tls.Config{Certificates: []tls.Certificate{p.server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.pool}
	}
	return nil
}

// listenAll listens on every IPv4 address: the rows reach a receiver at 127.0.0.1, and
// through a proxy at the host's own address.
func listenAll(t *testing.T) net.Listener {
	l, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// grpcReceiver is a TraceService that keeps what it takes; grpcMetricsReceiver the
// MetricsService beside it. One that stalls answers nothing; one that is slow answers
// a connection's first request after slowAnswer, the others at once.
type grpcReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	recs *conformanceRecords
	mode string

	mu   sync.Mutex
	seen map[string]bool // slow: the connections answered
}

type grpcMetricsReceiver struct {
	colmetricpb.UnimplementedMetricsServiceServer
	g *grpcReceiver
}

// slowAnswer is how late a slow receiver answers: a batch processor's queue fills
// meanwhile.
const slowAnswer = 400 * time.Millisecond

type compressionKey struct{}

func (g *grpcReceiver) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	return &coltracepb.ExportTraceServiceResponse{}, g.take(ctx, req)
}

func (m grpcMetricsReceiver) Export(ctx context.Context, req *colmetricpb.ExportMetricsServiceRequest) (*colmetricpb.ExportMetricsServiceResponse, error) {
	return &colmetricpb.ExportMetricsServiceResponse{}, m.g.take(ctx, req)
}

// take keeps a request, its metadata, compression, TLS and peer.
func (g *grpcReceiver) take(ctx context.Context, req proto.Message) error {
	if g.mode == "stall" {
		<-ctx.Done()
		return ctx.Err()
	}
	md, _ := metadata.FromIncomingContext(ctx)
	r := conformanceRecord{kind: "grpc", headers: map[string]string{}}
	for k, vs := range md {
		switch k {
		case ":authority", "content-type", "user-agent", "grpc-accept-encoding":
		default:
			r.headers[k] = strings.Join(vs, ";")
		}
	}
	if c, ok := ctx.Value(compressionKey{}).(*string); ok {
		r.gzip = *c == "gzip"
	}
	if p, ok := peer.FromContext(ctx); ok {
		r.remote = p.Addr.String()
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			r.tls = true
			if certs := info.State.PeerCertificates; len(certs) > 0 {
				r.client = certs[0].Subject.CommonName
			}
		}
	}
	r.body, _ = proto.Marshal(req)
	g.recs.add(r)
	if g.mode == "slow" {
		g.mu.Lock()
		first := !g.seen[r.remote]
		g.seen[r.remote] = true
		g.mu.Unlock()
		if first {
			time.Sleep(slowAnswer)
		}
	}
	return nil
}

// compressionStats hands each call's request compression (its grpc-encoding, which
// grpc keeps out of the metadata) to the handler.
type compressionStats struct{}

func (compressionStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, compressionKey{}, new(string))
}

func (compressionStats) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if in, ok := s.(*stats.InHeader); ok {
		if c, ok := ctx.Value(compressionKey{}).(*string); ok {
			*c = in.Compression
		}
	}
}

func (compressionStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (compressionStats) HandleConn(context.Context, stats.ConnStats) {}

func startGRPCReceiver(t *testing.T, pki *testPKI, mode string, recs *conformanceRecords) string {
	opts := []grpc.ServerOption{grpc.StatsHandler(compressionStats{})}
	if c := pki.serverTLS(mode); c != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(c)))
	}
	srv := grpc.NewServer(opts...)
	g := &grpcReceiver{recs: recs, mode: mode, seen: map[string]bool{}}
	coltracepb.RegisterTraceServiceServer(srv, g)
	colmetricpb.RegisterMetricsServiceServer(srv, grpcMetricsReceiver{g: g})
	l := listenAll(t)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return l.Addr().String()
}

func startHTTPReceiver(t *testing.T, pki *testPKI, mode string, recs *conformanceRecords) string {
	l := listenAll(t)
	if c := pki.serverTLS(mode); c != nil {
		l = tls.NewListener(l, c)
	}
	srv := &http.Server{ErrorLog: log.New(io.Discard, "", 0), Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if mode == "stall" {
			<-req.Context().Done()
			return
		}
		var body io.Reader = req.Body
		r := conformanceRecord{kind: "http:" + req.URL.Path, contentType: req.Header.Get("Content-Type"), headers: map[string]string{},
			remote: req.RemoteAddr, tls: req.TLS != nil}
		if req.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(req.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body, r.gzip = zr, true
		}
		r.body, _ = io.ReadAll(body)
		if req.TLS != nil && len(req.TLS.PeerCertificates) > 0 {
			r.client = req.TLS.PeerCertificates[0].Subject.CommonName
		}
		for k, vs := range req.Header {
			switch k {
			case "Content-Length", "Content-Type", "Content-Encoding", "User-Agent", "Accept-Encoding":
			default:
				r.headers[k] = strings.Join(vs, ";")
			}
		}
		recs.add(r)
		w.Header().Set("Content-Type", "application/x-protobuf")
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// testPKI is a CA made for the test, a server certificate it signed for 127.0.0.1,
// localhost and the host's address, a client certificate (CN launcher-test-client),
// and another CA that signed neither; as PEM files.
type testPKI struct {
	ca, otherCA, clientCert, clientKey string // files
	server                             tls.Certificate
	pool                               *x509.CertPool
}

func newTestPKI(t *testing.T, host string) *testPKI {
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	serial := int64(0)
	template := func(cn string) *x509.Certificate {
		serial++
		return &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	}
	sign := func(tmpl, parent *x509.Certificate, pub, priv any) ([]byte, *x509.Certificate) {
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, priv)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return der, cert
	}
	ca := func(cn string) ([]byte, *x509.Certificate, *ecdsa.PrivateKey) {
		k := key()
		tmpl := template(cn)
		tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage = true, true, x509.KeyUsageCertSign
		der, cert := sign(tmpl, tmpl, &k.PublicKey, k)
		return der, cert, k
	}
	p := &testPKI{pool: x509.NewCertPool()}
	caDER, caCert, caKey := ca("launcher test CA")
	p.ca = write("ca.pem", "CERTIFICATE", caDER)
	p.pool.AddCert(caCert)
	otherDER, _, _ := ca("another CA")
	p.otherCA = write("other-ca.pem", "CERTIFICATE", otherDER)

	serverKey := key()
	tmpl := template("127.0.0.1")
	tmpl.IPAddresses, tmpl.DNSNames = []net.IP{net.IPv4(127, 0, 0, 1), net.ParseIP(host)}, []string{"localhost"}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	serverDER, _ := sign(tmpl, caCert, &serverKey.PublicKey, caKey)
	p.server = tls.Certificate{Certificate: [][]byte{serverDER}, PrivateKey: serverKey}

	clientKey := key()
	tmpl = template("launcher-test-client")
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	clientDER, _ := sign(tmpl, caCert, &clientKey.PublicKey, caKey)
	p.clientCert = write("client.pem", "CERTIFICATE", clientDER)
	keyDER, err := x509.MarshalPKCS8PrivateKey(clientKey)
	if err != nil {
		t.Fatal(err)
	}
	p.clientKey = write("client-key.pem", "PRIVATE KEY", keyDER)
	return p
}
