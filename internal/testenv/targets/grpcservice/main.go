// Command grpcservice is the gRPC program the tests trace, built with several grpc
// releases (go.mod files go.grpc-vX.Y.mod; one module, no generated code: the service
// is declared by hand on the well-known wrapper messages).
//
//	grpcservice ADDR [NEXT]
//
// serves demo.Echo on ADDR; Relay calls Say on NEXT. With GRPCSERVICE_HTTP=ADDR it
// also serves HTTP/1 there: /relay calls Say on NEXT with the request's context, /hello
// answers hello, /unavailable 503, /panic panics; GRPCSERVICE_TLS=ADDR serves the same over TLS (a
// self-signed certificate; HTTP/2 by ALPN), GRPCSERVICE_H2C=ADDR over HTTP/1 and
// plaintext HTTP/2 (Go 1.24+), GRPCSERVICE_XH2C=ADDR with golang.org/x/net's h2c
// handler. Methods:
//
//	Say(StringValue) StringValue          the argument back
//	Fail(Int32Value) Empty                the status whose code is the argument
//	Relay(StringValue) StringValue        Say on NEXT with the request's context, then
//	                                      again from a goroutine it starts, then Count(3)
//	Deadline(StringValue) Empty           Sleep(2000) on NEXT with a 50 ms deadline
//	Sleep(Int32Value) Empty               sleeps that many milliseconds (deadlines)
//	Fetch(StringValue) StringValue        GET of the URL given, with the request's
//	                                      context: the body
//	Orphan(StringValue) StringValue       Say on NEXT with context.Background(), in the
//	                                      handler's goroutine
//	Detached(StringValue) StringValue     the same from a goroutine it starts
//	Deep(Int32Value) StringValue          Say on NEXT from a goroutine it starts, with a
//	                                      context that many layers above the request's
//	Via(StringValue) StringValue          the argument is "METHOD[,REST]": METHOD on
//	                                      NEXT with the request's context and REST; its
//	                                      answer
//	Forward(StringValue) StringValue      the same, the incoming traceparent and
//	                                      tracestate metadata forwarded, as gRPC proxies
//	                                      do
//	Seen(StringValue) StringValue         the traceparent and tracestate metadata that
//	                                      came: "traceparent=V,V;tracestate=V,V"
//	Count(Int32Value) stream Int32Value   server streaming: 1..n
//	Sum(stream Int32Value) Int32Value     client streaming
//	Chat(stream StringValue) stream ...   bidi: each message back
//	Watch(Int32Value) stream Int32Value   1..n, then open until the client goes
//	WatchNext(Int32Value) stream ...      Watch(n) on NEXT with the request's context,
//	                                      its messages passed on, open as long as it is
//	Exit(Int32Value) Empty                os.Exit with that code, in the handler
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

type echo struct{ next *grpc.ClientConn }

// xh2cClient speaks plaintext HTTP/2 with golang.org/x/net's transport.
var xh2cClient = &http.Client{Transport: &http2.Transport{
	AllowHTTP: true,
	// DialTLS, not DialTLSContext: the oldest x/net this builds with has only it.
	DialTLS: func(network, addr string, _ *tls.Config) (net.Conn, error) { return net.Dial(network, addr) },
}}

func (e *echo) say(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	return in, nil
}

func (e *echo) fail(ctx context.Context, in *wrapperspb.Int32Value) (*emptypb.Empty, error) {
	return nil, status.Error(codes.Code(in.Value), "failed on purpose")
}

func (e *echo) relay(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	if e.next == nil {
		return nil, status.Error(codes.FailedPrecondition, "no next hop")
	}
	out := new(wrapperspb.StringValue)
	if err := e.next.Invoke(ctx, "/demo.Echo/Say", in, out); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- e.next.Invoke(ctx, "/demo.Echo/Say", in, new(wrapperspb.StringValue)) }()
	if err := <-done; err != nil {
		return nil, err
	}
	// A server-streaming call too.
	stream, err := e.next.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/demo.Echo/Count")
	if err != nil {
		return nil, err
	}
	if err := stream.SendMsg(wrapperspb.Int32(3)); err != nil {
		return nil, err
	}
	stream.CloseSend()
	for {
		err := stream.RecvMsg(new(wrapperspb.Int32Value))
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

func (e *echo) orphan(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	if e.next == nil {
		return nil, status.Error(codes.FailedPrecondition, "no next hop")
	}
	out := new(wrapperspb.StringValue)
	return out, e.next.Invoke(context.Background(), "/demo.Echo/Say", in, out)
}

func (e *echo) detached(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	if e.next == nil {
		return nil, status.Error(codes.FailedPrecondition, "no next hop")
	}
	out := new(wrapperspb.StringValue)
	done := make(chan error)
	go func() { done <- e.next.Invoke(context.Background(), "/demo.Echo/Say", in, out) }()
	return out, <-done
}

// layerKey keys the values Deep's layers hold.
type layerKey struct{}

// deep calls Say on the next hop from a goroutine, with a context in.Value layers above
// the request's: values, timeouts, cancels, WithoutCancel in turn.
func (e *echo) deep(ctx context.Context, in *wrapperspb.Int32Value) (*wrapperspb.StringValue, error) {
	if e.next == nil {
		return nil, status.Error(codes.FailedPrecondition, "no next hop")
	}
	for i := 0; i < int(in.Value); i++ {
		switch i % 4 {
		case 0:
			ctx = context.WithValue(ctx, layerKey{}, i)
		case 1:
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Minute)
			defer cancel()
		case 2:
			var cancel context.CancelFunc
			ctx, cancel = context.WithCancel(ctx)
			defer cancel()
		case 3:
			ctx = context.WithoutCancel(ctx)
		}
	}
	out := new(wrapperspb.StringValue)
	done := make(chan error)
	go func() { done <- e.next.Invoke(ctx, "/demo.Echo/Say", wrapperspb.String("deep"), out) }()
	return out, <-done
}

// via calls the first method of in on the next hop with the rest, forwarding the
// incoming trace context metadata or not.
func (e *echo) via(ctx context.Context, in *wrapperspb.StringValue, forward bool) (*wrapperspb.StringValue, error) {
	if e.next == nil {
		return nil, status.Error(codes.FailedPrecondition, "no next hop")
	}
	method, rest, _ := strings.Cut(in.Value, ",")
	if forward {
		md, _ := metadata.FromIncomingContext(ctx)
		for _, k := range []string{"traceparent", "tracestate"} {
			for _, v := range md.Get(k) {
				ctx = metadata.AppendToOutgoingContext(ctx, k, v)
			}
		}
	}
	out := new(wrapperspb.StringValue)
	if err := e.next.Invoke(ctx, method, wrapperspb.String(rest), out); err != nil {
		return nil, err
	}
	return out, nil
}

func (e *echo) viaHop(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	return e.via(ctx, in, false)
}

func (e *echo) forward(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	return e.via(ctx, in, true)
}

func (e *echo) seen(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	return wrapperspb.String("traceparent=" + strings.Join(md.Get("traceparent"), ",") + ";tracestate=" + strings.Join(md.Get("tracestate"), ",")), nil
}

// deadline calls Sleep(2000) on the next hop with a deadline of 50 ms.
func (e *echo) deadline(ctx context.Context, in *wrapperspb.StringValue) (*emptypb.Empty, error) {
	if e.next == nil {
		return nil, status.Error(codes.FailedPrecondition, "no next hop")
	}
	ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	return &emptypb.Empty{}, e.next.Invoke(ctx, "/demo.Echo/Sleep", wrapperspb.Int32(2000), new(emptypb.Empty))
}

func (e *echo) sleep(ctx context.Context, in *wrapperspb.Int32Value) (*emptypb.Empty, error) {
	select {
	case <-time.After(time.Duration(in.Value) * time.Millisecond):
		return &emptypb.Empty{}, nil
	case <-ctx.Done():
		// The client's deadline (grpc-timeout) or the cancel its deadline sent,
		// whichever reached the server first: the status is the deadline's.
		if _, ok := ctx.Deadline(); ok {
			return nil, status.Error(codes.DeadlineExceeded, "deadline passed while sleeping")
		}
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

func (e *echo) fetch(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.Value, nil)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return wrapperspb.String(string(body)), nil
}

// routes: /relay (Say on the next hop, with the request's context), /hello,
// /unavailable and /panic (the handler panics).
func (e *echo) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })
	mux.HandleFunc("/unavailable", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) { panic("/panic") })
	// /sha: the SHA-256 of the request body, and the traceparent it came with.
	mux.HandleFunc("/sha", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		if _, err := io.Copy(h, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Traceparent-Seen", strings.Join(r.Header.Values("traceparent"), ","))
		fmt.Fprintf(w, "%x", h.Sum(nil))
	})
	// /proxy?to=URL[&via=x][&keep=1]: the request's body to URL, over plaintext HTTP/2 (net/http's
	// client, or with via=x golang.org/x/net's), with the request's context (and with
	// keep=1 its traceparent, set by the app); the answer back.
	mux.HandleFunc("/proxy", func(w http.ResponseWriter, r *http.Request) {
		client := h2cClient
		if r.URL.Query().Get("via") == "x" {
			client = xh2cClient
		}
		req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, r.URL.Query().Get("to"), r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if r.URL.Query().Get("keep") != "" { // the app sends the traceparent itself
			req.Header.Set("traceparent", r.Header.Get("traceparent"))
		}
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("X-Proto", resp.Proto)
		w.Header().Set("X-Traceparent-Seen", resp.Header.Get("X-Traceparent-Seen"))
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	})
	mux.HandleFunc("/relay", func(w http.ResponseWriter, r *http.Request) {
		out := new(wrapperspb.StringValue)
		if err := e.next.Invoke(r.Context(), "/demo.Echo/Say", wrapperspb.String("from http"), out); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		io.WriteString(w, out.Value)
	})
	return mux
}

// serveTLS serves the routes over TLS with a new self-signed certificate: HTTP/2 for
// clients that offer it (ALPN), as every net/http server does.
func (e *echo) serveTLS(addr string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Addr: addr, Handler: e.routes(), TLSConfig: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}}
	log.Fatal(srv.ListenAndServeTLS("", ""))
}

func count(srv interface{}, stream grpc.ServerStream) error {
	in := new(wrapperspb.Int32Value)
	if err := stream.RecvMsg(in); err != nil {
		return err
	}
	for i := int32(1); i <= in.Value; i++ {
		if err := stream.SendMsg(wrapperspb.Int32(i)); err != nil {
			return err
		}
	}
	return nil
}

// watch sends 1..n, then stays open until the client goes: a watch, a keep-alive.
func watch(srv interface{}, stream grpc.ServerStream) error {
	if err := count(srv, stream); err != nil {
		return err
	}
	<-stream.Context().Done()
	return status.FromContextError(stream.Context().Err()).Err()
}

// watchNext holds Watch(n) open on the next hop, with the request's context, and passes
// its messages on.
func watchNext(srv interface{}, stream grpc.ServerStream) error {
	e := srv.(*echo)
	if e.next == nil {
		return status.Error(codes.FailedPrecondition, "no next hop")
	}
	in := new(wrapperspb.Int32Value)
	if err := stream.RecvMsg(in); err != nil {
		return err
	}
	up, err := e.next.NewStream(stream.Context(), &grpc.StreamDesc{ServerStreams: true}, "/demo.Echo/Watch")
	if err != nil {
		return err
	}
	if err := up.SendMsg(in); err != nil {
		return err
	}
	up.CloseSend()
	for {
		msg := new(wrapperspb.Int32Value)
		if err := up.RecvMsg(msg); err != nil {
			return err
		}
		if err := stream.SendMsg(msg); err != nil {
			return err
		}
	}
}

// exit ends the program with the code asked for, from the handler: whatever is in
// flight stays so.
func (e *echo) exit(ctx context.Context, in *wrapperspb.Int32Value) (*emptypb.Empty, error) {
	os.Exit(int(in.Value))
	return nil, nil
}

func sum(srv interface{}, stream grpc.ServerStream) error {
	var total int32
	for {
		in := new(wrapperspb.Int32Value)
		err := stream.RecvMsg(in)
		if errors.Is(err, io.EOF) {
			return stream.SendMsg(wrapperspb.Int32(total))
		}
		if err != nil {
			return err
		}
		total += in.Value
	}
}

func chat(srv interface{}, stream grpc.ServerStream) error {
	for {
		in := new(wrapperspb.StringValue)
		err := stream.RecvMsg(in)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.SendMsg(in); err != nil {
			return err
		}
	}
}

// unary adapts a typed handler to grpc's MethodDesc, interceptors included.
func unary[In any, PIn interface {
	*In
	any
}, Out any](name string, h func(*echo, context.Context, PIn) (Out, error)) grpc.MethodDesc {
	return grpc.MethodDesc{
		MethodName: name,
		Handler: func(srv interface{}, ctx context.Context, dec func(interface{}) error, ic grpc.UnaryServerInterceptor) (interface{}, error) {
			in := PIn(new(In))
			if err := dec(in); err != nil {
				return nil, err
			}
			call := func(ctx context.Context, req interface{}) (interface{}, error) { return h(srv.(*echo), ctx, req.(PIn)) }
			if ic == nil {
				return call(ctx, in)
			}
			return ic(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/demo.Echo/" + name}, call)
		},
	}
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: "demo.Echo",
	HandlerType: (*interface{})(nil),
	Methods: []grpc.MethodDesc{
		unary("Say", (*echo).say),
		unary("Fail", (*echo).fail),
		unary("Relay", (*echo).relay),
		unary("Sleep", (*echo).sleep),
		unary("Fetch", (*echo).fetch),
		unary("Deadline", (*echo).deadline),
		unary("Orphan", (*echo).orphan),
		unary("Detached", (*echo).detached),
		unary("Deep", (*echo).deep),
		unary("Via", (*echo).viaHop),
		unary("Forward", (*echo).forward),
		unary("Seen", (*echo).seen),
		unary("Exit", (*echo).exit),
	},
	Streams: []grpc.StreamDesc{
		{StreamName: "Count", Handler: count, ServerStreams: true},
		{StreamName: "Sum", Handler: sum, ClientStreams: true},
		{StreamName: "Chat", Handler: chat, ServerStreams: true, ClientStreams: true},
		{StreamName: "Watch", Handler: watch, ServerStreams: true},
		{StreamName: "WatchNext", Handler: watchNext, ServerStreams: true},
	},
}

func main() {
	if len(os.Args) < 2 {
		log.Fatal("usage: grpcservice ADDR [NEXT]")
	}
	lis, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	e := &echo{}
	if len(os.Args) > 2 {
		if e.next, err = grpc.Dial(os.Args[2], grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
			log.Fatal(err)
		}
	}
	if addr := os.Getenv("GRPCSERVICE_HTTP"); addr != "" {
		go func() { log.Fatal(http.ListenAndServe(addr, e.routes())) }()
	}
	if addr := os.Getenv("GRPCSERVICE_TLS"); addr != "" {
		go e.serveTLS(addr)
	}
	if addr := os.Getenv("GRPCSERVICE_H2C"); addr != "" {
		go serveH2C(addr, e.routes())
	}
	if addr := os.Getenv("GRPCSERVICE_XH2C"); addr != "" {
		// golang.org/x/net's h2c handler: it takes the HTTP/1 request of the
		// connection preface over, and serves HTTP/2 with x/net's server.
		go func() { log.Fatal(http.ListenAndServe(addr, h2c.NewHandler(e.routes(), &http2.Server{}))) }()
	}
	s := grpc.NewServer()
	s.RegisterService(&serviceDesc, e)
	log.Fatal(s.Serve(lis))
}
