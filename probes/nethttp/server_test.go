package nethttp

import (
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

func event(method, path, pattern string, status uint16) *serverHttpServerEvent {
	ev := &serverHttpServerEvent{Status: status, ProtoMajor: 1, ProtoMinor: 1}
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
