package nethttp

import (
	"net"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// serverSpan fills span from a server event, following the HTTP semantic conventions.
func serverSpan(ev *nethttpHttpServerEvent, span *telemetry.Span) {
	method := str(ev.Method[:], ev.MethodLen)
	route := str(ev.Route[:], ev.RouteLen)
	if ev.Routed == 0 {
		route = routeOf(route) // a router's template is one already
	}

	attrs := span.Attributes[:0] // the pipeline is done with the last span's
	*span = telemetry.Span{
		TraceID: ev.Sc.TraceId,
		SpanID:  ev.Sc.SpanId,
		Kind:    trace.SpanKindServer,
		Start:   ev.StartNs,
		End:     ev.EndNs,
	}
	if known := knownMethod(method); known {
		attrs = append(attrs, semconv.HTTPRequestMethodKey.String(method))
	} else {
		attrs = append(attrs, semconv.HTTPRequestMethodKey.String("_OTHER"), semconv.HTTPRequestMethodOriginal(method))
	}
	span.Name = method
	if !knownMethod(method) {
		span.Name = "HTTP"
	}
	if route != "" {
		span.Name += " " + route
		attrs = append(attrs, semconv.HTTPRoute(route))
	}
	attrs = append(attrs,
		semconv.URLPath(str(ev.Path[:], ev.PathLen)),
		semconv.URLScheme(scheme(ev)))
	if ev.Status != 0 {
		attrs = append(attrs, semconv.HTTPResponseStatusCode(int(ev.Status)))
	}
	switch {
	case ev.Panicked != 0:
		// The server closed the connection (HTTP/1) unanswered, or after what the
		// handler wrote: an error whatever that status said.
		span.Status, span.StatusDescription = codes.Error, "the handler panicked"
		attrs = append(attrs, semconv.ErrorTypeKey.String(panicErrorType))
	case ev.Status >= 500:
		span.Status = codes.Error
		attrs = append(attrs, semconv.ErrorTypeKey.String(strconv.Itoa(int(ev.Status))))
	}
	if host, port := splitHostPort(str(ev.Host[:], ev.HostLen)); host != "" {
		attrs = append(attrs, semconv.ServerAddress(host))
		if port > 0 {
			attrs = append(attrs, semconv.ServerPort(port))
		}
	}
	if client, port := splitHostPort(str(ev.RemoteAddr[:], ev.RemoteLen)); client != "" {
		attrs = append(attrs, semconv.ClientAddress(client))
		if port > 0 {
			attrs = append(attrs, semconv.ClientPort(port))
		}
	}
	if v := protocolVersion(ev.ProtoMajor, ev.ProtoMinor); v != "" {
		attrs = append(attrs, semconv.NetworkProtocolVersion(v))
	}
	if ua := str(ev.Hdr.UserAgent[:], ev.Hdr.UserAgentLen); ua != "" {
		attrs = append(attrs, semconv.UserAgentOriginal(ua))
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

// panicErrorType is error.type for a request whose handler panicked: no status was
// answered, and the panic's value is not read.
const panicErrorType = "panic"

// scheme is url.scheme: https when the request came over TLS (the server set its TLS
// field from the connection), else http.
func scheme(ev *nethttpHttpServerEvent) string {
	if ev.Tls != 0 {
		return "https"
	}
	return "http"
}

// routeOf turns a ServeMux pattern ("[METHOD ][HOST]/PATH") into http.route (the path).
func routeOf(pattern string) string {
	if i := strings.IndexByte(pattern, ' '); i >= 0 {
		pattern = strings.TrimLeft(pattern[i+1:], " \t")
	}
	if i := strings.IndexByte(pattern, '/'); i > 0 {
		pattern = pattern[i:] // drop the host
	}
	return pattern
}

func knownMethod(m string) bool {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH":
		return true
	}
	return false
}

func splitHostPort(hp string) (string, int) {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return strings.Trim(hp, "[]"), 0
	}
	p, _ := strconv.Atoi(port)
	return host, p
}

func protocolVersion(major, minor uint8) string {
	switch {
	case major == 0:
		return ""
	case major >= 2:
		return strconv.Itoa(int(major))
	}
	return strconv.Itoa(int(major)) + "." + strconv.Itoa(int(minor))
}

// str is the first n bytes of a fixed-size buffer of an event.
func str(b []byte, n uint16) string { return string(b[:min(int(n), len(b))]) }
