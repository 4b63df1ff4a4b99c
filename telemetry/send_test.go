package telemetry

import (
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig"
)

// traceService answers each export with the next of its answers (the last one
// repeated), and keeps the requests and their api-key header.
type traceService struct {
	coltracepb.UnimplementedTraceServiceServer
	mu       sync.Mutex
	answers  []error
	requests []*coltracepb.ExportTraceServiceRequest
	keys     []string
}

func (s *traceService) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	md, _ := metadata.FromIncomingContext(ctx)
	s.keys = append(s.keys, md.Get("api-key")...)
	err := s.answers[min(len(s.requests), len(s.answers)-1)]
	s.requests = append(s.requests, req)
	if err != nil {
		return nil, err
	}
	return &coltracepb.ExportTraceServiceResponse{PartialSuccess: &coltracepb.ExportTracePartialSuccess{RejectedSpans: 1, ErrorMessage: "span 2 too old"}}, nil
}

// The gRPC sender sends the encoded request as it is, with the headers; it retries
// UNAVAILABLE, not INVALID_ARGUMENT, and reports a partial success's rejected spans.
func TestGRPCSender(t *testing.T) {
	defer retryInitial.Store(retryInitial.Swap(int64(10 * time.Millisecond)))
	svc := &traceService{answers: []error{status.Error(codes.Unavailable, "restarting"), nil}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, svc)
	go srv.Serve(l)
	defer srv.Stop()

	s, err := newSender("otlp", otelconfig.OTLP{Protocol: "grpc", Endpoint: &url.URL{Scheme: "http", Host: l.Addr().String()}, Insecure: true, Headers: map[string]string{"api-key": "k"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	req := testRequest(t)
	rejected, err := send(context.Background(), s, req)
	if rejected != 1 || err == nil {
		t.Errorf("rejected %d, err %v: want the partial success said", rejected, err)
	}
	if len(svc.requests) != 2 || !proto.Equal(svc.requests[1], decodeRequest(t, req)) || svc.keys[1] != "k" {
		t.Errorf("%d requests (want the first retried), api-key %q", len(svc.requests), svc.keys)
	}
	svc.answers = []error{status.Error(codes.InvalidArgument, "bad")}
	if _, err := send(context.Background(), s, req); err == nil || err.Error() != "InvalidArgument: bad" || len(svc.requests) != 3 {
		t.Errorf("INVALID_ARGUMENT: %v after %d requests, want no retry", err, len(svc.requests))
	}
}

// The HTTP sender POSTs the request as it is; it retries 503 (after Retry-After), not
// 400, and reports a partial success's rejected spans.
func TestHTTPSender(t *testing.T) {
	defer retryInitial.Store(retryInitial.Swap(int64(10 * time.Millisecond)))
	var mu sync.Mutex
	var bodies [][]byte
	status := []int{http.StatusServiceUnavailable, http.StatusOK}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				t.Error(err)
				return
			}
			body = zr
		}
		b, _ := io.ReadAll(body)
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" || r.Header.Get("api-key") != "k" {
			t.Errorf("%s %s %v", r.Method, r.URL, r.Header)
		}
		code := status[min(len(bodies), len(status)-1)]
		bodies = append(bodies, b)
		if code != http.StatusOK {
			w.Header().Set("Retry-After", "0")
			http.Error(w, "busy", code)
			return
		}
		resp, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{PartialSuccess: &coltracepb.ExportTracePartialSuccess{RejectedSpans: 1}})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(resp)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL + "/v1/traces")
	s, err := newSender("otlp", otelconfig.OTLP{Protocol: "http/protobuf", Endpoint: u, Insecure: true, Headers: map[string]string{"api-key": "k"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	req := testRequest(t)
	if rejected, err := send(context.Background(), s, req); rejected != 1 || err == nil {
		t.Errorf("rejected %d, err %v", rejected, err)
	}
	mu.Lock()
	if len(bodies) != 2 || string(bodies[1]) != string(req) {
		t.Errorf("%d posts, want the first retried with the same bytes", len(bodies))
	}
	status = []int{http.StatusBadRequest}
	mu.Unlock()
	if _, err := send(context.Background(), s, req); err == nil || len(bodies) != 3 {
		t.Errorf("400: %v after %d posts, want no retry", err, len(bodies))
	}
	// OTEL_EXPORTER_OTLP_COMPRESSION=gzip: the same bytes, compressed, twice (the
	// writer is reused).
	mu.Lock()
	status = []int{http.StatusOK}
	mu.Unlock()
	z, err := newSender("otlp", otelconfig.OTLP{Protocol: "http/protobuf", Endpoint: u, Insecure: true, Headers: map[string]string{"api-key": "k"}, Compression: "gzip"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := send(context.Background(), z, req); err == nil { // the partial success
			t.Error("gzip: no partial success said")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 5 || string(bodies[3]) != string(req) || string(bodies[4]) != string(req) {
		t.Errorf("gzip: %d posts, not the request's bytes", len(bodies))
	}
}

func testRequest(t *testing.T) []byte {
	res, err := appResource(context.Background(), App{Path: "/app"}, envResource(t))
	if err != nil {
		t.Fatal(err)
	}
	enc := newEncoder(res, NewClock())
	var b batch
	for _, s := range testSpans() {
		b.add(scopedSpan{scopeOf(s), enc.appendSpan(nil, s, 1)})
	}
	return enc.request(nil, &b)
}

func decodeRequest(t *testing.T, b []byte) *coltracepb.ExportTraceServiceRequest {
	var r coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

// The console exporter writes OTLP/JSON: IDs in hex, enums as numbers.
func TestConsoleSender(t *testing.T) {
	var out strings.Builder
	c := &consoleSender{w: &out}
	if _, err := send(context.Background(), c, testRequest(t)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"traceId": "01020000000000000000000000000000"`, `"parentSpanId": "0300000000000000"`, `"kind": 2`, `"name": "GET /items/{id}"`, `"stringValue": "postgresql"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %s in\n%s", want, out.String())
		}
	}
}
