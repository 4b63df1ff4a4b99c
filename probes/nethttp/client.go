package nethttp

import (
	"net/url"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/otel-go-launcher/otel-go-launcher/probes/kit"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// clientSpan fills span from a client event, following the HTTP semantic conventions.
func (p *Probe) clientSpan(ev *nethttpHttpClientEvent, span *telemetry.Span) {
	method := str(ev.Method[:], ev.MethodLen)
	scheme := str(ev.Scheme[:], ev.SchemeLen)
	hostPort := str(ev.Host[:], ev.HostLen)

	attrs := span.Attributes[:0] // the pipeline is done with the last span's
	*span = telemetry.Span{
		TraceID: ev.Sc.TraceId,
		SpanID:  ev.Sc.SpanId,
		Kind:    trace.SpanKindClient,
		Start:   ev.StartNs,
		End:     ev.EndNs,
		Name:    method,
	}
	if knownMethod(method) {
		attrs = append(attrs, semconv.HTTPRequestMethodKey.String(method))
	} else {
		span.Name = "HTTP"
		attrs = append(attrs, semconv.HTTPRequestMethodKey.String("_OTHER"), semconv.HTTPRequestMethodOriginal(method))
	}
	attrs = append(attrs, semconv.URLFull(fullURL(scheme, hostPort, str(ev.Path[:], ev.PathLen), str(ev.Query[:], ev.QueryLen))))
	if host, port := splitHostPort(hostPort); host != "" {
		if port == 0 {
			port = defaultPort(scheme)
		}
		attrs = append(attrs, semconv.ServerAddress(host))
		if port > 0 {
			attrs = append(attrs, semconv.ServerPort(port))
		}
	}
	if ev.Status != 0 {
		attrs = append(attrs, semconv.HTTPResponseStatusCode(int(ev.Status)))
	}
	if v := protocolVersion(ev.ProtoMajor, ev.ProtoMinor); v != "" {
		attrs = append(attrs, semconv.NetworkProtocolVersion(v))
	}
	switch {
	case ev.ErrorType != 0:
		span.Status = codes.Error
		name := p.TypeName(ev.ErrorType)
		if name == "" {
			name = "_OTHER"
		}
		attrs = append(attrs, semconv.ErrorTypeKey.String(name))
	case ev.Status >= 400:
		span.Status = codes.Error
		attrs = append(attrs, semconv.ErrorTypeKey.String(strconv.Itoa(int(ev.Status))))
	}
	span.Attributes = attrs

	span.Parent = kit.ClientParent(ev.HasParent, ev.Sc.TraceId, ev.ParentSpanId, ev.TraceFlags)
}

// fullURL is url.full: the request's URL without credentials (the probe never reads
// them), with the values of query parameters that carry secrets redacted as the
// semantic conventions require.
func fullURL(scheme, host, path, rawQuery string) string {
	u := url.URL{Scheme: scheme, Host: host, Path: path, RawQuery: redactQuery(rawQuery)}
	return u.String()
}

// sensitiveQueryKeys are the query parameters whose values url.full must not show.
var sensitiveQueryKeys = map[string]bool{"AWSAccessKeyId": true, "Signature": true, "sig": true, "X-Goog-Signature": true}

// redactQuery replaces the values of sensitive parameters by REDACTED, leaving the rest
// of the query as it was sent (order, encoding).
func redactQuery(q string) string {
	if q == "" {
		return q
	}
	parts := strings.Split(q, "&")
	changed := false
	for i, part := range parts {
		key, _, hasValue := strings.Cut(part, "=")
		if k, err := url.QueryUnescape(key); err == nil && hasValue && sensitiveQueryKeys[k] {
			parts[i] = key + "=REDACTED"
			changed = true
		}
	}
	if !changed {
		return q
	}
	return strings.Join(parts, "&")
}

func defaultPort(scheme string) int {
	switch scheme {
	case "http":
		return 80
	case "https":
		return 443
	}
	return 0
}
