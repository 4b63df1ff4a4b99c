package telemetry

import (
	"context"
	"io"
	"log"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig"
)

// otlpHTTPReceiver answers every POST 200 and keeps, for each, the path and headers.
type otlpHTTPReceiver struct {
	*httptest.Server
	mu   sync.Mutex
	got  []http.Header
	path []string
}

func newOTLPHTTPReceiver(t *testing.T) *otlpHTTPReceiver {
	r := &otlpHTTPReceiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.got = append(r.got, req.Header.Clone())
		r.path = append(r.path, req.URL.Path)
		r.mu.Unlock()
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *otlpHTTPReceiver) paths() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.path)
}

// A header name that is not a token is left out of both signals' exports, which go
// with the other headers, and said once: by the configuration, not again by the
// metrics exporters' own reading of the variable.
func TestBadHeaderNameLeftOutOfBothSignals(t *testing.T) {
	recv := newOTLPHTTPReceiver(t)
	for k, v := range map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT": recv.URL,
		"OTEL_EXPORTER_OTLP_HEADERS": "x bad=1,api-key=k", "OTEL_EXPORTER_OTLP_TIMEOUT": "2000", "OTEL_METRICS_EXPORTER": "otlp", "OTEL_TRACES_EXPORTER": "otlp"} {
		t.Setenv(k, v)
	}
	var logged strings.Builder
	defer slog.SetDefault(slog.Default())
	slog.SetDefault(slog.New(slog.NewTextHandler(&logged, nil)))
	otel.SetLogger(logr.New(sdkSink{}))
	cfg, err := otelconfig.FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(context.Background(), App{Path: "/app"}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.Emit(&Span{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, Kind: trace.SpanKindServer, Name: "GET", Start: 1, End: 2,
		Attributes: []attribute.KeyValue{attribute.String("http.request.method", "GET")}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if paths := recv.paths(); !slices.Contains(paths, "/v1/traces") || !slices.Contains(paths, "/v1/metrics") {
		t.Errorf("received %q, want the spans and the metrics; log:\n%s", paths, logged.String())
	}
	for _, h := range recv.got {
		if h.Get("api-key") != "k" {
			t.Errorf("headers %v, want api-key", h)
		}
	}
	want := []string{`OTEL_EXPORTER_OTLP_HEADERS: header name "x bad" is not a token: left out`}
	if !slices.Equal(cfg.Warnings, want) {
		t.Errorf("warnings %q, want %q", cfg.Warnings, want)
	}
	if strings.Contains(logged.String(), "level=WARN") {
		t.Errorf("warned again:\n%s", logged.String())
	}
}

// forwardProxy is an HTTP proxy: it forwards absolute-form requests (http:// targets)
// and tunnels CONNECT (https:// targets, gRPC), and keeps the local address of each
// connection it made upstream, so that a receiver can tell what came through it.
type forwardProxy struct {
	*httptest.Server
	mu       sync.Mutex
	upstream map[string]bool // local addresses of its connections to the targets
	requests int
}

func newForwardProxy(t *testing.T) *forwardProxy {
	p := &forwardProxy{upstream: map[string]bool{}}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			p.mu.Lock()
			p.upstream[c.LocalAddr().String()] = true
			p.mu.Unlock()
		}
		return c, err
	}
	forward := &http.Transport{DialContext: dial} // no proxy of its own
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.requests++
		p.mu.Unlock()
		if r.Method == http.MethodConnect {
			up, err := dial(r.Context(), "tcp", r.Host)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			down, buf, err := http.NewResponseController(w).Hijack()
			if err != nil {
				up.Close()
				return
			}
			// As proxies answer: no body, no length (net/http's own answer would be
			// chunked, and gRPC's client reads to the end of such a body).
			down.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
			go func() { io.Copy(up, buf); up.Close() }()
			io.Copy(down, up)
			down.Close()
			return
		}
		out := r.Clone(r.Context())
		out.RequestURI = ""
		resp, err := forward.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		maps.Copy(w.Header(), resp.Header)
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	t.Cleanup(func() { p.Close(); forward.CloseIdleConnections() })
	return p
}

// through says whether a connection from remote (a receiver's view) was the proxy's.
func (p *forwardProxy) through(remote string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.upstream[remote]
}

func (p *forwardProxy) used() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests
}

// reachableHost is an address of this host that is not a loopback one: Go's proxy
// rules never send requests for localhost or 127.0.0.0/8 through a proxy. It is the
// first non-loopback IPv4 address of an interface, else 0.0.0.0 (on Linux, a connection
// to it reaches this host; it is no loopback address to the proxy rules).
func reachableHost(t *testing.T) string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ip, ok := a.(*net.IPNet); ok && ip.IP.To4() != nil && !ip.IP.IsLoopback() && !ip.IP.IsLinkLocalUnicast() {
			return ip.IP.String()
		}
	}
	return "0.0.0.0"
}

// setProxyEnv sets the proxy variables (their lower-case forms cleared: they are read
// too).
func setProxyEnv(t *testing.T, httpProxy, httpsProxy, noProxy string) {
	for _, v := range []struct{ name, value string }{{"HTTP_PROXY", httpProxy}, {"HTTPS_PROXY", httpsProxy}, {"NO_PROXY", noProxy}} {
		t.Setenv(v.name, v.value)
		t.Setenv(strings.ToLower(v.name), "")
	}
}

// Spans go through the proxy HTTP_PROXY names, as the SDK's HTTP exporter's (and the
// launcher's metrics) do; NO_PROXY bypasses it. The collector is at this host's
// non-loopback address: Go's proxy rules leave loopback addresses alone.
func TestHTTPSenderUsesTheEnvironmentsProxy(t *testing.T) {
	host := reachableHost(t)
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var remotes []string
	recv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		remotes = append(remotes, r.RemoteAddr)
		mu.Unlock()
	})}
	go recv.Serve(l)
	defer recv.Close()
	proxy := newForwardProxy(t)
	endpoint, _ := url.Parse("http://" + l.Addr().String() + "/v1/traces")
	for _, c := range []struct {
		noProxy string
		proxied bool
	}{{"", true}, {host, false}} {
		setProxyEnv(t, proxy.URL, "", c.noProxy)
		before := proxy.used()
		s, err := newSender("otlp", otelconfig.OTLP{Protocol: "http/protobuf", Endpoint: endpoint, Insecure: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := send(context.Background(), s, testRequest(t)); err != nil {
			t.Errorf("NO_PROXY=%q: %v", c.noProxy, err)
		}
		s.close()
		mu.Lock()
		got := len(remotes) > 0 && proxy.through(remotes[len(remotes)-1])
		mu.Unlock()
		if got != c.proxied || (proxy.used() > before) != c.proxied {
			t.Errorf("NO_PROXY=%q: through the proxy %v (%d requests), want %v", c.noProxy, got, proxy.used()-before, c.proxied)
		}
	}
}

// Which failures are retried is the SDK exporters': over HTTP 429, 502, 503 and 504 and
// temporary transport errors (a timeout), not another status, a certificate that does
// not verify or a refused connection; over gRPC the codes of otlptracegrpc's
// retryable(), RESOURCE_EXHAUSTED only with RetryInfo. What is not retried fails at
// once, not at the export's timeout.
func TestRetryClassification(t *testing.T) {
	var code atomic.Int32
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c := int(code.Load()); c == 0 {
			<-r.Context().Done() // no answer: the client gives up
		} else {
			w.WriteHeader(c)
		}
	}))
	defer plain.Close()
	untrusted := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	untrusted.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshakes refused
	untrusted.StartTLS()
	defer untrusted.Close()
	refusing := httptest.NewServer(http.NotFoundHandler())
	refusing.Close()
	sender := func(raw string) sender {
		u, _ := url.Parse(raw + "/v1/traces")
		s, err := newSender("otlp", otelconfig.OTLP{Protocol: "http/protobuf", Endpoint: u, Insecure: u.Scheme == "http"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.close() })
		return s
	}
	for _, c := range []struct {
		status int // 0: no answer within the attempt's timeout, 100 ms
		url    string
		retry  bool
	}{
		{400, plain.URL, false}, {401, plain.URL, false}, {403, plain.URL, false}, {404, plain.URL, false},
		{413, plain.URL, false}, {500, plain.URL, false}, {501, plain.URL, false},
		{429, plain.URL, true}, {502, plain.URL, true}, {503, plain.URL, true}, {504, plain.URL, true},
		{0, plain.URL, true}, {0, untrusted.URL, false}, {0, refusing.URL, false},
	} {
		code.Store(int32(c.status))
		timeout := 5 * time.Second
		if c.status == 0 && c.url == plain.URL {
			timeout = 100 * time.Millisecond
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		retry, _, err := sender(c.url).attempt(ctx, nil, new(coltracepb.ExportTraceServiceResponse))
		cancel()
		if err == nil || retry != c.retry {
			t.Errorf("%s, status %d: retry %v (%v), want %v", c.url, c.status, retry, err, c.retry)
		}
	}
	// Not retried: the export fails now, with the reason, though it had 5 s.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	begin := time.Now()
	if _, err := send(ctx, sender(untrusted.URL), testRequest(t)); err == nil || !strings.Contains(err.Error(), "x509: certificate signed by unknown authority") ||
		time.Since(begin) > time.Second {
		t.Errorf("untrusted certificate: %v after %s, want the x509 error at once", err, time.Since(begin))
	}

	retryInfo, _ := status.New(codes.ResourceExhausted, "slow down").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)})
	retried := map[codes.Code]bool{codes.Canceled: true, codes.DeadlineExceeded: true, codes.Aborted: true, codes.OutOfRange: true,
		codes.Unavailable: true, codes.DataLoss: true}
	for c := codes.OK + 1; c <= codes.Unauthenticated; c++ {
		if retry, _ := retryableStatus(status.New(c, "")); retry != retried[c] {
			t.Errorf("gRPC %s: retry %v, want %v", c, retry, retried[c])
		}
	}
	if retry, throttle := retryableStatus(retryInfo); !retry || throttle != time.Second {
		t.Errorf("RESOURCE_EXHAUSTED with RetryInfo: retry %v after %s, want after 1s", retry, throttle)
	}
}

// A flush that runs out of time says why, for each signal: the spans' last export
// error is in their stats (the loss report at exit says it), the metrics' is said at
// once. Here over gRPC to a collector whose certificate does not verify: UNAVAILABLE,
// retried until the deadline.
func TestShutdownSaysTheLastExportError(t *testing.T) {
	untrusted := httptest.NewUnstartedServer(http.NotFoundHandler())
	untrusted.Config.ErrorLog = log.New(io.Discard, "", 0)
	untrusted.EnableHTTP2 = true // gRPC wants h2 before it checks the certificate
	untrusted.StartTLS()
	defer untrusted.Close()
	cfg, err := otelconfig.From(vars{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://" + untrusted.Listener.Addr().String(), "OTEL_METRICS_EXPORTER": "otlp"}.get)
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	defer slog.SetDefault(slog.Default())
	slog.SetDefault(slog.New(slog.NewTextHandler(&syncWriter{w: &logged}, nil)))
	p, err := New(context.Background(), App{Path: "/app"}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.Emit(&Span{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, Kind: trace.SpanKindServer, Name: "GET", Start: 1, End: 2,
		Attributes: []attribute.KeyValue{attribute.String("http.request.method", "GET")}})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := p.Shutdown(ctx); err == nil {
		t.Error("Shutdown: no error")
	}
	const cause = "x509: certificate signed by unknown authority"
	if st := p.Stats()[0]; st.Unexported() != 1 || !strings.Contains(st.LastError, cause) {
		t.Errorf("stats %+v, want the span unexported and the %s", st, cause)
	}
	if out := logged.String(); !strings.Contains(out, "exporting metrics: ") || !strings.Contains(out, cause) {
		t.Errorf("the metrics' last export error was not said:\n%s", out)
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}
