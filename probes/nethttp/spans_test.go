package nethttp

import (
	"bytes"
	"strings"
	"testing"
	"unsafe"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

func event(method, path, pattern string, status uint16) *nethttpHttpServerEvent {
	ev := &nethttpHttpServerEvent{Status: status, ProtoMajor: 1, ProtoMinor: 1}
	ev.MethodLen = uint16(copy(ev.Method[:], method))
	ev.PathLen = uint16(copy(ev.Path[:], path))
	ev.RouteLen = uint16(copy(ev.Route[:], pattern))
	ev.HostLen = uint16(copy(ev.Host[:], "example.com:8080"))
	ev.RemoteLen = uint16(copy(ev.RemoteAddr[:], "[::1]:5555"))
	ev.Sc.TraceId = [16]uint8{1}
	ev.Sc.SpanId = [8]uint8{2}
	return ev
}

func attrs(s *telemetry.Span) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestServerSpanFollowsSemanticConventions(t *testing.T) {
	var s telemetry.Span
	serverSpan(event("GET", "/items/7", "GET example.com/items/{id}", 200), &s)
	a := attrs(&s)
	if s.Name != "GET /items/{id}" || a["http.route"].AsString() != "/items/{id}" || s.Kind != trace.SpanKindServer || s.Status != codes.Unset {
		t.Errorf("name %q route %q", s.Name, a["http.route"].AsString())
	}
	if a["server.address"].AsString() != "example.com" || a["server.port"].AsInt64() != 8080 ||
		a["client.address"].AsString() != "::1" || a["client.port"].AsInt64() != 5555 || a["network.protocol.version"].AsString() != "1.1" {
		t.Errorf("attributes %v", a)
	}

	serverSpan(event("PURGE", "/x", "", 503), &s)
	a = attrs(&s)
	if s.Name != "HTTP" || a["http.request.method"].AsString() != "_OTHER" || a["http.request.method_original"].AsString() != "PURGE" ||
		s.Status != codes.Error || a["error.type"].AsString() != "503" {
		t.Errorf("unknown method, 503: %q %v", s.Name, a)
	}
	if s.Parent.IsValid() {
		t.Error("no traceparent, yet a parent")
	}

	ev := event("POST", "/p", "/p", 201)
	ev.HasParent, ev.ParentSpanId, ev.TraceFlags = 1, [8]uint8{3}, 1
	ev.TracestateLen = uint16(copy(ev.Tracestate[:], "a=1,b=2"))
	serverSpan(ev, &s)
	if !s.Parent.IsRemote() || s.Parent.SpanID() != (trace.SpanID{3}) || !s.Parent.IsSampled() || s.Parent.TraceState().String() != "a=1,b=2" || s.Name != "POST /p" {
		t.Errorf("parent %+v name %q", s.Parent, s.Name)
	}
}

// A handler that panicked is an error whatever status it wrote before; with none
// written, the span has no status code.
func TestServerSpanOfPanic(t *testing.T) {
	for _, status := range []uint16{0, 200} {
		ev := event("GET", "/panic", "/panic", status)
		ev.Panicked = 1
		var s telemetry.Span
		serverSpan(ev, &s)
		a := attrs(&s)
		if s.Status != codes.Error || s.StatusDescription == "" || a["error.type"].AsString() != panicErrorType {
			t.Errorf("status %d: span status %v %q, error.type %q", status, s.Status, s.StatusDescription, a["error.type"].AsString())
		}
		if _, has := a["http.response.status_code"]; has != (status != 0) {
			t.Errorf("status %d: http.response.status_code %v", status, a["http.response.status_code"])
		}
	}
}

// url.scheme is https for a request that came over TLS, HTTP/1.1 or HTTP/2, else http
// (h2c's plaintext HTTP/2 too).
func TestServerSpanScheme(t *testing.T) {
	for _, c := range []struct {
		major, minor, tls uint8
		want              string
	}{{1, 1, 0, "http"}, {1, 1, 1, "https"}, {2, 0, 1, "https"}, {2, 0, 0, "http"}, {1, 0, 1, "https"}} {
		ev := event("GET", "/", "/", 200)
		ev.ProtoMajor, ev.ProtoMinor, ev.Tls = c.major, c.minor, c.tls
		var s telemetry.Span
		serverSpan(ev, &s)
		if got := attrs(&s)["url.scheme"].AsString(); got != c.want {
			t.Errorf("HTTP/%d.%d, TLS %d: url.scheme %q, want %q", c.major, c.minor, c.tls, got, c.want)
		}
	}
}

func clientEvent(method, scheme, host, path, query string, status uint16) *nethttpHttpClientEvent {
	ev := &nethttpHttpClientEvent{Status: status, ProtoMajor: 1, ProtoMinor: 1}
	ev.MethodLen = uint16(copy(ev.Method[:], method))
	ev.SchemeLen = uint16(copy(ev.Scheme[:], scheme))
	ev.HostLen = uint16(copy(ev.Host[:], host))
	ev.PathLen = uint16(copy(ev.Path[:], path))
	ev.QueryLen = uint16(copy(ev.Query[:], query))
	ev.Sc.TraceId = [16]uint8{1}
	ev.Sc.SpanId = [8]uint8{2}
	return ev
}

func TestClientSpanFollowsSemanticConventions(t *testing.T) {
	p := &Probe{} // no object: no type names
	var s telemetry.Span
	ev := clientEvent("GET", "http", "backend:9000", "/a b/c", "x=1&sig=secret&Signature=s2&X-Goog-Signature=s3&AWSAccessKeyId=k&y=%20", 200)
	ev.HasParent, ev.ParentSpanId, ev.TraceFlags = 1, [8]uint8{3}, 1
	p.clientSpan(ev, &s)
	a := attrs(&s)
	if s.Name != "GET" || s.Kind != trace.SpanKindClient || s.Status != codes.Unset {
		t.Errorf("name %q kind %v status %v", s.Name, s.Kind, s.Status)
	}
	wantURL := "http://backend:9000/a%20b/c?x=1&sig=REDACTED&Signature=REDACTED&X-Goog-Signature=REDACTED&AWSAccessKeyId=REDACTED&y=%20"
	if a["url.full"].AsString() != wantURL {
		t.Errorf("url.full %q, want %q", a["url.full"].AsString(), wantURL)
	}
	if a["server.address"].AsString() != "backend" || a["server.port"].AsInt64() != 9000 || a["http.response.status_code"].AsInt64() != 200 ||
		a["network.protocol.version"].AsString() != "1.1" || a["http.request.method"].AsString() != "GET" {
		t.Errorf("attributes %v", a)
	}
	if s.Parent.SpanID() != (trace.SpanID{3}) || !s.Parent.IsSampled() || s.Parent.TraceID() != (trace.TraceID{1}) {
		t.Errorf("parent %+v", s.Parent)
	}

	p.clientSpan(clientEvent("GET", "https", "[::1]", "/", "", 404), &s)
	a = attrs(&s)
	if a["server.address"].AsString() != "::1" || a["server.port"].AsInt64() != 443 || s.Status != codes.Error || a["error.type"].AsString() != "404" || s.Parent.IsValid() {
		t.Errorf("404 over https: %v, status %v", a, s.Status)
	}

	ev = clientEvent("QUERY", "http", "h", "/", "", 0)
	ev.ErrorType = 0x1234 // not a type of any binary here
	p.clientSpan(ev, &s)
	a = attrs(&s)
	if s.Name != "HTTP" || a["http.request.method"].AsString() != "_OTHER" || a["http.request.method_original"].AsString() != "QUERY" ||
		s.Status != codes.Error || a["error.type"].AsString() != "_OTHER" || a["http.response.status_code"].Type() != attribute.INVALID {
		t.Errorf("failed call: %q %v", s.Name, a)
	}
}

func TestRedactQuery(t *testing.T) {
	for q, want := range map[string]string{
		"":                      "",
		"a=1":                   "a=1",
		"sig":                   "sig", // no value to hide
		"sig=&a=b":              "sig=REDACTED&a=b",
		"%73ig=x":               "%73ig=REDACTED",
		"signature=x":           "signature=x", // keys are case-sensitive
		"a=1;b=2&Signature=x=y": "a=1;b=2&Signature=REDACTED",
	} {
		if got := redactQuery(q); got != want {
			t.Errorf("%q: %q, want %q", q, got, want)
		}
	}
}

// A router's template (routes.h) is the route as it is: no ServeMux pattern to read
// a method or a host from.
func TestServerSpanRoutedByARouter(t *testing.T) {
	var s telemetry.Span
	for _, route := range []string{"/users/:id", "/files/{name} x", "example.com/{id}"} {
		ev := event("GET", "/p", route, 200)
		ev.Routed = 1
		serverSpan(ev, &s)
		if a := attrs(&s); s.Name != "GET "+route || a["http.route"].AsString() != route {
			t.Errorf("%q: span %q, http.route %q", route, s.Name, a["http.route"].AsString())
		}
	}
}

func TestRouteOf(t *testing.T) {
	for pattern, want := range map[string]string{
		"": "", "/": "/", "/items/{id}": "/items/{id}", "GET /items/{id}": "/items/{id}",
		"example.com/x": "/x", "GET example.com/x/{$}": "/x/{$}",
	} {
		if got := routeOf(pattern); got != want {
			t.Errorf("%q: %q, want %q", pattern, got, want)
		}
	}
}

func TestProtocolVersion(t *testing.T) {
	for _, c := range []struct {
		major, minor uint8
		want         string
	}{{1, 1, "1.1"}, {1, 0, "1.0"}, {2, 0, "2"}, {0, 0, ""}} {
		if got := protocolVersion(c.major, c.minor); got != c.want {
			t.Errorf("%d.%d: %q", c.major, c.minor, got)
		}
	}
}

// A server record comes without its tracestate's unused bytes: decoded whole, and
// never with the last record's tracestate.
func TestDecodeServerRecordCutShort(t *testing.T) {
	p := &Probe{}
	record := func(tracestate string) []byte {
		ev := event("GET", "/p", "/p", 200)
		ev.Kind, ev.HasParent, ev.ParentSpanId = eventServer, 1, [8]uint8{3}
		ev.TracestateLen = uint16(copy(ev.Tracestate[:], tracestate))
		full := unsafe.Slice((*byte)(unsafe.Pointer(ev)), unsafe.Sizeof(*ev))
		return bytes.Clone(full[:len(full)-len(ev.Tracestate)+len(tracestate)])
	}
	for _, ts := range []string{"a=1,b=2", "", "k=" + strings.Repeat("v", 256), ""} {
		var s telemetry.Span
		if !p.decode(record(ts), &s) {
			t.Fatalf("tracestate %q: the record was not decoded", ts)
		}
		if got := s.Parent.TraceState().String(); got != ts || s.Name != "GET /p" {
			t.Errorf("tracestate %q: span %q with %q", ts, s.Name, got)
		}
	}
	if p.decode(record("")[:100], new(telemetry.Span)) {
		t.Error("a record shorter than its fixed part was decoded")
	}
}

// Spans still in flight when the app exits: a request whose handler has not returned,
// with its parent and tracestate and no status or route (both read at its return); a
// call not answered yet, without a status or an error; a request whose connection
// went to x/net's HTTP/2 server is no span.
func TestOpenSpans(t *testing.T) {
	p := &Probe{}
	var st nethttpServerCall
	st.Ev = *event("GET", "/watch", "", 0)
	st.Ev.Kind, st.Ev.StartNs, st.Ev.HasParent, st.Ev.ParentSpanId, st.Ev.TraceFlags = eventServer, 100, 1, [8]uint8{3}, 1
	st.Ev.TracestateLen = uint16(copy(st.Ev.Tracestate[:], "a=1"))
	value := func(v *nethttpServerCall) []byte { return unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v)) }
	var s telemetry.Span
	if !openServerSpan(value(&st), &s) {
		t.Fatal("a request in its handler: no span")
	}
	a := attrs(&s)
	if s.Name != "GET" || s.Kind != trace.SpanKindServer || s.Start != 100 || s.Status != codes.Unset || s.SpanID != (trace.SpanID{2}) ||
		s.Parent.SpanID() != (trace.SpanID{3}) || s.Parent.TraceState().String() != "a=1" || a["url.path"].AsString() != "/watch" ||
		a["http.response.status_code"].Type() != attribute.INVALID || a["http.route"].Type() != attribute.INVALID {
		t.Errorf("server span %q %v: %+v", s.Name, a, s)
	}
	st.HandedOver = 1
	if openServerSpan(value(&st), &s) {
		t.Error("a request handed to x/net's HTTP/2 server: a span")
	}

	var call nethttpClientCall
	call.Ev = *clientEvent("GET", "http", "backend:9000", "/poll", "", 0)
	call.Ev.Kind, call.Ev.StartNs, call.Ev.ProtoMajor, call.Ev.ProtoMinor = eventClient, 200, 0, 0
	call.Ev.HasParent, call.Ev.ParentSpanId = 1, [8]uint8{2}
	if !p.openClientSpan(unsafe.Slice((*byte)(unsafe.Pointer(&call)), unsafe.Sizeof(call)), &s) {
		t.Fatal("a call in flight: no span")
	}
	a = attrs(&s)
	if s.Name != "GET" || s.Kind != trace.SpanKindClient || s.Start != 200 || s.Status != codes.Unset || s.Parent.SpanID() != (trace.SpanID{2}) ||
		a["url.full"].AsString() != "http://backend:9000/poll" || a["http.response.status_code"].Type() != attribute.INVALID ||
		a["error.type"].Type() != attribute.INVALID {
		t.Errorf("client span %q %v", s.Name, a)
	}
	if p.openClientSpan(make([]byte, unsafe.Sizeof(call)), &s) {
		t.Error("an entry that is no call: a span")
	}
}
