package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	grpccreds "google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// selfSigned writes a new self-signed certificate for 127.0.0.1 and its key (PEM) into
// a directory of the test's, and returns their paths and a pool that trusts it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// waitAccept waits for addr to accept connections.
func waitAccept(t *testing.T, r *run, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never accepted: %v\n%s", addr, err, r.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// schemeServer is a program that serves the same routes over plaintext HTTP/1.1 and
// over TLS (HTTP/1.1 and HTTP/2 by ALPN).
type schemeServer struct {
	tg   testenv.Target
	conn bool   // connservice (x/net's HTTP/2 server over TLS too), not httpserver
	path string // a route both serve
}

// TestURLScheme: url.scheme comes from the connection: https for requests over TLS,
// HTTP/1.1 and HTTP/2, http for plaintext ones, in the server spans and in
// http.server.request.duration. net/http's own servers (httpserver, no x/net: Go 1.22's
// bundled HTTP/2, a stripped Go 1.26 whose offsets come from the database, Go 1.27's
// net/http/internal/http2) and, in a program with golang.org/x/net's HTTP/2 server
// (connservice), x/net's over TLS as well (its runHandler; on Go 1.27, the
// ServerRequest it hands net/http). The certificate is the test's own, verified by the
// clients.
func TestURLScheme(t *testing.T) {
	testenv.RequireRoot(t)
	var servers []schemeServer
	for _, tg := range testenv.BuildTargets(t, "httpserver", []string{"go1.22.12", "go1.27.3"}, []testenv.Variant{testenv.Plain}) {
		servers = append(servers, schemeServer{tg: tg, path: "/items/7"})
	}
	for _, tg := range testenv.BuildTargets(t, "httpserver", []string{"go1.26.8"}, []testenv.Variant{testenv.Stripped}) {
		servers = append(servers, schemeServer{tg: tg, path: "/items/7"})
	}
	for _, tg := range testenv.BuildConn(t, testenv.ConnBuilds[0], testenv.ConnBuilds[3]) {
		servers = append(servers, schemeServer{tg: tg, conn: true, path: "/hello"})
	}
	certFile, keyFile, pool := selfSigned(t)
	for _, s := range servers {
		t.Run(s.tg.Name+"/"+s.tg.Toolchain+"/"+s.tg.Variant.Name, func(t *testing.T) { urlScheme(t, s, certFile, keyFile, pool) })
	}
}

func urlScheme(t *testing.T, s schemeServer, certFile, keyFile string, pool *x509.CertPool) {
	recv := testenv.StartReceiver(t)
	addr, tlsAddr, xtlsAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	env := append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT="+recv.Endpoint, "OTEL_BSP_SCHEDULE_DELAY=200",
		"OTEL_METRIC_EXPORT_INTERVAL=60000", // the final flush at exit must deliver them
		"OTEL_SERVICE_NAME=scheme", "OTEL_RESOURCE_ATTRIBUTES=", "OTEL_TRACES_EXPORTER=", "OTEL_METRICS_EXPORTER=", "OTEL_TRACES_SAMPLER=")
	if s.conn {
		env = append(env, "CONNSERVICE_TLS="+tlsAddr, "CONNSERVICE_XTLS="+xtlsAddr, "CONNSERVICE_CERT="+certFile, "CONNSERVICE_KEY="+keyFile)
	} else {
		env = append(env, "HTTPSERVER_TLS="+tlsAddr, "HTTPSERVER_TLS_CERT="+certFile, "HTTPSERVER_TLS_KEY="+keyFile)
	}
	r := start(t, opts{env: env, stdin: strings.NewReader("")}, launchBin(t), "--require-instrumentation", "--", s.tg.Path, addr)
	firstRequest(t, addr, s.path) // plaintext HTTP/1.1, no User-Agent
	waitAccept(t, r, tlsAddr)

	h1 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	h2 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	defer h1.CloseIdleConnections()
	defer h2.CloseIdleConnections()
	type kase struct {
		name, url string
		rt        http.RoundTripper
		major     int
		scheme    string
	}
	cases := []kase{
		{"plain HTTP/1.1", "http://" + addr, http.DefaultTransport, 1, "http"},
		{"TLS HTTP/1.1", "https://" + tlsAddr, h1, 1, "https"},
		{"TLS HTTP/2", "https://" + tlsAddr, h2, 2, "https"},
	}
	if s.conn {
		waitAccept(t, r, xtlsAddr)
		cases = append(cases, kase{"x/net TLS HTTP/1.1", "https://" + xtlsAddr, h1, 1, "https"},
			kase{"x/net TLS HTTP/2", "https://" + xtlsAddr, h2, 2, "https"})
	}
	const n = 3
	for _, c := range cases {
		for i := 0; i < n; i++ {
			req, _ := http.NewRequest(http.MethodGet, c.url+s.path, nil)
			req.Header.Set("User-Agent", c.name) // each case's spans, told apart
			resp, err := (&http.Client{Transport: c.rt}).Do(req)
			if err != nil {
				t.Fatalf("%s: %v\n%s", c.name, err, r.stderr)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.ProtoMajor != c.major || (resp.TLS != nil) != (c.scheme == "https") {
				t.Fatalf("%s: %s %s, TLS %v", c.name, resp.Proto, resp.Status, resp.TLS != nil)
			}
		}
	}
	// The spans, then the metrics, which the launcher flushes as the app exits.
	want := n*len(cases) + 1
	if spans, ok := recv.WaitFor(20*time.Second, func(ss []testenv.Span) bool { return len(ss) >= want }); !ok {
		t.Fatalf("%d spans, want %d: %s", len(spans), want, spanList(spans))
	}
	r.signal(syscall.SIGTERM)
	if e := r.wait(20 * time.Second); e.signal != 0 || e.code != 0 && e.code != 128+int(syscall.SIGTERM) {
		t.Fatalf("exit %+v\n%s", e, r.stderr)
	}

	spans := recv.Spans()
	if len(spans) != want {
		t.Errorf("%d spans, want %d: %s", len(spans), want, spanList(spans))
	}
	got := map[string]int{}
	for _, sp := range spans {
		ua, _ := sp.Attrs["user_agent.original"].(string)
		if ua == "" || strings.HasPrefix(ua, "Go-http-client/") {
			ua = "plain HTTP/1.1" // the first request, and the default transport's
		}
		i := slices.IndexFunc(cases, func(c kase) bool { return c.name == ua })
		if i < 0 || sp.Kind != tracepb.Span_SPAN_KIND_SERVER {
			t.Errorf("a span of no request made: %s", spanList([]testenv.Span{sp}))
			continue
		}
		c := cases[i]
		got[c.name]++
		version := "1.1"
		if c.major == 2 {
			version = "2"
		}
		if sp.Attrs["url.scheme"] != c.scheme || sp.Attrs["network.protocol.version"] != version || sp.Attrs["url.path"] != s.path {
			t.Errorf("%s: url.scheme %v, network.protocol.version %v, url.path %v; want %s %s %s", c.name, sp.Attrs["url.scheme"],
				sp.Attrs["network.protocol.version"], sp.Attrs["url.path"], c.scheme, version, s.path)
		}
	}
	for _, c := range cases {
		wantN := n
		if c.name == "plain HTTP/1.1" {
			wantN++
		}
		if got[c.name] != wantN {
			t.Errorf("%s: %d spans, want %d", c.name, got[c.name], wantN)
		}
	}

	// http.server.request.duration: the requests counted by scheme and version.
	// Cumulative: each attribute set's last point has its total.
	last := map[string]testenv.Histogram{}
	for _, h := range recv.Histograms() {
		if k := attrString(h.Attrs); h.Metric == "http.server.request.duration" && h.Count >= last[k].Count {
			last[k] = h
		}
	}
	counts := map[string]uint64{}
	for _, h := range last {
		counts[fmt.Sprintf("url.scheme=%v network.protocol.version=%v", h.Attrs["url.scheme"], h.Attrs["network.protocol.version"])] += h.Count
	}
	wantCounts := map[string]uint64{}
	for _, c := range cases {
		version := "1.1"
		if c.major == 2 {
			version = "2"
		}
		wantCounts[fmt.Sprintf("url.scheme=%s network.protocol.version=%s", c.scheme, version)] += n
	}
	wantCounts["url.scheme=http network.protocol.version=1.1"]++ // the first request
	if fmt.Sprint(counts) != fmt.Sprint(wantCounts) {
		t.Errorf("http.server.request.duration counts %v, want %v", counts, wantCounts)
	}
	if said := launcherLines(r); said != "" {
		t.Errorf("launcher said: %s", said)
	}
}

// proxyHeader is a PROXY protocol (v1) header: the connection as a load balancer in
// front would announce it.
func proxyHeader(client string, clientPort int, server string, serverPort int) string {
	return fmt.Sprintf("PROXY TCP4 %s %s %d %d\r\n", client, server, clientPort, serverPort)
}

// dialRecorded connects a gRPC client to addr with creds, each connection beginning
// with header (if any), and records the local address of the last connection it made.
func dialRecorded(t *testing.T, addr, header string, creds grpccreds.TransportCredentials) (*grpc.ClientConn, func() string) {
	t.Helper()
	var mu sync.Mutex
	var local string
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", a)
			if err != nil {
				return nil, err
			}
			if _, err := io.WriteString(c, header); err != nil {
				c.Close()
				return nil, err
			}
			mu.Lock()
			local = c.LocalAddr().String()
			mu.Unlock()
			return c, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, func() string { mu.Lock(); defer mu.Unlock(); return local }
}

// treeOf is trace's spans as "KIND name <- its parent" lines, sorted: the parent named
// by its kind and name, or as "remote SPANID" when it is outside the spans.
func treeOf(spans []testenv.Span, trace string) []string {
	byID := map[string]testenv.Span{}
	for _, s := range spans {
		byID[s.SpanID] = s
	}
	var lines []string
	for _, s := range spans {
		if s.TraceID != trace {
			continue
		}
		parent := "remote " + s.ParentSpanID
		if p, ok := byID[s.ParentSpanID]; ok && p.TraceID == trace {
			parent = p.Kind.String() + " " + p.Name
		} else if s.ParentSpanID == "" {
			parent = "none"
		}
		lines = append(lines, s.Kind.String()+" "+s.Name+" <- "+parent)
	}
	slices.Sort(lines)
	return lines
}

// TestGRPCThroughConnWrappers: a gRPC and HTTP service on one port split by cmux (as
// etcd serves), behind a PROXY protocol listener (as behind a load balancer), and gRPC
// over TLS, so that grpc's connections are a *cmux.MuxConn wrapping a *net.TCPConn, or
// wrapping a PROXY protocol connection, or grpc's wrapper of a *tls.Conn: the gRPC
// server spans have the client and server
// addresses - those the app's connection gives, the PROXY header's behind the
// listener - and every trace is one tree: an HTTP request over cmux -> its gRPC call
// -> the gRPC server span over cmux; a gRPC call through the PROXY listener -> its
// HTTP call -> the HTTP server span over cmux. grpc before v1.60 (its addresses in
// two fields) and the newest (a peer.Peer), stripped too, and Go 1.27.
func TestGRPCThroughConnWrappers(t *testing.T) {
	for _, tg := range testenv.BuildConn(t, testenv.ConnBuilds...) {
		t.Run(tg.Toolchain+"/"+tg.Variant.Name, func(t *testing.T) { connWrappers(t, tg) })
	}
}

func connWrappers(t *testing.T, tg testenv.Target) {
	testenv.RequireRoot(t)
	recv := testenv.StartReceiver(t)
	addr, proxyAddr, tlsAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	certFile, keyFile, pool := selfSigned(t)
	env := append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT="+recv.Endpoint, "OTEL_BSP_SCHEDULE_DELAY=200",
		"OTEL_SERVICE_NAME=", "OTEL_RESOURCE_ATTRIBUTES=", "OTEL_TRACES_EXPORTER=", "OTEL_TRACES_SAMPLER=",
		"CONNSERVICE_PROXY="+proxyAddr, "CONNSERVICE_GRPCTLS="+tlsAddr, "CONNSERVICE_CERT="+certFile, "CONNSERVICE_KEY="+keyFile)
	r := start(t, opts{env: env, stdin: strings.NewReader("")}, launchBin(t), "--require-instrumentation", "--", tg.Path, addr)
	waitHTTP(t, "http://"+addr+"/hello") // HTTP/1 through cmux: a span of its own
	waitAccept(t, r, proxyAddr)
	waitAccept(t, r, tlsAddr)
	host, port := splitAddr(t, addr)
	_, tlsPort := splitAddr(t, tlsAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	traceparent := func(trace, parent string) string { return "00-" + trace + "-" + parent + "-01" }

	// A gRPC call straight to the cmux port: its span has this connection's addresses.
	const directTrace, directParent = "5f0c6a1e9b2d4c8fa1b2c3d4e5f60718", "1a2b3c4d5e6f7081"
	direct, directLocal := dialRecorded(t, addr, "", insecure.NewCredentials())
	out := new(wrapperspb.StringValue)
	if err := direct.Invoke(metadata.AppendToOutgoingContext(ctx, "traceparent", traceparent(directTrace, directParent)),
		"/demo.Echo/Say", wrapperspb.String("hi"), out, grpc.WaitForReady(true)); err != nil || out.Value != "hi" {
		t.Fatalf("Say over cmux: %q %v\n%s", out.Value, err, r.stderr)
	}

	// A gRPC call over TLS (grpc's credentials): its connection a wrapper of a *tls.Conn.
	const tlsTrace, tlsParent = "c3d4e5f60718293a4b5c6d7e8f90a1b2", "5e6f708192a3b4c5"
	secure, secureLocal := dialRecorded(t, tlsAddr, "", grpccreds.NewTLS(&tls.Config{RootCAs: pool}))
	if err := secure.Invoke(metadata.AppendToOutgoingContext(ctx, "traceparent", traceparent(tlsTrace, tlsParent)),
		"/demo.Echo/Say", wrapperspb.String("over TLS"), out, grpc.WaitForReady(true)); err != nil || out.Value != "over TLS" {
		t.Fatalf("Say over TLS: %q %v\n%s", out.Value, err, r.stderr)
	}

	// An HTTP request over cmux whose handler calls gRPC over cmux (the app's own
	// connection to its port).
	const relayTrace, relayParent = "0d1e2f3a4b5c6d7e8f9011223344aabb", "2b3c4d5e6f708192"
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/relay", nil)
	req.Header.Set("traceparent", traceparent(relayTrace, relayParent))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("/relay: %v\n%s", err, r.stderr)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "from http" {
		t.Fatalf("/relay: %s %q", resp.Status, body)
	}

	// A gRPC call through the PROXY protocol listener (then cmux) whose handler GETs
	// /hello over cmux.
	const fetchTrace, fetchParent = "a1b2c3d4e5f60718293a4b5c6d7e8f90", "3c4d5e6f708192a3"
	proxied, _ := dialRecorded(t, proxyAddr, proxyHeader("192.0.2.10", 40000, "198.51.100.7", 8443), insecure.NewCredentials())
	if err := proxied.Invoke(metadata.AppendToOutgoingContext(ctx, "traceparent", traceparent(fetchTrace, fetchParent)),
		"/demo.Echo/Fetch", wrapperspb.String("http://"+addr+"/hello"), out, grpc.WaitForReady(true)); err != nil || out.Value != "hello" {
		t.Fatalf("Fetch through the PROXY listener: %q %v\n%s", out.Value, err, r.stderr)
	}

	// HTTP/1 through the PROXY listener: net/http's RemoteAddr is the header's too.
	const helloTrace, helloParent = "b2c3d4e5f60718293a4b5c6d7e8f90a1", "4d5e6f708192a3b4"
	c, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "%sGET /hello HTTP/1.1\r\nHost: %s\r\ntraceparent: %s\r\nConnection: close\r\n\r\n",
		proxyHeader("192.0.2.11", 40001, "198.51.100.7", 8443), addr, traceparent(helloTrace, helloParent))
	b, _ := io.ReadAll(c)
	c.Close()
	if !strings.HasPrefix(string(b), "HTTP/1.1 200") {
		t.Fatalf("GET /hello through the PROXY listener: %q", b)
	}

	const want = 1 + 1 + 1 + 3 + 3 + 1 // waitHTTP's GET, Say, Say over TLS, /relay's three, Fetch's three, /hello's
	if spans, ok := recv.WaitFor(20*time.Second, func(ss []testenv.Span) bool { return len(ss) >= want }); !ok {
		t.Fatalf("%d spans, want %d: %s", len(spans), want, spanList(spans))
	}
	time.Sleep(500 * time.Millisecond) // and no more
	spans := recv.Spans()
	if len(spans) != want {
		t.Errorf("%d spans, want %d: %s", len(spans), want, spanList(spans))
	}

	// Every span's place in its tree.
	server, client := tracepb.Span_SPAN_KIND_SERVER.String(), tracepb.Span_SPAN_KIND_CLIENT.String()
	trees := map[string][]string{
		directTrace: {server + " demo.Echo/Say <- remote " + directParent},
		tlsTrace:    {server + " demo.Echo/Say <- remote " + tlsParent},
		relayTrace: {
			client + " demo.Echo/Say <- " + server + " GET /relay",
			server + " GET /relay <- remote " + relayParent,
			server + " demo.Echo/Say <- " + client + " demo.Echo/Say",
		},
		fetchTrace: {
			client + " GET <- " + server + " demo.Echo/Fetch",
			server + " GET /hello <- " + client + " GET",
			server + " demo.Echo/Fetch <- remote " + fetchParent,
		},
		helloTrace: {server + " GET /hello <- remote " + helloParent},
	}
	for trace, want := range trees {
		if got := treeOf(spans, trace); !slices.Equal(got, want) {
			t.Errorf("trace %s:\n  %s\nwant\n  %s\nall spans: %s", trace, strings.Join(got, "\n  "), strings.Join(want, "\n  "), spanList(spans))
		}
	}
	for _, s := range spans {
		if _, known := trees[s.TraceID]; !known && !(s.Name == "GET /hello" && s.ParentSpanID == "") {
			t.Errorf("a span in no trace the test made: %s", spanList([]testenv.Span{s}))
		}
	}

	// The gRPC server spans' addresses.
	find := func(trace, name string) testenv.Span {
		t.Helper()
		for _, s := range spans {
			if s.TraceID == trace && s.Name == name && s.Kind == tracepb.Span_SPAN_KIND_SERVER {
				return s
			}
		}
		t.Fatalf("no server span %s in trace %s: %s", name, trace, spanList(spans))
		return testenv.Span{}
	}
	addrs := func(s testenv.Span) string {
		return fmt.Sprintf("client %v:%v server %v:%v", s.Attrs["client.address"], s.Attrs["client.port"], s.Attrs["server.address"], s.Attrs["server.port"])
	}
	_, directPort := splitAddr(t, directLocal())
	_, securePort := splitAddr(t, secureLocal())
	for _, c := range []struct {
		span testenv.Span
		want string
	}{
		{find(directTrace, "demo.Echo/Say"), fmt.Sprintf("client 127.0.0.1:%d server %s:%d", directPort, host, port)},
		{find(tlsTrace, "demo.Echo/Say"), fmt.Sprintf("client 127.0.0.1:%d server %s:%d", securePort, host, tlsPort)},
		{find(fetchTrace, "demo.Echo/Fetch"), "client 192.0.2.10:40000 server 198.51.100.7:8443"},
		{find(helloTrace, "GET /hello"), fmt.Sprintf("client 192.0.2.11:40001 server %s:%d", host, port)},
	} {
		if got := addrs(c.span); got != c.want {
			t.Errorf("%s: %s, want %s", c.span.Name, got, c.want)
		}
	}
	// The app's own call to its port: a client port of its own.
	relayed := find(relayTrace, "demo.Echo/Say")
	if p, ok := relayed.Attrs["client.port"].(int64); !ok || p <= 0 || relayed.Attrs["client.address"] != "127.0.0.1" ||
		relayed.Attrs["server.address"] != host || relayed.Attrs["server.port"] != int64(port) {
		t.Errorf("/relay's gRPC server span: %s", addrs(relayed))
	}
	if said := launcherLines(r); said != "" {
		t.Errorf("launcher said: %s", said)
	}
}
