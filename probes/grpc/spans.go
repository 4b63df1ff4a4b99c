package grpc

import (
	"net"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/otel-go-launcher/otel-go-launcher/probes/kit"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// serverSpan fills span from a server event, following the gRPC semantic conventions;
// open: from a stream still in flight, whose status is not known (no status code).
func (p *Probe) serverSpan(ev *grpcGrpcServerEvent, span *telemetry.Span, open bool) {
	method := strings.TrimPrefix(str(ev.Method[:], ev.MethodLen), "/")
	message := str(ev.Message[:], ev.MessageLen)
	code := statusCode(ev.Code)
	attrs := span.Attributes[:0] // the pipeline is done with the last span's
	*span = telemetry.Span{
		TraceID: ev.Sc.TraceId,
		SpanID:  ev.Sc.SpanId,
		Kind:    trace.SpanKindServer,
		Start:   ev.StartNs,
		End:     ev.EndNs,
	}
	attrs = append(attrs, semconv.RPCSystemNameGRPC)
	// A method the server does not know: grpc answers UNIMPLEMENTED with this
	// message. The conventions want _OTHER then, and the name the client sent.
	if !open && ev.Code == codeUnimplemented && (strings.HasPrefix(message, "unknown service ") || strings.HasPrefix(message, "unknown method ")) {
		span.Name = "grpc"
		attrs = append(attrs, semconv.RPCMethod("_OTHER"), semconv.RPCMethodOriginal(method))
	} else {
		span.Name = method
		attrs = append(attrs, semconv.RPCMethod(method))
	}
	if !open { // an open stream has sent no status yet
		attrs = append(attrs, semconv.RPCResponseStatusCode(code))
		if serverError(ev.Code) {
			span.Status, span.StatusDescription = codes.Error, message
			attrs = append(attrs, semconv.ErrorTypeKey.String(code))
		}
	}
	// The addresses the app's net.Conn gave grpc (through cmux, TLS, a PROXY protocol
	// listener...), if TCP's.
	if ip, port, ok := address(ev.Local, p.TypeName); ok {
		attrs = append(attrs, semconv.ServerAddress(ip), semconv.ServerPort(port))
	}
	if ip, port, ok := address(ev.Remote, p.TypeName); ok {
		attrs = append(attrs, semconv.ClientAddress(ip), semconv.ClientPort(port))
	}
	span.Attributes = attrs
	if ev.HasParent != 0 {
		// The kernel kept a well-formed list or none (bpf/include/tracestate.h): all of
		// it parses, and the span carries what the wire does.
		ts, _ := trace.ParseTraceState(str(ev.Tracestate[:], ev.TracestateLen))
		span.Parent = trace.NewSpanContext(trace.SpanContextConfig{
			TraceID:    ev.Sc.TraceId,
			SpanID:     ev.ParentSpanId,
			TraceFlags: trace.TraceFlags(ev.TraceFlags),
			TraceState: ts,
			Remote:     true,
		})
	}
}

// clientSpan fills span from a client event: Error for every status but OK; open:
// from a call still in flight, whose status is not known (no status code).
func (p *Probe) clientSpan(ev *grpcGrpcClientEvent, span *telemetry.Span, open bool) {
	method := strings.TrimPrefix(str(ev.Method[:], ev.MethodLen), "/")
	attrs := span.Attributes[:0] // the pipeline is done with the last span's
	*span = telemetry.Span{
		TraceID: ev.Sc.TraceId,
		SpanID:  ev.Sc.SpanId,
		Kind:    trace.SpanKindClient,
		Start:   ev.StartNs,
		End:     ev.EndNs,
		Name:    method,
	}
	attrs = append(attrs, semconv.RPCSystemNameGRPC, semconv.RPCMethod(method))
	code := "OK"
	if ev.ErrorType != 0 {
		switch errType := p.TypeName(ev.ErrorType); {
		case errType == errorStringType && ev.Eof != 0:
			// io.EOF: how a stream that succeeded ends.
		case errType == statusErrorType:
			code, span.Status = statusCode(ev.Code), codes.Error
			span.StatusDescription = str(ev.Message[:], ev.MessageLen)
		default:
			// grpc turns every error into a status; one that is not (a type this
			// probe does not know) is UNKNOWN, as grpc itself reads it.
			code, span.Status = statusCode(codeUnknown), codes.Error
		}
		if span.Status == codes.Error {
			attrs = append(attrs, semconv.ErrorTypeKey.String(code))
		}
	}
	if !open {
		attrs = append(attrs, semconv.RPCResponseStatusCode(code))
	}
	if host, port := targetAddress(str(ev.Target[:], ev.TargetLen)); host != "" {
		attrs = append(attrs, semconv.ServerAddress(host))
		if port > 0 {
			attrs = append(attrs, semconv.ServerPort(port))
		}
	}
	span.Attributes = attrs
	span.Parent = kit.ClientParent(ev.HasParent, ev.Sc.TraceId, ev.ParentSpanId, ev.TraceFlags)
}

// statusErrorType is the type of the errors grpc returns (internal/status.Error), as
// the runtime names it.
const statusErrorType = "*status.Error"

// errorStringType is the type of io.EOF (errors.New), as the runtime names it.
const errorStringType = "*errors.errorString"

// gRPC status codes (google.golang.org/grpc/codes).
const (
	codeUnknown       = 2
	codeUnimplemented = 12
)

var codeNames = [...]string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
	"UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}

// statusCode is rpc.response.status_code: the code's name, or its number when gRPC
// defines no name for it.
func statusCode(c uint32) string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return strconv.FormatUint(uint64(c), 10)
}

// serverError reports whether a server's status is an error by the conventions:
// UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
func serverError(c uint32) bool {
	switch c {
	case 2, 4, 12, 13, 14, 15:
		return true
	}
	return false
}

// tcpAddrType is the type of a TCP connection's addresses, as the runtime names it.
const tcpAddrType = "*net.TCPAddr"

// address is the IP address and port of a net.Addr the kernel read as a *net.TCPAddr,
// if that is its dynamic type (as typeName names it).
func address(a grpcGrpcAddr, typeName func(uint64) string) (string, int, bool) {
	if a.Type == 0 || a.IpLen != 4 && a.IpLen != 16 || typeName(a.Type) != tcpAddrType {
		return "", 0, false
	}
	return net.IP(a.Ip[:a.IpLen]).String(), int(a.Port), true
}

// targetAddress is the host and port of a dial target ("dns:///host:port",
// "passthrough:///host:port", "host:port"); for a unix socket, its path.
func targetAddress(target string) (string, int) {
	if path, ok := strings.CutPrefix(target, "unix://"); ok {
		return path, 0
	}
	if path, ok := strings.CutPrefix(target, "unix:"); ok {
		return path, 0
	}
	if _, rest, ok := strings.Cut(target, "://"); ok {
		target = rest
		if i := strings.IndexByte(target, '/'); i >= 0 {
			target = target[i+1:] // past the authority, if any: the endpoint
		}
	}
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		return strings.Trim(target, "[]"), 0
	}
	p, _ := strconv.Atoi(port)
	return host, p
}

// str is the first n bytes of a fixed-size buffer of an event.
func str(b []byte, n uint16) string { return string(b[:min(int(n), len(b))]) }
