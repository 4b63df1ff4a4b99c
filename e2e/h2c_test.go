package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// TestH2CPropagation chains two traced apps over plaintext HTTP/2, with net/http's
// client and with golang.org/x/net's: the kernel puts the traceparent into each
// request's header block, so the second app's server spans are the first app's client
// spans' children; a traceparent the app sends itself (its encoder Huffman-codes it)
// gets the client span's in its place, never a second; and bodies, large and many at
// once on one connection, arrive byte for byte.
func TestH2CPropagation(t *testing.T) {
	tgs := testenv.BuildGRPC(t, testenv.GRPCBuild{Version: "v1.60.1", Toolchain: "go1.24.11"}, testenv.GRPCBuild{Version: "v1.85.0", Toolchain: "go1.26.8"},
		testenv.GRPCBuild{Version: "v1.85.0", Toolchain: "go1.27.3"})
	for _, tg := range tgs {
		t.Run(tg.Toolchain, func(t *testing.T) {
			recv := testenv.StartReceiver(t)
			frontHTTP, backH2C := freeAddr(t), freeAddr(t)
			back, _ := tracedGRPC(t, tg, recv, "", "GRPCSERVICE_H2C="+backH2C)
			front, _ := tracedGRPC(t, tg, recv, "", "GRPCSERVICE_HTTP="+frontHTTP)
			waitHTTP(t, "http://"+backH2C+"/hello")
			waitHTTP(t, "http://"+frontHTTP+"/hello")
			time.Sleep(300 * time.Millisecond)
			base := len(recv.Spans())

			traceID, parentID := "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
			incoming := "00-" + traceID + "-" + parentID + "-01"
			proxy := func(via string, keep bool, body []byte, traceparent string) (string, http.Header) {
				t.Helper()
				q := url.Values{"to": {"http://" + backH2C + "/sha"}, "via": {via}}
				if keep {
					q.Set("keep", "1")
				}
				req, _ := http.NewRequest(http.MethodPost, "http://"+frontHTTP+"/proxy?"+q.Encode(), bytes.NewReader(body))
				if traceparent != "" {
					req.Header.Set("traceparent", traceparent)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatalf("proxy: %v\nfront: %s\nback: %s", err, front.stderr, back.stderr)
				}
				defer resp.Body.Close()
				got, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 || resp.Header.Get("X-Proto") != "HTTP/2.0" {
					t.Fatalf("proxy via %q: %s %s %q", via, resp.Status, resp.Header.Get("X-Proto"), got)
				}
				return string(got), resp.Header
			}

			requests := 0
			for _, via := range []string{"", "x"} {
				// One request under an incoming trace: the hop joins it, once.
				_, h := proxy(via, false, []byte("hello"), incoming)
				requests++
				// The back end joins the traceparent values it got with ",". (Counting
				// "00-" miscounted a span ID ending in 00, one request in 256.)
				seen := h.Get("X-Traceparent-Seen")
				if values := strings.Split(seen, ","); len(values) != 1 || len(seen) != 55 || !strings.HasPrefix(seen, "00-"+traceID+"-") {
					t.Errorf("via %q: the back end saw traceparent %q, want one in trace %s", via, seen, traceID)
				}
				// The app's own traceparent: the front's client span's takes its
				// place, alone.
				_, h = proxy(via, true, []byte("hello"), incoming)
				requests++
				if seen := h.Get("X-Traceparent-Seen"); seen == incoming || len(seen) != 55 || !strings.HasPrefix(seen, "00-"+traceID+"-") {
					t.Errorf("via %q with the app's own traceparent: the back end saw %q, want one of the front's client spans in trace %s", via, seen, traceID)
				}
				// Bodies of every size, many at once over the one connection.
				sizes := []int{0, 1, 16384, 100 << 10, 1 << 20, 3 << 20}
				var wg sync.WaitGroup
				for i := 0; i < 24; i++ {
					body := make([]byte, sizes[i%len(sizes)])
					rand.Read(body)
					want := fmt.Sprintf("%x", sha256.Sum256(body))
					wg.Add(1)
					requests++
					go func() {
						defer wg.Done()
						if got, _ := proxy(via, false, body, ""); got != want {
							t.Errorf("via %q: %d bytes arrived as %s, sent %s", via, len(body), got, want)
						}
					}()
				}
				wg.Wait()
			}

			// Each request: the front's server and client spans, the back's server span.
			want := base + 3*requests
			spans, ok := recv.WaitFor(30*time.Second, func(s []testenv.Span) bool { return len(s) >= want })
			if !ok {
				t.Fatalf("%d spans, want %d: %s", len(spans), want, spanList(spans))
			}
			time.Sleep(500 * time.Millisecond)
			spans = recv.Spans()[base:]
			clients := map[string]testenv.Span{}
			for _, s := range spans {
				if s.Kind == tracepb.Span_SPAN_KIND_CLIENT {
					clients[s.SpanID] = s
				}
			}
			joined, own := 0, 0
			for _, s := range spans {
				if s.Kind != tracepb.Span_SPAN_KIND_SERVER || !strings.HasSuffix(s.Name, "/sha") && s.Attrs["url.path"] != "/sha" {
					continue
				}
				if s.ParentSpanID == parentID { // the app's own traceparent, left
					own++
					continue
				}
				c, ok := clients[s.ParentSpanID]
				if !ok || c.TraceID != s.TraceID {
					t.Errorf("back end span %s (trace %s): parent %s is no client span of its trace", s.Name, s.TraceID, s.ParentSpanID)
					continue
				}
				joined++
			}
			if joined != requests || own != 0 {
				t.Errorf("%d back end spans children of the front's client spans, %d of the app's own traceparent; want %d, 0: %s", joined, own, requests, spanList(spans))
			}
			for _, r := range []*run{front, back} {
				if said := launcherLines(r); said != "" {
					t.Errorf("launcher said: %s", said)
				}
			}
		})
	}
}

// waitHTTP waits for url to answer.
func waitHTTP(t *testing.T, url string) {
	t.Helper()
	waitGet(t, http.DefaultClient, url)
}

// waitGet waits for url to answer client.
func waitGet(t *testing.T, client *http.Client, url string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
