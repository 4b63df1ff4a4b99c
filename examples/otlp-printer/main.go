// Command otlp-printer is an OTLP/gRPC trace receiver that prints one line per span:
// what `make demo` shows. It is not a collector; it is the smallest honest receiver.
package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"log"
	"net"
	"sort"
	"strings"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

type printer struct {
	collectortrace.UnimplementedTraceServiceServer
}

func (printer) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	for _, rs := range req.ResourceSpans {
		service := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.Key == "service.name" {
				service = a.Value.GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				var attrs []string
				for _, a := range s.Attributes {
					v := a.Value.GetStringValue()
					if v == "" {
						v = strings.TrimPrefix(a.Value.String(), "int_value:")
					}
					attrs = append(attrs, a.Key+"="+v)
				}
				sort.Strings(attrs)
				parent := hex.EncodeToString(s.ParentSpanId)
				if parent == "" {
					parent = "-"
				}
				d := time.Duration(s.EndTimeUnixNano - s.StartTimeUnixNano)
				kind := strings.TrimPrefix(s.Kind.String(), "SPAN_KIND_")
				fmt.Printf("%s %-6s %-20q trace=%s span=%s parent=%s %s %s\n    %s\n",
					service, kind, s.Name, hex.EncodeToString(s.TraceId), hex.EncodeToString(s.SpanId), parent,
					d.Round(time.Microsecond), s.GetStatus().GetCode(), strings.Join(attrs, " "))
			}
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:4317", "listen address")
	flag.Parse()
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, printer{})
	log.Fatal(srv.Serve(l))
}
