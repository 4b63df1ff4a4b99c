package grpc

import (
	"testing"
	"unsafe"

	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

func TestStatusCodes(t *testing.T) {
	for c, want := range map[uint32]string{0: "OK", 1: "CANCELLED", 4: "DEADLINE_EXCEEDED", 12: "UNIMPLEMENTED", 16: "UNAUTHENTICATED", 17: "17"} {
		if got := statusCode(c); got != want {
			t.Errorf("%d: %s, want %s", c, got, want)
		}
	}
	// The conventions' server errors, exactly.
	var errs []uint32
	for c := uint32(0); c <= 17; c++ {
		if serverError(c) {
			errs = append(errs, c)
		}
	}
	if want := []uint32{2, 4, 12, 13, 14, 15}; len(errs) != len(want) {
		t.Errorf("server errors %v, want %v", errs, want)
	} else {
		for i := range want {
			if errs[i] != want[i] {
				t.Errorf("server errors %v, want %v", errs, want)
			}
		}
	}
}

func TestTargetAddress(t *testing.T) {
	for target, want := range map[string]struct {
		host string
		port int
	}{
		"localhost:50051":                 {"localhost", 50051},
		"dns:///api.example.com:443":      {"api.example.com", 443},
		"dns://8.8.8.8/api.example.com:8": {"api.example.com", 8},
		"passthrough:///127.0.0.1:9000":   {"127.0.0.1", 9000},
		"[::1]:7000":                      {"::1", 7000},
		"api.example.com":                 {"api.example.com", 0},
		"unix:///run/app.sock":            {"/run/app.sock", 0},
		"unix:app.sock":                   {"app.sock", 0},
	} {
		if h, p := targetAddress(target); h != want.host || p != want.port {
			t.Errorf("%s: %s %d, want %s %d", target, h, p, want.host, want.port)
		}
	}
}

// valueOf is v as a map holds it: the bytes of the C struct.
func valueOf[T any](v *T) []byte { return unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v)) }

// Spans still in flight when the app exits: a stream that reached its handler, and a
// call, each with its IDs and parent and without a status (none was sent); a stream
// refused before any handler is no span - where handleStream's probe marks those that
// reached one.
func TestOpenSpans(t *testing.T) {
	p := &Probe{handles: true}
	var st grpcServerStream
	st.Ev.Kind, st.Ev.StartNs, st.Ev.HasParent, st.Ev.TraceFlags = eventServer, 100, 1, 1
	st.Ev.Sc.TraceId, st.Ev.Sc.SpanId, st.Ev.ParentSpanId = [16]uint8{1}, [8]uint8{2}, [8]uint8{3}
	st.Ev.MethodLen = uint16(copy(st.Ev.Method[:], "/demo.Echo/Watch"))
	var span telemetry.Span
	if p.openServerSpan(valueOf(&st), &span) {
		t.Errorf("a stream no handler took: span %s", span.Name)
	}
	st.G = 0xc000001000
	if !p.openServerSpan(valueOf(&st), &span) {
		t.Fatal("a stream in its handler: no span")
	}
	if span.Name != "demo.Echo/Watch" || span.Kind != trace.SpanKindServer || span.Start != 100 || span.Status != codes.Unset ||
		span.SpanID != [8]byte{2} || span.Parent.SpanID() != [8]byte{3} || span.Parent.TraceID() != [16]byte{1} {
		t.Errorf("server span %+v", span)
	}
	for _, kv := range span.Attributes {
		if kv.Key == semconv.RPCResponseStatusCodeKey || kv.Key == semconv.ErrorTypeKey {
			t.Errorf("server span still open: %s", kv.Key)
		}
	}
	if p := (&Probe{}); !p.openServerSpan(valueOf(&grpcServerStream{Ev: grpcGrpcServerEvent{Kind: eventServer}}), &span) {
		t.Error("without handleStream's probe, every stream is taken")
	}

	var ev grpcGrpcClientEvent
	ev.Kind, ev.StartNs, ev.HasParent = eventClient, 200, 1
	ev.Sc.TraceId, ev.Sc.SpanId, ev.ParentSpanId = [16]uint8{1}, [8]uint8{4}, [8]uint8{2}
	ev.MethodLen = uint16(copy(ev.Method[:], "/demo.Echo/Watch"))
	ev.TargetLen = uint16(copy(ev.Target[:], "127.0.0.1:9000"))
	if !p.openClientSpan(valueOf(&ev), &span) {
		t.Fatal("a call in flight: no span")
	}
	if span.Name != "demo.Echo/Watch" || span.Kind != trace.SpanKindClient || span.Start != 200 || span.Status != codes.Unset ||
		span.SpanID != [8]byte{4} || span.Parent.SpanID() != [8]byte{2} {
		t.Errorf("client span %+v", span)
	}
	for _, kv := range span.Attributes {
		if kv.Key == semconv.RPCResponseStatusCodeKey || kv.Key == semconv.ErrorTypeKey {
			t.Errorf("client span still open: %s", kv.Key)
		}
	}
	if p.openClientSpan(valueOf(&grpcGrpcClientEvent{}), &span) {
		t.Error("an entry that is no call: a span")
	}
}

// A net.Addr the kernel read is an address only if its dynamic type is *net.TCPAddr:
// a wrapper's RemoteAddr may answer with any net.Addr (a Unix socket's, its own type).
func TestAddressOnlyOfTCPAddr(t *testing.T) {
	names := map[uint64]string{0x1000: "*net.TCPAddr", 0x2000: "*net.UnixAddr", 0x3000: "*proxyproto.Addr"}
	typeName := func(addr uint64) string { return names[addr] }
	v4 := grpcGrpcAddr{Type: 0x1000, Port: 4242, IpLen: 4}
	copy(v4.Ip[:], []byte{192, 0, 2, 1})
	v6 := grpcGrpcAddr{Type: 0x1000, Port: 443, IpLen: 16}
	copy(v6.Ip[:], []byte{0x20, 0x01, 0x0d, 0xb8, 15: 1})
	mapped := grpcGrpcAddr{Type: 0x1000, Port: 80, IpLen: 16}
	copy(mapped.Ip[:], []byte{10: 0xff, 11: 0xff, 12: 198, 13: 51, 14: 100, 15: 7})
	for _, c := range []struct {
		name string
		a    grpcGrpcAddr
		ip   string
		port int
		ok   bool
	}{
		{"IPv4", v4, "192.0.2.1", 4242, true},
		{"IPv6", v6, "2001:db8::1", 443, true},
		{"IPv4 in IPv6", mapped, "198.51.100.7", 80, true},
		{"a Unix socket's", func() grpcGrpcAddr { a := v4; a.Type = 0x2000; return a }(), "", 0, false},
		{"a type of the app's", func() grpcGrpcAddr { a := v4; a.Type = 0x3000; return a }(), "", 0, false},
		{"a type not known", func() grpcGrpcAddr { a := v4; a.Type = 0x4000; return a }(), "", 0, false},
		{"no address (nil interface)", grpcGrpcAddr{}, "", 0, false},
		{"an IP of no length", func() grpcGrpcAddr { a := v4; a.IpLen = 0; return a }(), "", 0, false},
	} {
		ip, port, ok := address(c.a, typeName)
		if ip != c.ip || port != c.port || ok != c.ok {
			t.Errorf("%s: %q %d %v, want %q %d %v", c.name, ip, port, ok, c.ip, c.port, c.ok)
		}
	}
}
