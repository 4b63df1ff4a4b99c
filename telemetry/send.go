package telemetry

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"golang.org/x/net/http/httpproxy"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/encoding/gzip" // OTEL_EXPORTER_OTLP_COMPRESSION=gzip
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/otel-go-launcher/otel-go-launcher/internal/version"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig"
)

// sender sends encoded ExportTraceServiceRequests: over OTLP/gRPC, OTLP/HTTP, or to
// the console. An attempt sends once, and says whether its error may be retried and
// how long the receiver asked to wait, if it did; send does the retrying.
type sender interface {
	attempt(ctx context.Context, req []byte, resp *coltracepb.ExportTraceServiceResponse) (retry bool, throttle time.Duration, err error)
	close() error
}

// send sends req, retrying what the OTLP specification says to retry, until ctx ends.
// It returns how many of the request's spans the receiver rejected (a partial
// success: said, not retried).
func send(ctx context.Context, s sender, req []byte) (rejected int, err error) {
	var resp coltracepb.ExportTraceServiceResponse
	if err := retrying(ctx, func(ctx context.Context) (bool, time.Duration, error) { return s.attempt(ctx, req, &resp) }); err != nil {
		return 0, err
	}
	return partialSuccess(&resp)
}

// newSender is the sender of the exporter name.
func newSender(name string, o otelconfig.OTLP) (sender, error) {
	switch name {
	case "otlp":
		if o.Protocol == "http/protobuf" {
			return newHTTPSender(o)
		}
		return newGRPCSender(o)
	case "console":
		return &consoleSender{w: os.Stdout}, nil
	}
	return nil, fmt.Errorf("no such exporter")
}

// transport is how an OTLP exporter of either signal connects: the gRPC credentials,
// always explicit (the metrics exporter's own reading of OTEL_EXPORTER_OTLP_CERTIFICATE
// would otherwise win over plaintext), and the TLS configuration for http/protobuf,
// nil for plaintext.
func transport(o otelconfig.OTLP) (credentials.TransportCredentials, *tls.Config, error) {
	if o.Insecure {
		return insecure.NewCredentials(), nil, nil
	}
	tc, err := tlsConfig(o)
	if err != nil {
		return nil, nil, err
	}
	return credentials.NewTLS(tc), tc, nil
}

var userAgent = "otel-go-launcher/" + version.String()

// The backoff between retries, as the SDK's OTLP exporters do it.
// retryInitial is the first wait between attempts, in nanoseconds: atomic, as a test
// shortens it while another test's exporter may still be retrying.
var retryInitial = func() *atomic.Int64 { var d atomic.Int64; d.Store(int64(5 * time.Second)); return &d }()

const (
	retryMax        = 30 * time.Second
	retryMaxElapsed = time.Minute
)

// retrying calls attempt until it succeeds, fails for good, or ctx ends. attempt says
// whether its error may be retried and how long the receiver asked to wait, if it did.
func retrying(ctx context.Context, attempt func(context.Context) (retry bool, throttle time.Duration, err error)) error {
	begin := time.Now()
	interval := time.Duration(retryInitial.Load())
	for {
		retry, throttle, err := attempt(ctx)
		if err == nil || !retry {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %w", context.Cause(ctx), err)
		}
		delay := max(throttle, time.Duration(float64(interval)*(0.5+rand.Float64()))) // ±50 %
		if time.Since(begin)+throttle > retryMaxElapsed {
			return fmt.Errorf("max retry time would elapse: %w", err)
		}
		interval = min(retryMax, interval*3/2)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w: %w", context.Cause(ctx), err)
		case <-t.C:
		}
	}
}

// partialSuccess reports a receiver's partial success, if resp is one.
func partialSuccess(resp *coltracepb.ExportTraceServiceResponse) (int, error) {
	ps := resp.GetPartialSuccess()
	if ps == nil || (ps.GetRejectedSpans() == 0 && ps.GetErrorMessage() == "") {
		return 0, nil
	}
	return int(ps.GetRejectedSpans()), &partialSuccessError{ps.GetRejectedSpans(), ps.GetErrorMessage()}
}

// partialSuccessError says what a receiver rejected of an export that went: the rest
// of its spans were exported.
type partialSuccessError struct {
	rejected int64
	message  string
}

func (e *partialSuccessError) Error() string {
	return fmt.Sprintf("the collector rejected %d spans: %s", e.rejected, e.message)
}

// grpcSender calls TraceService/Export with the request's bytes as they are.
type grpcSender struct {
	conn     *grpc.ClientConn
	md       metadata.MD
	callOpts []grpc.CallOption
}

const exportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

func newGRPCSender(o otelconfig.OTLP) (*grpcSender, error) {
	creds, _, err := transport(o)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(o.Endpoint.Host, grpc.WithTransportCredentials(creds), grpc.WithUserAgent(userAgent))
	if err != nil {
		return nil, err
	}
	s := &grpcSender{conn: conn, md: metadata.New(o.Headers), callOpts: []grpc.CallOption{grpc.ForceCodecV2(rawCodec{})}}
	if o.Compression == "gzip" {
		s.callOpts = append(s.callOpts, grpc.UseCompressor("gzip"))
	}
	return s, nil
}

func (s *grpcSender) attempt(ctx context.Context, req []byte, resp *coltracepb.ExportTraceServiceResponse) (bool, time.Duration, error) {
	if s.md.Len() > 0 {
		ctx = metadata.NewOutgoingContext(ctx, s.md)
	}
	err := s.conn.Invoke(ctx, exportMethod, rawRequest(req), resp, s.callOpts...)
	if err == nil {
		return false, 0, nil
	}
	st := status.Convert(err)
	retry, throttle := retryableStatus(st)
	return retry, throttle, fmt.Errorf("%s: %s", st.Code(), st.Message())
}

func (s *grpcSender) close() error { return s.conn.Close() }

// retryableStatus: the codes the OTLP specification says to retry, as the SDK's
// exporter does; RESOURCE_EXHAUSTED only when the receiver says when (its first
// RetryInfo). A connection that failed (refused, a certificate that does not verify)
// is UNAVAILABLE: retried, as the SDK does.
func retryableStatus(s *status.Status) (bool, time.Duration) {
	var throttle time.Duration
	hasInfo := false
	for _, d := range s.Details() {
		if info, ok := d.(*errdetails.RetryInfo); ok {
			throttle, hasInfo = info.RetryDelay.AsDuration(), true
			break
		}
	}
	switch s.Code() {
	case codes.Canceled, codes.DeadlineExceeded, codes.Aborted, codes.OutOfRange, codes.Unavailable, codes.DataLoss:
		return true, throttle
	case codes.ResourceExhausted:
		return hasInfo, throttle
	}
	return false, 0
}

// rawRequest is an encoded request; rawCodec sends it as it is, and decodes the
// response as the proto message it is.
type rawRequest []byte

type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	req, ok := v.(rawRequest)
	if !ok {
		return nil, fmt.Errorf("rawCodec: cannot send %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(req)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("rawCodec: cannot decode into %T", v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}

func (rawCodec) Name() string { return "proto" }

// httpSender POSTs the request to the traces URL.
type httpSender struct {
	client  *http.Client
	url     string
	headers map[string]string
	gzip    bool
	zbuf    bytes.Buffer // the compressed request; sends are one at a time
	zw      *gzip.Writer // reused: a new one allocates ~800 KB
}

func newHTTPSender(o otelconfig.OTLP) (*httpSender, error) {
	_, tlsConfig, err := transport(o)
	if err != nil {
		return nil, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsConfig
	transport.Proxy = environmentProxy()
	return &httpSender{client: &http.Client{Transport: transport}, url: o.Endpoint.String(), headers: o.Headers, gzip: o.Compression == "gzip"}, nil
}

// environmentProxy is the proxy HTTP_PROXY, HTTPS_PROXY and NO_PROXY say, as the
// SDK's HTTP exporters (and so the launcher's metrics) use it: http.ProxyFromEnvironment's
// rules, none for localhost and loopback addresses. Read when the sender is made, with
// the rest of the configuration (net/http reads it at a process's first request).
func environmentProxy() func(*http.Request) (*url.URL, error) {
	proxy := httpproxy.FromEnvironment().ProxyFunc()
	return func(r *http.Request) (*url.URL, error) { return proxy(r.URL) }
}

func (s *httpSender) attempt(ctx context.Context, req []byte, resp *coltracepb.ExportTraceServiceResponse) (bool, time.Duration, error) {
	body := req
	if s.gzip {
		s.zbuf.Reset()
		if s.zw == nil {
			s.zw = gzip.NewWriter(&s.zbuf)
		} else {
			s.zw.Reset(&s.zbuf)
		}
		s.zw.Write(req)
		s.zw.Close()
		body = s.zbuf.Bytes()
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return false, 0, err
	}
	for k, v := range s.headers {
		r.Header.Set(k, v)
	}
	r.Header.Set("Content-Type", "application/x-protobuf")
	r.Header.Set("User-Agent", userAgent)
	if s.gzip {
		r.Header.Set("Content-Encoding", "gzip")
	}
	res, err := s.client.Do(r)
	if err != nil {
		// Retried if temporary (a timeout), as the SDK's exporter does; not a
		// certificate that does not verify, a refused connection, a bad request.
		var uerr *url.Error
		return errors.As(err, &uerr) && uerr.Temporary(), 0, err
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	switch {
	case res.StatusCode >= 200 && res.StatusCode <= 299:
		if res.Header.Get("Content-Type") == "application/x-protobuf" && len(data) > 0 {
			if err := proto.Unmarshal(data, resp); err != nil {
				return false, 0, fmt.Errorf("the collector's response: %w", err)
			}
		}
		return false, 0, nil
	case res.StatusCode == http.StatusTooManyRequests, res.StatusCode == http.StatusBadGateway,
		res.StatusCode == http.StatusServiceUnavailable, res.StatusCode == http.StatusGatewayTimeout:
		return true, retryAfter(res.Header.Get("Retry-After")), fmt.Errorf("%s: %s", res.Status, bodyText(data))
	}
	return false, 0, fmt.Errorf("%s: %s", res.Status, bodyText(data))
}

func (s *httpSender) close() error {
	s.client.CloseIdleConnections()
	return nil
}

func retryAfter(v string) time.Duration {
	if n, err := strconv.ParseInt(v, 10, 32); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

func bodyText(b []byte) string {
	if s := strings.TrimSpace(string(b)); s != "" {
		return s
	}
	return "(empty)"
}
