package telemetry

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"sync"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// consoleSender writes each request as OTLP/JSON (the encoding OTLP/HTTP and the
// collector's file exporter use: IDs in hex, enums as numbers), indented, one request
// after the other: for looking at spans by eye, not for speed.
type consoleSender struct {
	mu sync.Mutex
	w  io.Writer
}

func (c *consoleSender) attempt(_ context.Context, req []byte, _ *coltracepb.ExportTraceServiceResponse) (bool, time.Duration, error) {
	var m coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(req, &m); err != nil {
		return false, 0, err
	}
	out, err := otlpJSON(&m)
	if err != nil {
		return false, 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err = c.w.Write(append(out, '\n'))
	return false, 0, err
}

func (c *consoleSender) close() error { return nil }

// otlpJSON is protojson's encoding with the changes OTLP/JSON makes: trace and span
// IDs in hex, not base64.
func otlpJSON(m proto.Message) ([]byte, error) {
	b, err := protojson.MarshalOptions{UseEnumNumbers: true}.Marshal(m)
	if err != nil {
		return nil, err
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	hexIDs(v)
	return json.MarshalIndent(v, "", "  ")
}

func hexIDs(v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			switch s, ok := x.(string); {
			case ok && (k == "traceId" || k == "spanId" || k == "parentSpanId"):
				if id, err := base64.StdEncoding.DecodeString(s); err == nil {
					v[k] = hex.EncodeToString(id)
				}
			default:
				hexIDs(x)
			}
		}
	case []any:
		for _, x := range v {
			hexIDs(x)
		}
	}
}
