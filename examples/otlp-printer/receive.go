package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"sync"
	"time"

	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // OTEL_EXPORTER_OTLP_COMPRESSION=gzip over gRPC
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// store keeps what the receivers were sent, for printing at the end.
type store struct {
	mu      sync.Mutex
	traces  []*coltracepb.ExportTraceServiceRequest
	metrics []*colmetricspb.ExportMetricsServiceRequest
}

func newStore() *store { return &store{} }

func (s *store) addTraces(r *coltracepb.ExportTraceServiceRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.traces = append(s.traces, r)
}

func (s *store) addMetrics(r *colmetricspb.ExportMetricsServiceRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.metrics = append(s.metrics, r)
}

// traceServer and metricsServer are the OTLP/gRPC services.
type traceServer struct {
	coltracepb.UnimplementedTraceServiceServer
	st *store
}

func (t traceServer) Export(_ context.Context, r *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	t.st.addTraces(r)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

type metricsServer struct {
	colmetricspb.UnimplementedMetricsServiceServer
	st *store
}

func (m metricsServer) Export(_ context.Context, r *colmetricspb.ExportMetricsServiceRequest) (*colmetricspb.ExportMetricsServiceResponse, error) {
	m.st.addMetrics(r)
	return &colmetricspb.ExportMetricsServiceResponse{}, nil
}

// servers are the running receivers and the addresses they listen on (the port
// chosen, for a :0 address).
type servers struct {
	grpc     *grpc.Server
	http     *http.Server
	grpcAddr string
	httpAddr string
	done     sync.WaitGroup
}

// listen starts the receivers at the addresses given ("" for none).
func listen(st *store, grpcAddr, httpAddr string) (*servers, error) {
	s := &servers{}
	var gl, hl net.Listener
	var err error
	if grpcAddr != "" {
		if gl, err = net.Listen("tcp", grpcAddr); err != nil {
			return nil, fmt.Errorf("OTLP/gRPC receiver: %w (is another receiver running? choose another address with -grpc)", err)
		}
		s.grpcAddr = gl.Addr().String()
	}
	if httpAddr != "" {
		if hl, err = net.Listen("tcp", httpAddr); err != nil {
			if gl != nil {
				gl.Close()
			}
			return nil, fmt.Errorf("OTLP/HTTP receiver: %w (is another receiver running? choose another address with -http)", err)
		}
		s.httpAddr = hl.Addr().String()
	}
	if gl != nil {
		s.grpc = grpc.NewServer(grpc.MaxRecvMsgSize(maxRequest))
		coltracepb.RegisterTraceServiceServer(s.grpc, traceServer{st: st})
		colmetricspb.RegisterMetricsServiceServer(s.grpc, metricsServer{st: st})
		s.done.Add(1)
		go func() { defer s.done.Done(); s.grpc.Serve(gl) }()
	}
	if hl != nil {
		mux := http.NewServeMux()
		mux.Handle("/v1/traces", otlpHandler(func() proto.Message { return &coltracepb.ExportTraceServiceRequest{} },
			&coltracepb.ExportTraceServiceResponse{}, func(m proto.Message) { st.addTraces(m.(*coltracepb.ExportTraceServiceRequest)) }))
		mux.Handle("/v1/metrics", otlpHandler(func() proto.Message { return &colmetricspb.ExportMetricsServiceRequest{} },
			&colmetricspb.ExportMetricsServiceResponse{}, func(m proto.Message) { st.addMetrics(m.(*colmetricspb.ExportMetricsServiceRequest)) }))
		s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		s.done.Add(1)
		go func() { defer s.done.Done(); s.http.Serve(hl) }()
	}
	return s, nil
}

// stop ends the receivers once the exports they are taking are done.
func (s *servers) stop() {
	if s.grpc != nil {
		s.grpc.GracefulStop()
	}
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s.http.Shutdown(ctx)
		cancel()
	}
	s.done.Wait()
}

// maxRequest bounds an export's size, decompressed: a demo's exports are small.
const maxRequest = 64 << 20

// otlpHandler takes OTLP/HTTP exports of one signal: POST, protobuf or JSON, gzip or
// not, answered in the request's encoding.
func otlpHandler(newReq func() proto.Message, resp proto.Message, keep func(proto.Message)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "OTLP/HTTP takes POST", http.StatusMethodNotAllowed)
			return
		}
		ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if ct != "application/x-protobuf" && ct != "application/json" {
			http.Error(w, "Content-Type "+ct+" not supported: send application/x-protobuf or application/json", http.StatusUnsupportedMediaType)
			return
		}
		var body io.Reader = http.MaxBytesReader(w, r.Body, maxRequest)
		switch r.Header.Get("Content-Encoding") {
		case "", "identity":
		case "gzip":
			zr, err := gzip.NewReader(body)
			if err != nil {
				http.Error(w, "gzip body: "+err.Error(), http.StatusBadRequest)
				return
			}
			body = io.LimitReader(zr, maxRequest+1)
		default:
			http.Error(w, "Content-Encoding "+r.Header.Get("Content-Encoding")+" not supported: send gzip or none", http.StatusUnsupportedMediaType)
			return
		}
		data, err := io.ReadAll(body)
		if err == nil && len(data) > maxRequest {
			err = errors.New("larger than 64 MiB")
		}
		if err != nil {
			http.Error(w, "reading the export: "+err.Error(), http.StatusBadRequest)
			return
		}
		req := newReq()
		if ct == "application/json" {
			err = unmarshalJSON(data, req)
		} else {
			err = proto.Unmarshal(data, req)
		}
		if err != nil {
			http.Error(w, "decoding the export: "+err.Error(), http.StatusBadRequest)
			return
		}
		keep(req)
		var out []byte
		if ct == "application/json" {
			out, err = protojson.Marshal(resp)
		} else {
			out, err = proto.Marshal(resp)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", ct)
		w.Write(out)
	})
}

// unmarshalJSON reads OTLP/JSON, which writes trace and span IDs in hex where
// protobuf's JSON mapping has base64: they are turned into base64 first.
func unmarshalJSON(data []byte, m proto.Message) error {
	var doc any
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber() // 64-bit integers stay exact
	if err := d.Decode(&doc); err != nil {
		return err
	}
	if err := hexIDsToBase64(doc); err != nil {
		return err
	}
	data, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(data, m)
}

// idFields are the OTLP/JSON fields holding an ID in hex.
var idFields = map[string]bool{"traceId": true, "spanId": true, "parentSpanId": true}

func hexIDsToBase64(v any) error {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && idFields[k] {
				b, err := hex.DecodeString(s)
				if err != nil {
					return fmt.Errorf("%s %q: not hex: %w", k, s, err)
				}
				v[k] = base64.StdEncoding.EncodeToString(b)
				continue
			}
			if err := hexIDsToBase64(x); err != nil {
				return err
			}
		}
	case []any:
		for _, x := range v {
			if err := hexIDsToBase64(x); err != nil {
				return err
			}
		}
	}
	return nil
}
