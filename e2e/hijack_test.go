package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// Requests that never reach net/http's finishRequest (HTTP/1) or handlerDone (HTTP/2),
// where a server span ends: the handler hijacked the connection (a WebSocket upgrade),
// or panicked (over HTTP/1 and over HTTP/2). Each is one span, ended when its handler
// is done, with the calls the handler made after the hijack as its children; a panic
// is an error. Nothing stays in flight: at exit the launcher has no open span to end.
func TestHijackAndPanicSpans(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	upstream := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "echo") })}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go upstream.Serve(l)
	t.Cleanup(func() { upstream.Close() })

	for _, tg := range testenv.BuildTargets(t, "httpserver", testenv.Toolchains, []testenv.Variant{testenv.Plain}) {
		t.Run(tg.Toolchain, func(t *testing.T) {
			recv := testenv.StartReceiver(t)
			tlsAddr := freeAddr(t)
			r, addr := tracedServer(t, tg, recv, "UPSTREAM=http://"+l.Addr().String(),
				"HTTPSERVER_TLS="+tlsAddr, "HTTPSERVER_TLS_CERT="+certFile, "HTTPSERVER_TLS_KEY="+keyFile)
			firstRequest(t, addr, "/items/first")
			waitAccept(t, r, tlsAddr)
			h2 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
			defer h2.CloseIdleConnections()

			// raw sends one request on a connection of its own and reads until the
			// server closes it.
			raw := func(path string) (string, time.Time, time.Time) {
				t.Helper()
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				before := time.Now()
				fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, addr)
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				b, _ := io.ReadAll(c)
				return string(b), before, time.Now()
			}
			const n, hold = 5, 50 * time.Millisecond
			type window struct{ before, after time.Time }
			var hijacks []window
			for i := 0; i < n; i++ {
				got, before, after := raw("/hijack?d=" + hold.String())
				if !strings.HasPrefix(got, "HTTP/1.1 200 OK") {
					t.Fatalf("hijack: %q", got)
				}
				hijacks = append(hijacks, window{before, after})
				if got, _, _ := raw("/panic"); got != "" {
					t.Fatalf("panic: answered %q, want the connection closed", got)
				}
				// Over HTTP/2 the server resets the stream.
				if resp, err := (&http.Client{Transport: h2}).Get("https://" + tlsAddr + "/panic"); err == nil {
					resp.Body.Close()
					t.Fatalf("HTTP/2 panic: answered %s, want the stream reset", resp.Status)
				}
			}
			firstRequest(t, addr, "/items/after")

			count := func(spans []testenv.Span, path string, proto ...string) int {
				c := 0
				for _, s := range spans {
					if s.Kind == tracepb.Span_SPAN_KIND_SERVER && s.Attrs["url.path"] == path &&
						(len(proto) == 0 || s.Attrs["network.protocol.version"] == proto[0]) {
						c++
					}
				}
				return c
			}
			spans, ok := recv.WaitFor(20*time.Second, func(s []testenv.Span) bool {
				return count(s, "/hijack") >= n && count(s, "/panic", "1.1") >= n && count(s, "/panic", "2") >= n &&
					findPath(s, "/items/after") != nil && len(s) >= 4*n+2
			})
			if !ok {
				t.Fatalf("spans: %s\n%s", spanList(spans), r.stderr)
			}
			clients := map[string]testenv.Span{} // by parent
			for _, s := range spans {
				if s.Kind == tracepb.Span_SPAN_KIND_CLIENT {
					clients[s.ParentSpanID] = s
				}
			}
			var hijacked []testenv.Span
			for _, s := range spans {
				if s.Kind != tracepb.Span_SPAN_KIND_SERVER {
					continue
				}
				switch s.Attrs["url.path"] {
				case "/hijack":
					hijacked = append(hijacked, s)
					// Ended when the handler returned, as it was at serverHandler's RETs,
					// not at the hijack: its status is the implicit 200 it had there.
					if s.End.Sub(s.Start) < hold || s.StatusCode != tracepb.Status_STATUS_CODE_UNSET ||
						s.Attrs["http.response.status_code"] != int64(200) || s.Attrs[endReason] != nil || s.Name != "GET /hijack" {
						t.Errorf("hijacked request: %s", spanList([]testenv.Span{s}))
					}
					c, ok := clients[s.SpanID]
					if !ok || c.TraceID != s.TraceID || c.End.After(s.End) {
						t.Errorf("the call after the hijack is not the child of %s: %s", s.SpanID, spanList(spans))
					}
				case "/panic":
					if s.StatusCode != tracepb.Status_STATUS_CODE_ERROR || s.Attrs["error.type"] != "panic" ||
						s.Attrs["http.response.status_code"] != nil || s.Attrs[endReason] != nil || s.Name != "GET /panic" {
						t.Errorf("panicked request: %s", spanList([]testenv.Span{s}))
					}
				}
			}
			// Each span begins within the client's view of its request (allowing for the
			// clock conversion's error) and ends when the handler returns: after its
			// hold, and just after it closed the connection, which the client saw (its
			// goroutine may wait for a CPU meanwhile on a loaded machine).
			const slack, late = 500 * time.Microsecond, 20 * time.Millisecond
			sort.Slice(hijacked, func(i, j int) bool { return hijacked[i].Start.Before(hijacked[j].Start) })
			for i, s := range hijacked {
				if i < len(hijacks) && (s.Start.Before(hijacks[i].before.Add(-slack)) || s.End.After(hijacks[i].after.Add(late))) {
					t.Errorf("hijacked span %d [%s, %s] outside its request's window [%s, %s]", i, s.Start.Format(time.StampMicro),
						s.End.Format(time.StampMicro), hijacks[i].before.Format(time.StampMicro), hijacks[i].after.Format(time.StampMicro))
				}
			}

			r.signal(syscall.SIGTERM)
			if e := r.wait(10 * time.Second); e.code != 128+int(syscall.SIGTERM) {
				t.Errorf("launcher %v after SIGTERM, want the app's 143", e)
			}
			time.Sleep(300 * time.Millisecond) // a span ended at exit would arrive now
			spans = recv.Spans()
			if h, p1, p2 := count(spans, "/hijack"), count(spans, "/panic", "1.1"), count(spans, "/panic", "2"); h != n || p1 != n || p2 != n {
				t.Errorf("%d hijacked and %d panicked requests over HTTP/1.1 and HTTP/2 gave %d, %d and %d server spans: %s", n, n, h, p1, p2, spanList(spans))
			}
			if strings.Contains(r.stderr.String(), "still open at the app's exit") {
				t.Errorf("spans left in flight:\n%s", r.stderr)
			}
		})
	}
}

// HTTP/2 handlers that panic, on each HTTP/2 server: net/http's over TLS and over h2c
// (Go 1.24+), and x/net's h2c handler (its own server; Go 1.27's under x/net v0.60+).
// The stream is reset; its span ends then, an error, one per request, none left in
// flight at exit.
func TestHTTP2PanicSpans(t *testing.T) {
	tgs := testenv.BuildGRPC(t, append(testenv.GRPCBuilds, testenv.GRPCBuild{Version: "v1.85.0", Toolchain: "go1.27.3"})...)
	for _, tg := range tgs {
		t.Run(tg.Toolchain+"-"+tg.Variant.Name, func(t *testing.T) {
			recv := testenv.StartReceiver(t)
			app, servers, _ := tracedHTTP2Servers(t, tg, recv)
			const n = 3
			for _, s := range servers {
				name := s.name
				for i := 0; i < n; i++ {
					req, _ := http.NewRequest(http.MethodGet, s.url+"/panic", nil)
					req.Header.Set("User-Agent", name) // each server's spans, told apart
					if resp, err := (&http.Client{Transport: s.rt}).Do(req); err == nil {
						resp.Body.Close()
						t.Fatalf("%s: answered %s, want the stream reset", name, resp.Status)
					}
				}
			}
			count := func(spans []testenv.Span, name string) int {
				c := 0
				for _, s := range spans {
					if s.Kind == tracepb.Span_SPAN_KIND_SERVER && s.Attrs["url.path"] == "/panic" && s.Attrs["user_agent.original"] == name {
						c++
					}
				}
				return c
			}
			spans, ok := recv.WaitFor(20*time.Second, func(ss []testenv.Span) bool {
				for _, s := range servers {
					if count(ss, s.name) < n {
						return false
					}
				}
				return true
			})
			if !ok {
				t.Fatalf("spans: %s\n%s", spanList(spans), app.stderr)
			}
			for _, s := range spans {
				if s.Attrs["url.path"] == "/panic" && (s.StatusCode != tracepb.Status_STATUS_CODE_ERROR || s.Attrs["error.type"] != "panic" ||
					s.Attrs["network.protocol.version"] != "2" || s.Attrs["http.response.status_code"] != nil || s.Attrs[endReason] != nil) {
					t.Errorf("panicked HTTP/2 request: %s", spanList([]testenv.Span{s}))
				}
			}
			app.signal(syscall.SIGTERM)
			app.wait(10 * time.Second)
			time.Sleep(300 * time.Millisecond) // a span ended at exit would arrive now
			spans = recv.Spans()
			for _, s := range servers {
				if c := count(spans, s.name); c != n {
					t.Errorf("%s: %d panicked requests gave %d spans: %s", s.name, n, c, spanList(spans))
				}
			}
			if strings.Contains(app.stderr.String(), "still open at the app's exit") {
				t.Errorf("spans left in flight:\n%s", app.stderr)
			}
		})
	}
}
