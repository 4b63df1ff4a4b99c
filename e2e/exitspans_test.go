package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// endReason is the attribute a span the launcher ended carries, and its value when the
// app exited during the span.
const endReason, appExit = "otel_go_launcher.span.end_reason", "app_exit"

// checkEndedAtExit checks a span the launcher ended at the app's exit: marked so, with
// no status (none was sent or received), begun before begunBy and ended at the exit,
// which the launcher saw between exited (when the test made the app exit) and done
// (when the launcher had exited).
func checkEndedAtExit(t *testing.T, s testenv.Span, begunBy, exited, done time.Time, statusAttrs ...string) {
	t.Helper()
	if s.Attrs[endReason] != appExit {
		t.Errorf("%s %s: %s %v, want %s", s.Kind, s.Name, endReason, s.Attrs[endReason], appExit)
	}
	if s.StatusCode != tracepb.Status_STATUS_CODE_UNSET {
		t.Errorf("%s %s: status %v %q, want unset", s.Kind, s.Name, s.StatusCode, s.StatusMessage)
	}
	for _, k := range append(statusAttrs, "error.type") {
		if v, ok := s.Attrs[k]; ok {
			t.Errorf("%s %s: %s %v, but it never ended", s.Kind, s.Name, k, v)
		}
	}
	// The clocks are one machine's; the wall clock is read from the monotonic one as
	// every span's is (a few microseconds either way).
	if !s.Start.Before(begunBy) || s.End.Before(exited.Add(-time.Millisecond)) || s.End.After(done.Add(time.Millisecond)) {
		t.Errorf("%s %s: %v to %v; begun by %v, the app was made to exit at %v, the launcher ended by %v", s.Kind, s.Name, s.Start, s.End, begunBy, exited, done)
	}
}

// A gRPC watch - a server-streaming call held open - when the app that holds it exits,
// by a signal or os.Exit: its client span and the server span of the call it serves are
// ended at the exit, marked, with the IDs that went on the wire, so that the server
// span at the other end finds its parent. The tree: the test's traceparent, the
// front's WatchNext server span, its Watch client span, the downstream's Watch server
// span; both apps under launchers.
func TestExitEndsOpenSpansGRPC(t *testing.T) {
	builds := []testenv.GRPCBuild{testenv.GRPCBuilds[1], testenv.GRPCBuilds[3]} // v1.60 (WriteStatus), v1.85 stripped (writeStatus)
	for i, tg := range testenv.BuildGRPC(t, builds...) {
		for _, how := range []string{"SIGTERM", "os.Exit"} {
			t.Run(builds[i].Version+"-"+tg.Variant.Name+"/"+how, func(t *testing.T) {
				recv := testenv.StartReceiver(t)
				down, downAddr := tracedGRPC(t, tg, recv, "")
				dialGRPC(t, downAddr)
				front, frontAddr := tracedGRPC(t, tg, recv, downAddr, "LAUNCH_LOG_LEVEL=info")
				fc := dialGRPC(t, frontAddr)

				traceID, parentID := "6bf92f3577b34da6a3ce929d0e0e4736", "a0f067aa0ba902b7"
				ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-"+traceID+"-"+parentID+"-01")
				watch, err := fc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/demo.Echo/WatchNext")
				if err != nil {
					t.Fatal(err)
				}
				if err := watch.SendMsg(wrapperspb.Int32(2)); err != nil {
					t.Fatal(err)
				}
				watch.CloseSend()
				for n := int32(1); n <= 2; n++ { // the downstream's stream is open
					msg := new(wrapperspb.Int32Value)
					if err := watch.RecvMsg(msg); err != nil || msg.Value != n {
						t.Fatalf("WatchNext: message %d: %v %v\nfront: %s", n, msg.Value, err, front.stderr)
					}
				}

				exited := time.Now()
				wantCode, wantServer := 128+int(syscall.SIGTERM), 1
				if how == "SIGTERM" {
					front.signal(syscall.SIGTERM) // relayed to the app, which dies of it
				} else {
					// Exit's own server span is in flight too when the handler exits.
					wantCode, wantServer = 3, 2
					exitCtx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-"+traceID+"-"+parentID+"-01")
					if err := fc.Invoke(exitCtx, "/demo.Echo/Exit", wrapperspb.Int32(3), new(emptypb.Empty)); err == nil {
						t.Fatal("Exit answered")
					}
				}
				if e := front.wait(30 * time.Second); e.code != wantCode {
					t.Fatalf("front launcher: %v, want exit %d\n%s", e, wantCode, front.stderr)
				}
				done := time.Now()

				// Every span: the warm-up calls' Say server spans (one a service), the
				// front's WatchNext and Watch (and Exit), and the downstream's Watch,
				// which ends when the front's connection goes.
				want := 2 + 2 + wantServer
				spans := exactSpans(t, recv, want, 20*time.Second, front.stderr)
				downHost, downPort := splitAddr(t, downAddr)
				var watchNext, watchCall, watchDown, exitSpan testenv.Span
				for _, s := range spans {
					switch key := s.Kind.String() + " " + s.Name; key {
					case "SPAN_KIND_SERVER demo.Echo/Say":
						if s.ParentSpanID != "" || s.Attrs[endReason] != nil {
							t.Errorf("warm-up Say: parent %q, %s %v", s.ParentSpanID, endReason, s.Attrs[endReason])
						}
					case "SPAN_KIND_SERVER demo.Echo/WatchNext":
						watchNext = s
					case "SPAN_KIND_CLIENT demo.Echo/Watch":
						watchCall = s
					case "SPAN_KIND_SERVER demo.Echo/Watch":
						watchDown = s
					case "SPAN_KIND_SERVER demo.Echo/Exit":
						exitSpan = s
					default:
						t.Errorf("span %s: %s", key, spanList([]testenv.Span{s}))
					}
				}
				if watchNext.SpanID == "" || watchCall.SpanID == "" || watchDown.SpanID == "" || (how == "os.Exit") != (exitSpan.SpanID != "") {
					t.Fatalf("spans: %s", spanList(spans))
				}
				for _, s := range []testenv.Span{watchNext, watchCall, watchDown} {
					if s.TraceID != traceID {
						t.Errorf("%s %s: trace %s, want %s", s.Kind, s.Name, s.TraceID, traceID)
					}
				}
				if watchNext.ParentSpanID != parentID || watchCall.ParentSpanID != watchNext.SpanID || watchDown.ParentSpanID != watchCall.SpanID {
					t.Errorf("parents: WatchNext %s (want %s), Watch call %s (want %s), downstream Watch %s (want the call's %s)",
						watchNext.ParentSpanID, parentID, watchCall.ParentSpanID, watchNext.SpanID, watchDown.ParentSpanID, watchCall.SpanID)
				}
				checkEndedAtExit(t, watchNext, exited, exited, done, "rpc.response.status_code")
				checkEndedAtExit(t, watchCall, exited, exited, done, "rpc.response.status_code")
				if watchCall.Attrs["server.address"] != downHost || watchCall.Attrs["server.port"] != int64(downPort) || watchCall.Attrs["rpc.method"] != "demo.Echo/Watch" {
					t.Errorf("Watch call: %v", watchCall.Attrs)
				}
				if watchCall.Start.Before(watchNext.Start) || watchDown.Start.Before(watchCall.Start) {
					t.Errorf("starts: WatchNext %v, its call %v, the downstream's %v", watchNext.Start, watchCall.Start, watchDown.Start)
				}
				// The downstream's span ended as its handler returned: not the launcher's.
				if _, ok := watchDown.Attrs[endReason]; ok || watchDown.Attrs["rpc.response.status_code"] == nil || watchDown.End.Before(watchDown.Start) {
					t.Errorf("downstream Watch: %v, %v to %v", watchDown.Attrs, watchDown.Start, watchDown.End)
				}
				if how == "os.Exit" {
					if exitSpan.TraceID != traceID || exitSpan.ParentSpanID != parentID {
						t.Errorf("Exit: trace %s parent %s", exitSpan.TraceID, exitSpan.ParentSpanID)
					}
					checkEndedAtExit(t, exitSpan, done, exited, done, "rpc.response.status_code")
				}
				line := fmt.Sprintf("launch: %d spans were still open at the app's exit (grpc.client 1, grpc.server %d): ended there, marked %s=%s",
					1+wantServer, wantServer, endReason, appExit)
				if !strings.Contains(front.stderr.String(), line+"\n") {
					t.Errorf("the front launcher did not say:\n%s\nit said:\n%s", line, front.stderr)
				}
				for _, r := range []*run{front, down} {
					for _, l := range strings.Split(launcherLines(r), "\n") {
						if strings.HasPrefix(l, "launch: warning") || strings.HasPrefix(l, "launch: error") {
							t.Errorf("launcher said: %s", l)
						}
					}
				}
			})
		}
	}
}

// An HTTP long poll in flight when the app exits: the handler's server span and its
// call's client span are ended at the exit, marked, and the call's server (plain, the
// test's) got the traceparent of that very client span.
func TestExitEndsOpenSpansHTTP(t *testing.T) {
	tg := testenv.BuildTargets(t, "httpserver", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})[0]
	recv := testenv.StartReceiver(t)

	// The long poll's server: it answers when the caller goes.
	arrived := make(chan string, 1)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	poll := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- r.Header.Get("traceparent")
		<-r.Context().Done()
	})}
	go poll.Serve(l)
	t.Cleanup(func() { poll.Close() })

	front, addr := tracedServer(t, tg, recv, "LAUNCH_LOG_LEVEL=info")
	firstRequest(t, addr, "/items/first")
	traceID, parentID := "7bf92f3577b34da6a3ce929d0e0e4736", "b0f067aa0ba902b7"
	go func() {
		req, _ := http.NewRequest("GET", "http://"+addr+"/proxy?to=http://"+l.Addr().String()+"/poll%3Fwait%3D1", nil)
		req.Header.Set("traceparent", "00-"+traceID+"-"+parentID+"-01")
		if resp, err := http.DefaultClient.Do(req); err == nil { // the front exits first
			resp.Body.Close()
		}
	}()
	var sent string
	select {
	case sent = <-arrived:
	case <-time.After(20 * time.Second):
		t.Fatalf("the long poll never came\n%s", front.stderr)
	}
	exited := time.Now()
	front.signal(syscall.SIGTERM)
	if e := front.wait(30 * time.Second); e.code != 128+int(syscall.SIGTERM) {
		t.Fatalf("launcher: %v, want exit 143\n%s", e, front.stderr)
	}
	done := time.Now()

	spans, ok := recv.WaitFor(20*time.Second, func(s []testenv.Span) bool { return len(s) >= 3 })
	if !ok {
		t.Fatalf("spans: %s\n%s", spanList(spans), front.stderr)
	}
	time.Sleep(500 * time.Millisecond)
	spans = recv.Spans()
	if len(spans) != 3 {
		t.Fatalf("%d spans, want 3 (the first request's, the long poll's server and client): %s", len(spans), spanList(spans))
	}
	var server, client testenv.Span
	for _, s := range spans {
		switch {
		case s.Attrs["url.path"] == "/items/first":
			if s.Attrs[endReason] != nil || s.ParentSpanID != "" {
				t.Errorf("first request: %s", spanList([]testenv.Span{s}))
			}
		case s.Kind == tracepb.Span_SPAN_KIND_SERVER:
			server = s
		default:
			client = s
		}
	}
	if server.Name != "GET" || server.Attrs["url.path"] != "/proxy" || server.TraceID != traceID || server.ParentSpanID != parentID {
		t.Errorf("the long poll's server span: %s", spanList([]testenv.Span{server}))
	}
	if client.Kind != tracepb.Span_SPAN_KIND_CLIENT || client.Attrs["url.full"] != "http://"+l.Addr().String()+"/poll?wait=1" ||
		client.TraceID != traceID || client.ParentSpanID != server.SpanID {
		t.Errorf("the long poll's client span (want the child of %s): %s", server.SpanID, spanList([]testenv.Span{client}))
	}
	checkEndedAtExit(t, server, exited, exited, done, "http.response.status_code")
	checkEndedAtExit(t, client, exited, exited, done, "http.response.status_code")
	if want := "00-" + traceID + "-" + client.SpanID + "-01"; sent != want {
		t.Errorf("the long poll's server got traceparent %q, want the client span's %q", sent, want)
	}
	line := "launch: 2 spans were still open at the app's exit (net/http.client 1, net/http.server 1): ended there, marked " + endReason + "=" + appExit
	if !strings.Contains(front.stderr.String(), line+"\n") {
		t.Errorf("the launcher did not say:\n%s\nit said:\n%s", line, front.stderr)
	}
}
