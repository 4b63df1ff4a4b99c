// Command connservice is a gRPC and HTTP service on connections that are not a bare
// *net.TCPConn, as etcd and services behind load balancers run: the tests trace it,
// built with grpc releases on each side of v1.60 (where grpc moved the addresses it
// keeps of a connection) and with several Go releases.
//
//	connservice ADDR
//
// serves gRPC and HTTP/1 on one port, ADDR, told apart by github.com/soheilhy/cmux:
// the servers' connections are *cmux.MuxConn, which embeds the net.Conn it wraps.
// Environment:
//
//	CONNSERVICE_PROXY=ADDR   the same behind a PROXY protocol listener
//	                         (github.com/pires/go-proxyproto), cmux over it: the
//	                         connections' addresses are those the header gives
//	CONNSERVICE_TLS=ADDR     HTTP/1.1 and HTTP/2 (by ALPN) over TLS, net/http's server
//	CONNSERVICE_XTLS=ADDR    the same with golang.org/x/net/http2's server
//	                         (http2.ConfigureServer)
//	CONNSERVICE_GRPCTLS=ADDR gRPC over TLS (grpc's credentials: the connection a wrapper
//	                         of a *tls.Conn)
//	CONNSERVICE_CERT, CONNSERVICE_KEY   the TLS servers' certificate and key (PEM files)
//	CONNSERVICE_NEXT=ADDR    where /relay's gRPC call goes (default: ADDR)
//
// HTTP: /hello answers hello; /relay calls demo.Echo/Say on NEXT with the request's
// context. gRPC, demo.Echo (declared by hand on the well-known wrapper messages):
//
//	Say(StringValue) StringValue     the argument back
//	Fetch(StringValue) StringValue   GET of the URL given, with the request's context:
//	                                 the body
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/soheilhy/cmux"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

type service struct{ next *grpc.ClientConn }

func (s *service) say(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	return in, nil
}

func (s *service) fetch(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
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

func (s *service) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })
	mux.HandleFunc("/relay", func(w http.ResponseWriter, r *http.Request) {
		out := new(wrapperspb.StringValue)
		if err := s.next.Invoke(r.Context(), "/demo.Echo/Say", wrapperspb.String("from http"), out); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		io.WriteString(w, out.Value)
	})
	return mux
}

// unary adapts a typed handler to grpc's MethodDesc.
func unary(name string, h func(*service, context.Context, *wrapperspb.StringValue) (*wrapperspb.StringValue, error)) grpc.MethodDesc {
	return grpc.MethodDesc{
		MethodName: name,
		Handler: func(srv interface{}, ctx context.Context, dec func(interface{}) error, ic grpc.UnaryServerInterceptor) (interface{}, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			return h(srv.(*service), ctx, in)
		},
	}
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: "demo.Echo",
	HandlerType: (*interface{})(nil),
	Methods:     []grpc.MethodDesc{unary("Say", (*service).say), unary("Fetch", (*service).fetch)},
}

// split serves gRPC (HTTP/2 with prior knowledge, as etcd tells it) and HTTP/1 on l.
func split(l net.Listener, gs *grpc.Server, hs *http.Server) {
	m := cmux.New(l)
	grpcL := m.Match(cmux.HTTP2())
	httpL := m.Match(cmux.HTTP1Fast())
	go gs.Serve(grpcL)
	go hs.Serve(httpL)
	if err := m.Serve(); err != nil && !errors.Is(err, net.ErrClosed) {
		log.Fatal(err)
	}
}

// serveTLS serves h over TLS on addr, with x/net's HTTP/2 server if xnet.
func serveTLS(addr string, h http.Handler, xnet bool) {
	srv := &http.Server{Addr: addr, Handler: h}
	if xnet {
		if err := http2.ConfigureServer(srv, &http2.Server{}); err != nil {
			log.Fatal(err)
		}
	}
	log.Fatal(srv.ListenAndServeTLS(os.Getenv("CONNSERVICE_CERT"), os.Getenv("CONNSERVICE_KEY")))
}

func main() {
	if len(os.Args) != 2 {
		log.Fatal("usage: connservice ADDR")
	}
	addr := os.Args[1]
	next := addr
	if n := os.Getenv("CONNSERVICE_NEXT"); n != "" {
		next = n
	}
	// Listening before the client dials: a dial refused would back off for a second.
	l, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	s := &service{}
	if s.next, err = grpc.Dial(next, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		log.Fatal(err)
	}
	gs := grpc.NewServer()
	gs.RegisterService(&serviceDesc, s)
	hs := &http.Server{Handler: s.routes()}
	if a := os.Getenv("CONNSERVICE_TLS"); a != "" {
		go serveTLS(a, hs.Handler, false)
	}
	if a := os.Getenv("CONNSERVICE_XTLS"); a != "" {
		go serveTLS(a, hs.Handler, true)
	}
	if a := os.Getenv("CONNSERVICE_GRPCTLS"); a != "" {
		creds, err := credentials.NewServerTLSFromFile(os.Getenv("CONNSERVICE_CERT"), os.Getenv("CONNSERVICE_KEY"))
		if err != nil {
			log.Fatal(err)
		}
		l, err := net.Listen("tcp", a)
		if err != nil {
			log.Fatal(err)
		}
		tlsServer := grpc.NewServer(grpc.Creds(creds))
		tlsServer.RegisterService(&serviceDesc, s)
		go func() { log.Fatal(tlsServer.Serve(l)) }()
	}
	if a := os.Getenv("CONNSERVICE_PROXY"); a != "" {
		l, err := net.Listen("tcp", a)
		if err != nil {
			log.Fatal(err)
		}
		go split(&proxyproto.Listener{Listener: l}, gs, hs)
	}
	fmt.Fprintln(os.Stderr, "connservice: serving on", addr)
	split(l, gs, hs)
}
