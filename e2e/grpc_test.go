package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
	"github.com/otel-go-launcher/otel-go-launcher/offsets"
	grpcprobe "github.com/otel-go-launcher/otel-go-launcher/probes/grpc"
)

// tracedGRPC runs the grpcservice target under the launcher, serving on a free port
// (and relaying to next, if given), exporting to recv.
func tracedGRPC(t *testing.T, tg testenv.Target, recv *testenv.Receiver, next string, extraEnv ...string) (*run, string) {
	t.Helper()
	testenv.RequireRoot(t)
	addr := freeAddr(t)
	env := append(append(os.Environ(), extraEnv...),
		"OTEL_EXPORTER_OTLP_ENDPOINT="+recv.Endpoint,
		"OTEL_BSP_SCHEDULE_DELAY=200",
		"OTEL_SERVICE_NAME=", "OTEL_RESOURCE_ATTRIBUTES=", "OTEL_TRACES_EXPORTER=", "OTEL_TRACES_SAMPLER=")
	args := []string{launchBin(t), "--", tg.Path, addr} // overlapped: the first RPC waits for the probes
	if next != "" {
		args = append(args, next)
	}
	r := start(t, opts{env: env, stdin: strings.NewReader("")}, args...)
	return r, addr
}

// dialGRPC connects to addr, waiting for it to accept; logs (the app's output) are
// shown if it never does.
func dialGRPC(t *testing.T, addr string, logs ...fmt.Stringer) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		err := conn.Invoke(ctx, "/demo.Echo/Say", wrapperspb.String("ready?"), new(wrapperspb.StringValue), grpc.WaitForReady(true))
		if err == nil {
			return conn
		}
		if ctx.Err() != nil {
			t.Fatalf("%s never answered: %v%s", addr, err, joinLogs(logs))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// joinLogs is logs, each on lines of its own after a newline; "" for none.
func joinLogs(logs []fmt.Stringer) string {
	var b strings.Builder
	for _, l := range logs {
		b.WriteString("\n" + l.String())
	}
	return b.String()
}

// TestGRPCSpans traces gRPC services built with grpc releases on each side of every
// change the probes follow (and one stripped): server spans for unary and streaming
// RPCs with their status, the incoming traceparent joined, and the client spans of
// calls a handler makes - with its context and from a goroutine it starts - parented
// by its server span.
func TestGRPCSpans(t *testing.T) {
	targets := testenv.BuildGRPC(t, testenv.GRPCBuilds...)
	for i, tg := range targets {
		// grpc before v1.53 sends no traceparent (README limits).
		propagates := offsets.VersionAtLeast(testenv.GRPCBuilds[i].Version, "v1.53.0")
		t.Run(tg.Toolchain+"/"+tg.Variant.Name, func(t *testing.T) {
			recv := testenv.StartReceiver(t)
			// Each hop serving before the next starts: a hop's first dial must not
			// find its next one still at the start gate (grpc would back off).
			downstream, downAddr := tracedGRPC(t, tg, recv, "")
			down := dialGRPC(t, downAddr)
			front, frontAddr := tracedGRPC(t, tg, recv, downAddr)
			fc := dialGRPC(t, frontAddr)
			unreachable, unreachableAddr := tracedGRPC(t, tg, recv, freeAddr(t))
			uc := dialGRPC(t, unreachableAddr)
			ctx := context.Background()

			// The warm-up calls of dialGRPC are spans too: 3 "Say" server spans.
			traceID, parentID := "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
			incoming := metadata.AppendToOutgoingContext(ctx, "traceparent", "00-"+traceID+"-"+parentID+"-01", "tracestate", "k=v")
			if err := fc.Invoke(incoming, "/demo.Echo/Relay", wrapperspb.String("hi"), new(wrapperspb.StringValue)); err != nil {
				t.Fatalf("Relay: %v\nfront: %s\ndownstream: %s", err, front.stderr, downstream.stderr)
			}
			for _, c := range []codes.Code{codes.NotFound, codes.Internal, codes.Unknown} {
				err := down.Invoke(ctx, "/demo.Echo/Fail", wrapperspb.Int32(int32(c)), new(emptypb.Empty))
				if status.Code(err) != c {
					t.Fatalf("Fail(%v): %v", c, err)
				}
			}
			if err := down.Invoke(ctx, "/demo.Nope/Missing", wrapperspb.String("x"), new(wrapperspb.StringValue)); status.Code(err) != codes.Unimplemented {
				t.Fatalf("unknown method: %v", err)
			}
			short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			err := down.Invoke(short, "/demo.Echo/Sleep", wrapperspb.Int32(2000), new(emptypb.Empty))
			cancel()
			if status.Code(err) != codes.DeadlineExceeded {
				t.Fatalf("Sleep past the deadline: %v", err)
			}
			if err := uc.Invoke(ctx, "/demo.Echo/Relay", wrapperspb.String("hi"), new(wrapperspb.StringValue)); status.Code(err) != codes.Unavailable {
				t.Fatalf("Relay to nowhere: %v", err)
			}
			if err := fc.Invoke(ctx, "/demo.Echo/Deadline", wrapperspb.String("hi"), new(emptypb.Empty)); status.Code(err) != codes.DeadlineExceeded {
				t.Fatalf("Deadline: %v", err)
			}
			streams(t, down)

			want := 3 + // warm-up
				1 + 3 + 3 + // Relay: front server, its 3 client calls (2 unary, a stream), downstream's 3 server spans
				3 + 1 + 1 + // Fail x3, unknown method, Sleep
				1 + 1 + // Relay to nowhere: server and its failed client call
				1 + 1 + 1 + // Deadline: front server, its client Sleep, downstream's Sleep
				3 // Count, Sum, Chat
			spans := exactSpans(t, recv, want, 30*time.Second)
			checkGRPCSpans(t, spans, traceID, parentID, frontAddr, downAddr, propagates)
			for _, r := range []*run{downstream, front, unreachable} {
				if said := launcherLines(r); said != "" {
					t.Errorf("launcher said: %s", said)
				}
			}
		})
	}
}

// streams makes one RPC of each streaming kind.
func streams(t *testing.T, conn *grpc.ClientConn) {
	t.Helper()
	ctx := context.Background()
	desc := &grpc.StreamDesc{ServerStreams: true}
	s, err := conn.NewStream(ctx, desc, "/demo.Echo/Count")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendMsg(wrapperspb.Int32(3)); err != nil {
		t.Fatal(err)
	}
	s.CloseSend()
	n := 0
	for {
		err := s.RecvMsg(new(wrapperspb.Int32Value))
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 3 {
		t.Fatalf("Count(3) sent %d", n)
	}

	s, err = conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true}, "/demo.Echo/Sum")
	if err != nil {
		t.Fatal(err)
	}
	for i := int32(1); i <= 4; i++ {
		s.SendMsg(wrapperspb.Int32(i))
	}
	s.CloseSend()
	sum := new(wrapperspb.Int32Value)
	if err := s.RecvMsg(sum); err != nil || sum.Value != 10 {
		t.Fatalf("Sum: %v %v", sum.Value, err)
	}

	s, err = conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, "/demo.Echo/Chat")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 5; i++ {
			s.SendMsg(wrapperspb.String(fmt.Sprint(i)))
		}
		s.CloseSend()
	}()
	got := 0
	for {
		err := s.RecvMsg(new(wrapperspb.StringValue))
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got++
	}
	wg.Wait()
	if got != 5 {
		t.Fatalf("Chat echoed %d of 5", got)
	}
}

func spanList(spans []testenv.Span) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "\n  %s %s trace=%s span=%s parent=%s status=%v %q %v", s.Kind, s.Name, s.TraceID, s.SpanID, s.ParentSpanID, s.StatusCode, s.StatusMessage, s.Attrs)
	}
	return b.String()
}

// checkGRPCSpans checks every span of TestGRPCSpans.
func checkGRPCSpans(t *testing.T, spans []testenv.Span, traceID, parentID, frontAddr, downAddr string, propagates bool) {
	t.Helper()
	byName := map[string][]testenv.Span{}
	for _, s := range spans {
		byName[s.Kind.String()+" "+s.Name] = append(byName[s.Kind.String()+" "+s.Name], s)
		if s.Attrs["rpc.system.name"] != "grpc" {
			t.Errorf("%s: rpc.system.name %v", s.Name, s.Attrs["rpc.system.name"])
		}
		if s.End.Before(s.Start) || s.End.Sub(s.Start) > 10*time.Second {
			t.Errorf("%s: runs %v to %v", s.Name, s.Start, s.End)
		}
	}
	server, client := tracepb.Span_SPAN_KIND_SERVER.String(), tracepb.Span_SPAN_KIND_CLIENT.String()
	one := func(key string, pick func(testenv.Span) bool) testenv.Span {
		t.Helper()
		var found []testenv.Span
		for _, s := range byName[key] {
			if pick == nil || pick(s) {
				found = append(found, s)
			}
		}
		if len(found) != 1 {
			t.Fatalf("%d spans %q, want 1: %s", len(found), key, spanList(spans))
		}
		return found[0]
	}
	expect := func(s testenv.Span, code string, isErr bool, message string) {
		t.Helper()
		if s.Attrs["rpc.response.status_code"] != code {
			t.Errorf("%s %s: rpc.response.status_code %v, want %s", s.Kind, s.Name, s.Attrs["rpc.response.status_code"], code)
		}
		wantStatus := tracepb.Status_STATUS_CODE_UNSET
		if isErr {
			wantStatus = tracepb.Status_STATUS_CODE_ERROR
			if s.Attrs["error.type"] != code {
				t.Errorf("%s %s: error.type %v, want %s", s.Kind, s.Name, s.Attrs["error.type"], code)
			}
		} else if _, ok := s.Attrs["error.type"]; ok {
			t.Errorf("%s %s: error.type %v on a success", s.Kind, s.Name, s.Attrs["error.type"])
		}
		if s.StatusCode != wantStatus || s.StatusMessage != message {
			t.Errorf("%s %s: status %v %q, want %v %q", s.Kind, s.Name, s.StatusCode, s.StatusMessage, wantStatus, message)
		}
	}

	// The relayed call: one trace from the incoming traceparent down.
	relay := one(server+" demo.Echo/Relay", func(s testenv.Span) bool { return s.TraceID == traceID })
	if relay.ParentSpanID != parentID || relay.TraceState != "k=v" {
		t.Errorf("Relay server span: parent %s tracestate %q, want %s k=v", relay.ParentSpanID, relay.TraceState, parentID)
	}
	expect(relay, "OK", false, "")
	host, port := splitAddr(t, frontAddr)
	if relay.Attrs["server.address"] != host || relay.Attrs["server.port"] != int64(port) || relay.Attrs["client.address"] != "127.0.0.1" {
		t.Errorf("Relay server span addresses: %v", relay.Attrs)
	}
	if p, ok := relay.Attrs["client.port"].(int64); !ok || p <= 0 {
		t.Errorf("Relay server span: client.port %v", relay.Attrs["client.port"])
	}
	downHost, downPort := splitAddr(t, downAddr)
	calls := 0
	for _, c := range byName[client+" demo.Echo/Say"] {
		if c.TraceID != traceID {
			continue
		}
		calls++
		if c.ParentSpanID != relay.SpanID {
			t.Errorf("client Say: parent %s, want the Relay server span %s", c.ParentSpanID, relay.SpanID)
		}
		if c.Attrs["server.address"] != downHost || c.Attrs["server.port"] != int64(downPort) || c.Attrs["rpc.method"] != "demo.Echo/Say" {
			t.Errorf("client Say: %v", c.Attrs)
		}
		expect(c, "OK", false, "")
		if c.Start.Before(relay.Start) || c.End.After(relay.End) {
			t.Errorf("client Say [%v %v] outside its parent [%v %v]", c.Start, c.End, relay.Start, relay.End)
		}
	}
	if calls != 2 {
		t.Errorf("%d client Say spans in the relayed trace, want 2 (with the request's context, and from a goroutine): %s", calls, spanList(spans))
	}
	countCall := one(client+" demo.Echo/Count", nil)
	if countCall.TraceID != traceID || countCall.ParentSpanID != relay.SpanID || countCall.Attrs["server.port"] != int64(downPort) {
		t.Errorf("client stream Count: trace %s parent %s, want %s %s: %v", countCall.TraceID, countCall.ParentSpanID, traceID, relay.SpanID, countCall.Attrs)
	}
	expect(countCall, "OK", false, "")

	// Over h2c the calls carry their traceparent: the downstream server spans are the
	// client spans' children, in the same trace.
	sayCalls := map[string]bool{}
	for _, c := range byName[client+" demo.Echo/Say"] {
		if c.TraceID == traceID {
			sayCalls[c.SpanID] = true
		}
	}
	joined := 0
	for _, s := range byName[server+" demo.Echo/Say"] {
		if s.TraceID != traceID {
			continue
		}
		joined++
		if !sayCalls[s.ParentSpanID] {
			t.Errorf("downstream Say: parent %s, not one of the client Say spans", s.ParentSpanID)
		}
		if s.TraceState != "k=v" {
			t.Errorf("downstream Say: tracestate %q, want the relay's k=v", s.TraceState)
		}
	}
	wantJoined := 0
	countJoined := 0
	for _, s := range byName[server+" demo.Echo/Count"] {
		if s.TraceID == traceID {
			countJoined++
			if s.ParentSpanID != countCall.SpanID {
				t.Errorf("downstream Count: parent %s, want the client stream's %s", s.ParentSpanID, countCall.SpanID)
			}
		}
	}
	if propagates {
		wantJoined = 2
		if countJoined != 1 {
			t.Errorf("%d downstream Count spans in the relayed trace, want 1", countJoined)
		}
	} else if countJoined != 0 {
		t.Errorf("downstream Count joined the trace: this grpc release sends no traceparent")
	}
	if joined != wantJoined {
		t.Errorf("%d downstream Say spans in the relayed trace, want %d: %s", joined, wantJoined, spanList(spans))
	}

	// The deadline a handler set on its call: the client span is DEADLINE_EXCEEDED.
	deadline := one(server+" demo.Echo/Deadline", nil)
	expect(deadline, "DEADLINE_EXCEEDED", true, deadline.StatusMessage)
	sleepCall := one(client+" demo.Echo/Sleep", nil)
	expect(sleepCall, "DEADLINE_EXCEEDED", true, sleepCall.StatusMessage)
	if sleepCall.ParentSpanID != deadline.SpanID || sleepCall.StatusMessage == "" {
		t.Errorf("client Sleep: parent %s (want %s), message %q", sleepCall.ParentSpanID, deadline.SpanID, sleepCall.StatusMessage)
	}
	if d := sleepCall.End.Sub(sleepCall.Start); d < 40*time.Millisecond || d > 1500*time.Millisecond {
		t.Errorf("client Sleep lasted %v: its deadline was 50ms", d)
	}

	notFound := one(server+" demo.Echo/Fail", func(s testenv.Span) bool { return s.Attrs["rpc.response.status_code"] == "NOT_FOUND" })
	expect(notFound, "NOT_FOUND", false, "")
	expect(one(server+" demo.Echo/Fail", func(s testenv.Span) bool { return s.Attrs["rpc.response.status_code"] == "INTERNAL" }), "INTERNAL", true, "failed on purpose")
	expect(one(server+" demo.Echo/Fail", func(s testenv.Span) bool { return s.Attrs["rpc.response.status_code"] == "UNKNOWN" }), "UNKNOWN", true, "failed on purpose")
	unknown := one(server+" grpc", nil)
	if unknown.Attrs["rpc.method"] != "_OTHER" || unknown.Attrs["rpc.method_original"] != "demo.Nope/Missing" {
		t.Errorf("unknown method: %v", unknown.Attrs)
	}
	expect(unknown, "UNIMPLEMENTED", true, "unknown service demo.Nope")
	// The test's own Sleep, on the connection its Fail calls used (the other is the
	// Deadline handler's).
	sleep := one(server+" demo.Echo/Sleep", func(s testenv.Span) bool { return s.Attrs["client.port"] == notFound.Attrs["client.port"] })
	expect(sleep, "DEADLINE_EXCEEDED", true, "deadline passed while sleeping")
	if d := sleep.End.Sub(sleep.Start); d < 40*time.Millisecond || d > 1500*time.Millisecond {
		t.Errorf("Sleep span lasted %v: the deadline was 50ms", d)
	}

	// The relay to nowhere: its client span is UNAVAILABLE, an error; the server span
	// returns that status too (as the handler did).
	failed := one(client+" demo.Echo/Say", func(s testenv.Span) bool { return s.Attrs["rpc.response.status_code"] != "OK" })
	if failed.Attrs["rpc.response.status_code"] != "UNAVAILABLE" || failed.StatusCode != tracepb.Status_STATUS_CODE_ERROR || failed.Attrs["error.type"] != "UNAVAILABLE" {
		t.Errorf("call to nowhere: %v %v", failed.StatusCode, failed.Attrs)
	}
	for _, name := range []string{"demo.Echo/Sum", "demo.Echo/Chat"} {
		expect(one(server+" "+name, nil), "OK", false, "")
	}
	for _, s := range byName[server+" demo.Echo/Count"] { // the relayed one and the test's
		expect(s, "OK", false, "")
	}
	if n := len(byName[server+" demo.Echo/Count"]); n != 2 {
		t.Errorf("%d server spans Count, want 2", n)
	}
}

func splitAddr(t *testing.T, addr string) (string, int) {
	t.Helper()
	i := strings.LastIndexByte(addr, ':')
	var port int
	fmt.Sscan(addr[i+1:], &port)
	return addr[:i], port
}

// TestGRPCMixedChains: spans of one library parented by another's, across their BPF
// objects, in one process: HTTP server -> gRPC client, and gRPC server -> HTTP client
// -> (the kernel-inserted traceparent) -> HTTP server.
func TestGRPCMixedChains(t *testing.T) {
	for _, tg := range testenv.BuildGRPC(t, testenv.GRPCBuilds[0], testenv.GRPCBuilds[2]) {
		t.Run(tg.Toolchain+"/"+tg.Variant.Name, func(t *testing.T) {
			recv := testenv.StartReceiver(t)
			_, downAddr := tracedGRPC(t, tg, recv, "")
			dialGRPC(t, downAddr)
			httpAddr := freeAddr(t)
			front, frontAddr := tracedGRPC(t, tg, recv, downAddr, "GRPCSERVICE_HTTP="+httpAddr)
			fc := dialGRPC(t, frontAddr)

			// HTTP -> gRPC.
			traceID, parentID := "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
			req, _ := http.NewRequest("GET", "http://"+httpAddr+"/relay", nil)
			req.Header.Set("traceparent", "00-"+traceID+"-"+parentID+"-01")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("GET /relay: %v\n%s", err, front.stderr)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "from http" {
				t.Fatalf("GET /relay: %s %q", resp.Status, body)
			}
			// gRPC -> HTTP -> HTTP server, one trace from the gRPC call's traceparent.
			grpcTrace := "5bf92f3577b34da6a3ce929d0e0e4736"
			ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-"+grpcTrace+"-"+parentID+"-01")
			out := new(wrapperspb.StringValue)
			if err := fc.Invoke(ctx, "/demo.Echo/Fetch", wrapperspb.String("http://"+httpAddr+"/hello"), out); err != nil || out.Value != "hello" {
				t.Fatalf("Fetch: %q %v", out.Value, err)
			}

			inTrace := func(spans []testenv.Span, id string) int {
				n := 0
				for _, s := range spans {
					if s.TraceID == id {
						n++
					}
				}
				return n
			}
			// The downstream gRPC server span starts a trace of its own: no traceparent
			// goes out over HTTP/2 yet.
			if spans, ok := recv.WaitFor(20*time.Second, func(s []testenv.Span) bool { return inTrace(s, traceID) >= 2 && inTrace(s, grpcTrace) >= 3 }); !ok {
				t.Fatalf("spans: %s", spanList(spans))
			}
			spans := recv.Spans()
			find := func(trace string, kind tracepb.Span_SpanKind, name string) testenv.Span {
				t.Helper()
				for _, s := range spans {
					if s.TraceID == trace && s.Kind == kind && s.Name == name {
						return s
					}
				}
				t.Fatalf("no %s span %q in trace %s: %s", kind, name, trace, spanList(spans))
				return testenv.Span{}
			}
			httpServer := find(traceID, tracepb.Span_SPAN_KIND_SERVER, "GET /relay")
			grpcClient := find(traceID, tracepb.Span_SPAN_KIND_CLIENT, "demo.Echo/Say")
			if httpServer.ParentSpanID != parentID || grpcClient.ParentSpanID != httpServer.SpanID {
				t.Errorf("HTTP -> gRPC: server parent %s (want %s), client parent %s (want %s)", httpServer.ParentSpanID, parentID, grpcClient.ParentSpanID, httpServer.SpanID)
			}
			grpcServer := find(grpcTrace, tracepb.Span_SPAN_KIND_SERVER, "demo.Echo/Fetch")
			httpClient := find(grpcTrace, tracepb.Span_SPAN_KIND_CLIENT, "GET")
			hello := find(grpcTrace, tracepb.Span_SPAN_KIND_SERVER, "GET /hello")
			if grpcServer.ParentSpanID != parentID || httpClient.ParentSpanID != grpcServer.SpanID || hello.ParentSpanID != httpClient.SpanID {
				t.Errorf("gRPC -> HTTP -> HTTP: parents %s, %s, %s; want %s, %s, %s", grpcServer.ParentSpanID, httpClient.ParentSpanID, hello.ParentSpanID,
					parentID, grpcServer.SpanID, httpClient.SpanID)
			}
		})
	}
}

// TestHTTP2ServerSpans: a net/http server over HTTP/2 - TLS with ALPN, and plaintext
// (prior knowledge, Go 1.24's http.Protocols) - and golang.org/x/net's h2c handler get
// server spans with the status code and network.protocol.version 2, as over HTTP/1,
// and url.scheme https over TLS, http over plaintext;
// up to Go 1.26 (net/http's bundled HTTP/2, x/net's own server: a 2020 x/net, v0.16.0,
// v0.60.0, stripped too) and Go 1.27 (net/http/internal/http2, to which x/net v0.60
// hands its connections). A handler that calls out makes a child span, and an incoming
// traceparent makes the server span a child.
func TestHTTP2ServerSpans(t *testing.T) {
	tgs := testenv.BuildGRPC(t, append(testenv.GRPCBuilds, testenv.GRPCBuild{Version: "v1.85.0", Toolchain: "go1.27.3"})...)
	for _, tg := range tgs {
		t.Run(tg.Toolchain+"-"+tg.Variant.Name, func(t *testing.T) {
			recv := testenv.StartReceiver(t)
			app, servers, xh2cAddr := tracedHTTP2Servers(t, tg, recv)
			traceID, parentID := "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
			for _, c := range servers {
				for _, path := range []string{"/hello", "/unavailable", "/proxy?to=http://" + xh2cAddr + "/sha"} {
					req, _ := http.NewRequest(http.MethodGet, c.url+path, nil)
					// Each server's spans, told apart by their user agent.
					req.Header.Set("User-Agent", c.name)
					req.Header.Set("traceparent", "00-"+traceID+"-"+parentID+"-01")
					resp, err := (&http.Client{Transport: c.rt}).Do(req)
					if err != nil {
						t.Fatalf("%s %s: %v\n%s", c.name, path, err, app.stderr)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.ProtoMajor != 2 {
						t.Fatalf("%s %s: %s, want HTTP/2", c.name, path, resp.Proto)
					}
				}
			}
			// An HTTP/1.1 request that x/net's h2c handler upgrades (curl --http2): the
			// HTTP/2 server answers it as stream 1, and it is one span, HTTP/2's.
			const upgrade = "x/net h2c upgrade"
			out, err := exec.Command("curl", "-sS", "--http2", "-A", upgrade, "-H", "traceparent: 00-"+traceID+"-"+parentID+"-01",
				"-o", "/dev/null", "-w", "%{http_version}", "http://"+xh2cAddr+"/hello").CombinedOutput()
			if string(out) != "2" || err != nil {
				t.Fatalf("curl --http2: %q %v", out, err)
			}
			// Closed: the preface's "request" would end, and have its span, now.
			for _, c := range servers {
				c.rt.(*http.Transport).CloseIdleConnections()
			}
			// Per server: three server spans, one client span (/proxy's) and the
			// server span of the request it made; and the upgraded request's.
			spans, ok := recv.WaitFor(20*time.Second, func(ss []testenv.Span) bool { return len(ss) >= 5*len(servers)+1 })
			if !ok {
				t.Fatalf("spans: %s", spanList(spans))
			}
			time.Sleep(time.Second)
			spans = recv.Spans()
			byID := map[string]testenv.Span{}
			for _, s := range spans {
				byID[s.SpanID] = s
			}
			for _, c := range servers {
				// Go 1.27's HTTP/2 server runs x/net's handler without net/http's
				// serverHandler, and the route is set on a request the probe does not
				// see: spans without http.route there (README limits).
				route := func(r string) string { return r }
				if c.name == "x/net h2c" && tg.Toolchain == "go1.27.3" {
					route = func(string) string { return "" }
				}
				want := map[string]string{
					"/hello":       fmt.Sprintf("%q 200 %v", strings.TrimSpace("GET "+route("/hello")), tracepb.Status_STATUS_CODE_UNSET),
					"/unavailable": fmt.Sprintf("%q 503 %v", strings.TrimSpace("GET "+route("/unavailable")), tracepb.Status_STATUS_CODE_ERROR),
					"/proxy":       fmt.Sprintf("%q 200 %v", strings.TrimSpace("GET "+route("/proxy")), tracepb.Status_STATUS_CODE_UNSET),
				}
				got := map[string]string{}
				for _, s := range spans {
					if s.Kind != tracepb.Span_SPAN_KIND_SERVER || s.Attrs["user_agent.original"] != c.name {
						continue
					}
					path, _ := s.Attrs["url.path"].(string)
					code, _ := s.Attrs["http.response.status_code"].(int64)
					if _, dup := got[path]; dup {
						t.Errorf("%s: a second span for %s", c.name, path)
					}
					got[path] = fmt.Sprintf("%q %d %v", s.Name, code, s.StatusCode)
					if s.Attrs["network.protocol.version"] != "2" {
						t.Errorf("%s %s: network.protocol.version %v", c.name, s.Name, s.Attrs["network.protocol.version"])
					}
					if wantScheme := map[bool]string{true: "https", false: "http"}[c.name == "TLS"]; s.Attrs["url.scheme"] != wantScheme {
						t.Errorf("%s %s: url.scheme %v, want %s", c.name, s.Name, s.Attrs["url.scheme"], wantScheme)
					}
					if s.TraceID != traceID || s.ParentSpanID != parentID {
						t.Errorf("%s %s: trace %s parent %s, want %s %s", c.name, s.Name, s.TraceID, s.ParentSpanID, traceID, parentID)
					}
					if path != "/proxy" {
						continue
					}
					// /proxy's call: a client span under this one, and the back end's
					// server span under that.
					var client, back testenv.Span
					for _, o := range spans {
						if o.Kind == tracepb.Span_SPAN_KIND_CLIENT && o.ParentSpanID == s.SpanID {
							client = o
						}
					}
					for _, o := range spans {
						if client.SpanID != "" && o.Kind == tracepb.Span_SPAN_KIND_SERVER && o.ParentSpanID == client.SpanID {
							back = o
						}
					}
					if client.SpanID == "" || back.Attrs["url.path"] != "/sha" {
						t.Errorf("%s /proxy: client span %q (%v), its server span %q (%v)", c.name, client.Name, client.Attrs, back.Name, back.Attrs)
					}
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("%s server spans by path %v, want %v", c.name, got, want)
				}
			}
			var upgraded []string
			for _, s := range spans {
				if s.Attrs["user_agent.original"] == upgrade {
					code, _ := s.Attrs["http.response.status_code"].(int64)
					upgraded = append(upgraded, fmt.Sprintf("%q %d %v parent %s", s.Name, code, s.Attrs["network.protocol.version"], s.ParentSpanID))
				}
			}
			wantName := "GET /hello"
			if tg.Toolchain == "go1.27.3" {
				wantName = "GET"
			}
			if want := fmt.Sprintf("%q 200 2 parent %s", wantName, parentID); len(upgraded) != 1 || upgraded[0] != want {
				t.Errorf("spans of the upgraded request %q, want one: %s", upgraded, want)
			}
			for _, s := range spans {
				if s.Attrs["http.request.method_original"] == "PRI" {
					t.Errorf("a span for the HTTP/2 connection preface: %v", s.Attrs)
				}
			}
			if said := launcherLines(app); said != "" {
				t.Errorf("launcher said: %s", said)
			}
		})
	}
}

// TestGRPCUnderStress: 200 concurrent RPCs on one connection each get their span, with
// their own IDs; and input no client should send - garbage after the HTTP/2 preface, a
// 64 KiB header block, streams reset mid-call - changes nothing the app does (the same
// answers as untraced) and the launcher keeps running.
func TestGRPCUnderStress(t *testing.T) {
	tg := testenv.BuildGRPC(t, testenv.GRPCBuilds[2])[0]
	recv := testenv.StartReceiver(t)
	app, addr := tracedGRPC(t, tg, recv, "")
	conn := dialGRPC(t, addr)
	untracedAddr := freeAddr(t)
	untraced := start(t, opts{stdin: strings.NewReader("")}, tg.Path, untracedAddr)
	uconn := dialGRPC(t, untracedAddr)

	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			out := new(wrapperspb.StringValue)
			if err := conn.Invoke(context.Background(), "/demo.Echo/Say", wrapperspb.String(fmt.Sprint(i)), out); err != nil || out.Value != fmt.Sprint(i) {
				errs <- fmt.Errorf("call %d: %q %v", i, out.Value, err)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	spans, ok := recv.WaitFor(20*time.Second, func(s []testenv.Span) bool { return len(s) >= n+1 })
	if !ok {
		t.Fatalf("%d spans of %d", len(spans), n+1)
	}
	ids := map[string]bool{}
	for _, s := range spans {
		if s.Name != "demo.Echo/Say" || s.Attrs["rpc.response.status_code"] != "OK" {
			t.Errorf("span %s %v", s.Name, s.Attrs)
		}
		ids[s.SpanID] = true
	}
	if len(ids) != n+1 {
		t.Errorf("%d distinct span IDs for %d spans", len(ids), n+1)
	}

	// Each bad input, to the traced app and the untraced one: the same outcome.
	hostile := func(target string, c *grpc.ClientConn) []string {
		var out []string
		// Garbage after the connection preface.
		if raw, err := net.Dial("tcp", target); err == nil {
			raw.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x08\x01\xff\xff\xff\xff\xfegarbage!"))
			raw.SetReadDeadline(time.Now().Add(2 * time.Second))
			io.Copy(io.Discard, raw)
			raw.Close()
		}
		// A 64 KiB header block.
		big := metadata.AppendToOutgoingContext(context.Background(), "x-big", strings.Repeat("a", 64<<10))
		err := c.Invoke(big, "/demo.Echo/Say", wrapperspb.String("big"), new(wrapperspb.StringValue))
		out = append(out, "64 KiB header: "+status.Code(err).String())
		// Streams reset mid-call: cancelled while the server sleeps.
		for i := 0; i < 20; i++ {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(5*time.Millisecond, cancel)
			err := c.Invoke(ctx, "/demo.Echo/Sleep", wrapperspb.Int32(200), new(emptypb.Empty))
			if i == 0 {
				out = append(out, "reset: "+status.Code(err).String())
			}
		}
		// And the app still answers.
		err = c.Invoke(context.Background(), "/demo.Echo/Say", wrapperspb.String("after"), new(wrapperspb.StringValue))
		return append(out, "after: "+status.Code(err).String())
	}
	traced, plain := hostile(addr, conn), hostile(untracedAddr, uconn)
	if fmt.Sprint(traced) != fmt.Sprint(plain) {
		t.Errorf("traced app: %v; untraced: %v", traced, plain)
	}
	t.Logf("outcomes: %v", traced)
	select {
	case <-app.done:
		t.Fatalf("the launcher ended: %v\n%s", app.err, app.stderr)
	default:
	}
	select {
	case <-untraced.done:
		t.Fatalf("the untraced app ended: %v", untraced.err)
	default:
	}
	if said := launcherLines(app); said != "" {
		t.Errorf("launcher said: %s", said)
	}
}

// launcherLines are the launcher's own lines on a run's stderr (the app's are the
// app's), "" when it said nothing.
func launcherLines(r *run) string {
	var said []string
	for _, line := range strings.Split(r.stderr.String(), "\n") {
		if strings.HasPrefix(line, "launch: ") {
			said = append(said, line)
		}
	}
	return strings.Join(said, "\n")
}

// TestGRPCPropagationUnderLoad: 200 Relay calls at once, each making three calls to
// the next hop over one connection: every one of the 600 downstream server spans is
// the child of its client span, in its trace - no context lost, none given to another
// stream.
func TestGRPCPropagationUnderLoad(t *testing.T) {
	tg := testenv.BuildGRPC(t, testenv.GRPCBuilds[2])[0]
	recv := testenv.StartReceiver(t)
	downstream, downAddr := tracedGRPC(t, tg, recv, "")
	dialGRPC(t, downAddr)
	front, frontAddr := tracedGRPC(t, tg, recv, downAddr)
	fc := dialGRPC(t, frontAddr)
	time.Sleep(300 * time.Millisecond)
	base := len(recv.Spans())

	const n = 200
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fc.Invoke(context.Background(), "/demo.Echo/Relay", wrapperspb.String("hi"), new(wrapperspb.StringValue)); err != nil {
				t.Errorf("Relay: %v", err)
			}
		}()
	}
	wg.Wait()
	want := base + n*(1+3+3)
	spans, ok := recv.WaitFor(60*time.Second, func(s []testenv.Span) bool { return len(s) >= want })
	if !ok {
		t.Fatalf("%d spans, want %d\nfront: %s\ndownstream: %s", len(spans), want, front.stderr, downstream.stderr)
	}
	spans = spans[base:]
	clients := map[string]testenv.Span{}
	for _, s := range spans {
		if s.Kind == tracepb.Span_SPAN_KIND_CLIENT {
			clients[s.SpanID] = s
		}
	}
	joined := 0
	for _, s := range spans {
		if s.Kind != tracepb.Span_SPAN_KIND_SERVER || s.Name == "demo.Echo/Relay" {
			continue
		}
		if c, ok := clients[s.ParentSpanID]; ok && c.TraceID == s.TraceID && c.Name == s.Name {
			joined++
		} else {
			t.Errorf("downstream %s (trace %s): parent %s is not its client span", s.Name, s.TraceID, s.ParentSpanID)
		}
	}
	if joined != 3*n {
		t.Errorf("%d downstream spans joined their call's trace, want %d", joined, 3*n)
	}
	for _, r := range []*run{front, downstream} {
		if said := launcherLines(r); said != "" {
			t.Errorf("launcher said: %s", said)
		}
	}
	if t.Failed() { // the front's counts of header blocks that went without, said at exit
		t.Logf("the front's launcher at exit: %s", stopAndSay(t, front))
	}
}

// TestGRPCTooOld: a grpc release older than the oldest the probes read (v1.39.0) turns
// the gRPC probes off with one line that says why, and nothing else: the app serves
// gRPC as it would untraced, and its net/http server is traced.
func TestGRPCTooOld(t *testing.T) {
	tg := testenv.BuildGRPC(t, testenv.GRPCBuild{Version: "v1.39.0", Toolchain: "go1.22.12"})[0]
	recv := testenv.StartReceiver(t)
	httpAddr := freeAddr(t)
	app, addr := tracedGRPC(t, tg, recv, "", "GRPCSERVICE_HTTP="+httpAddr)
	conn := dialGRPC(t, addr)
	out := new(wrapperspb.StringValue)
	if err := conn.Invoke(context.Background(), "/demo.Echo/Say", wrapperspb.String("old"), out); err != nil || out.Value != "old" {
		t.Fatalf("Say: %q %v\n%s", out.Value, err, app.stderr)
	}
	waitHTTP(t, "http://"+httpAddr+"/hello")
	if _, ok := recv.WaitFor(20*time.Second, func(s []testenv.Span) bool { return len(s) >= 1 }); !ok {
		t.Fatalf("no span for GET /hello\n%s", app.stderr)
	}
	time.Sleep(500 * time.Millisecond)
	for _, s := range recv.Spans() {
		if s.Name != "GET /hello" {
			t.Errorf("span %s %v: only the HTTP server is traced", s.Name, s.Attrs)
		}
	}
	want := "launch: warning: probe not attached: grpc.server, grpc.client: google.golang.org/grpc v1.39.0 is older than the oldest supported, " + grpcprobe.MinVersion
	if said := launcherLines(app); said != want {
		t.Errorf("the launcher said:\n%s\nwant the one line:\n%s", said, want)
	}
}

// http2Server is one of grpcservice's HTTP/2 servers, and a transport that reaches it.
type http2Server struct {
	name string // "TLS", "x/net h2c", "h2c"
	url  string
	rt   http.RoundTripper
}

// tracedHTTP2Servers runs grpcservice under the launcher with its HTTP/2 servers -
// net/http's over TLS and over h2c (prior knowledge, Go 1.24's http.Protocols), x/net's
// h2c handler - and returns it, serving, with each server and x/net's address.
func tracedHTTP2Servers(t *testing.T, tg testenv.Target, recv *testenv.Receiver) (app *run, servers []http2Server, xh2cAddr string) {
	t.Helper()
	tlsAddr, h2cAddr, xh2cAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	app, grpcAddr := tracedGRPC(t, tg, recv, "", "GRPCSERVICE_TLS="+tlsAddr, "GRPCSERVICE_H2C="+h2cAddr, "GRPCSERVICE_XH2C="+xh2cAddr)
	dialGRPC(t, grpcAddr, app.stderr) // serving: the HTTP servers started before
	h2 := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
	h2c := &http.Transport{Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(h2.CloseIdleConnections)
	t.Cleanup(h2c.CloseIdleConnections)
	servers = []http2Server{{"TLS", "https://" + tlsAddr, h2}, {"x/net h2c", "http://" + xh2cAddr, h2c}}
	if offsets.VersionAtLeast(tg.Toolchain, "go1.24") { // http.Protocols
		servers = append(servers, http2Server{"h2c", "http://" + h2cAddr, h2c})
	}
	return app, servers, xh2cAddr
}
