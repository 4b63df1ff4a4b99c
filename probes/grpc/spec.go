// Package grpc instruments google.golang.org/grpc: a server span per RPC (unary and
// streaming, joining the trace of an incoming traceparent) and a client span per unary
// call, parented by the server span of any library the call was made under. This file
// declares what the probes need from a target binary.
package grpc

import "github.com/otel-go-launcher/otel-go-launcher/offsets"

// Module is the instrumented module, and the oldest release supported.
const (
	Module     = "google.golang.org/grpc"
	MinVersion = "v1.40.0"
)

// Functions the probes attach to.
const (
	operateHeaders  = "google.golang.org/grpc/internal/transport.(*http2Server).operateHeaders"
	handleStream    = "google.golang.org/grpc.(*Server).handleStream"
	writeStatus     = "google.golang.org/grpc/internal/transport.(*http2Server).writeStatus" // v1.69+
	writeStatusOld  = "google.golang.org/grpc/internal/transport.(*http2Server).WriteStatus"
	newClientStream = "google.golang.org/grpc.newClientStreamWithParams"
	streamFinish    = "google.golang.org/grpc.(*clientStream).finish"
	// Outgoing context: where a call's header fields are made, and where the
	// connection's writer writes a client stream's header block.
	createHeaderFields  = "google.golang.org/grpc/internal/transport.(*http2Client).createHeaderFields"
	originateStream     = "google.golang.org/grpc/internal/transport.(*loopyWriter).originateStream"     // (str, hdr) v1.53 to v1.82.0
	clientHeaderHandler = "google.golang.org/grpc/internal/transport.(*loopyWriter).clientHeaderHandler" // (hdr) v1.82.1, v1.83+
)

// Releases where the functions' arguments, or the fields read, moved.
const (
	headersContextSince = "v1.60.0" // operateHeaders(ctx, frame, handle)
	serverStreamSince   = "v1.69.0" // transport.ServerStream embeds Stream
	originateHdrSince   = "v1.53.0" // originateStream(str, hdr): the header frame as an argument
	clientHeadersSince  = "v1.82.1" // clientHeaderHandler(hdr *clientHeaders); v1.82.1 came after v1.83.0
	peerSince           = "v1.60.0" // http2Server.peer (a peer.Peer with LocalAddr), not remoteAddr and localAddr
)

// Fields the BPF programs read: grpc's own, golang.org/x/net's HTTP/2 frames and the
// genproto status message (each looked up under its own module), and the standard
// library's TCP addresses.
var (
	// The connection's addresses as the app's net.Conn gave them (RemoteAddr(),
	// LocalAddr()), once per connection: before v1.60 in two fields, since in a
	// peer.Peer.
	http2ServerRemote  = offsets.FieldRef{Struct: "google.golang.org/grpc/internal/transport.http2Server", Field: "remoteAddr"}
	http2ServerLocal   = offsets.FieldRef{Struct: "google.golang.org/grpc/internal/transport.http2Server", Field: "localAddr"}
	http2ServerPeer    = offsets.FieldRef{Struct: "google.golang.org/grpc/internal/transport.http2Server", Field: "peer"}
	peerAddr           = offsets.FieldRef{Struct: "google.golang.org/grpc/peer.Peer", Field: "Addr"}
	peerLocalAddr      = offsets.FieldRef{Struct: "google.golang.org/grpc/peer.Peer", Field: "LocalAddr"}
	streamID           = offsets.FieldRef{Struct: "google.golang.org/grpc/internal/transport.Stream", Field: "id"}
	streamCtx          = offsets.FieldRef{Struct: "google.golang.org/grpc/internal/transport.Stream", Field: "ctx"}
	serverStreamStream = offsets.FieldRef{Struct: "google.golang.org/grpc/internal/transport.ServerStream", Field: "Stream"}
	statusProto        = offsets.FieldRef{Struct: "google.golang.org/grpc/internal/status.Status", Field: "s"}
	errorStatus        = offsets.FieldRef{Struct: "google.golang.org/grpc/internal/status.Error", Field: "s"}
	clientConnTarget   = offsets.FieldRef{Struct: "google.golang.org/grpc.ClientConn", Field: "target"}
	protoCode          = offsets.FieldRef{Struct: "google.golang.org/genproto/googleapis/rpc/status.Status", Field: "Code"}
	protoMessage       = offsets.FieldRef{Struct: "google.golang.org/genproto/googleapis/rpc/status.Status", Field: "Message"}
	metaHeadersFrame   = offsets.FieldRef{Struct: "golang.org/x/net/http2.MetaHeadersFrame", Field: "HeadersFrame"}
	metaHeadersFields  = offsets.FieldRef{Struct: "golang.org/x/net/http2.MetaHeadersFrame", Field: "Fields"}
	headersFrameHeader = offsets.FieldRef{Struct: "golang.org/x/net/http2.HeadersFrame", Field: "FrameHeader"}
	frameStreamID      = offsets.FieldRef{Struct: "golang.org/x/net/http2.FrameHeader", Field: "StreamID"}
	headerName         = offsets.FieldRef{Struct: "golang.org/x/net/http2/hpack.HeaderField", Field: "Name"}
	headerValue        = offsets.FieldRef{Struct: "golang.org/x/net/http2/hpack.HeaderField", Field: "Value"}
	headerSensitive    = offsets.FieldRef{Struct: "golang.org/x/net/http2/hpack.HeaderField", Field: "Sensitive"}
	tcpAddrIP          = offsets.FieldRef{Struct: "net.TCPAddr", Field: "IP"}
	tcpAddrPort        = offsets.FieldRef{Struct: "net.TCPAddr", Field: "Port"}
	errorStringS       = offsets.FieldRef{Struct: "errors.errorString", Field: "s"} // io.EOF: a stream's success
	headerFrameID      = offsets.FieldRef{Struct: "google.golang.org/grpc/internal/transport.headerFrame", Field: "streamID"}
	headerFrameHF      = offsets.FieldRef{Struct: "google.golang.org/grpc/internal/transport.headerFrame", Field: "hf"}
	clientHeadersID    = offsets.FieldRef{Struct: "google.golang.org/grpc/internal/transport.clientHeaders", Field: "streamID"}
	clientHeadersHF    = offsets.FieldRef{Struct: "google.golang.org/grpc/internal/transport.clientHeaders", Field: "hf"}
)

// trackerProgram reaches the server and client paths (a health check over a real
// connection), so that every type the probes read is in its DWARF: the offsets
// tracker builds it with each grpc release.
const trackerProgram = `package main

import (
	"context"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func main() {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return
	}
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(lis)
	conn, err := grpc.Dial(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return
	}
	defer conn.Close()
	healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
}
`

// statusFields read a *status.Status: its proto message's code and message.
var statusFields = []offsets.FieldSpec{{FieldRef: statusProto}, {FieldRef: protoCode}, {FieldRef: protoMessage}}

// ServerSpec: the entry of operateHeaders (the stream's decoded HEADERS: method,
// traceparent), of handleStream (the handler's goroutine and context) and of the
// transport's WriteStatus (the final status) - three hits per RPC.
var ServerSpec = offsets.Spec{
	Name:       "grpc.server",
	Module:     Module,
	MinVersion: MinVersion,
	Functions: []offsets.FuncSpec{
		{Symbols: []string{operateHeaders}},
		{Symbols: []string{handleStream}},
		{Symbols: []string{writeStatus, writeStatusOld}},
	},
	Fields: append([]offsets.FieldSpec{
		{FieldRef: streamID}, {FieldRef: streamCtx},
		{FieldRef: serverStreamStream, Since: serverStreamSince},
		{FieldRef: metaHeadersFrame}, {FieldRef: metaHeadersFields}, {FieldRef: headersFrameHeader}, {FieldRef: frameStreamID},
		{FieldRef: headerName}, {FieldRef: headerValue}, {FieldRef: headerSensitive},
		// The addresses. Optional: without them, spans have no client.* and server.*.
		{FieldRef: http2ServerRemote, Before: peerSince, Optional: true},
		{FieldRef: http2ServerLocal, Before: peerSince, Optional: true},
		{FieldRef: http2ServerPeer, Since: peerSince, Optional: true},
		{FieldRef: peerAddr, Since: peerSince, Optional: true},
		{FieldRef: peerLocalAddr, Since: peerSince, Optional: true},
		{FieldRef: tcpAddrIP}, {FieldRef: tcpAddrPort},
	}, statusFields...),
	Program: trackerProgram,
}

// ClientSpec: every call, unary (ClientConn.Invoke) or a stream (ClientConn.NewStream),
// is a clientStream: the entry of newClientStreamWithParams and each of its RETs (the
// stream, or the error that prevented it), and the entry of clientStream.finish (its
// final status) - three hits per call.
var ClientSpec = offsets.Spec{
	Name:       "grpc.client",
	Module:     Module,
	MinVersion: MinVersion,
	Functions: []offsets.FuncSpec{
		{Symbols: []string{newClientStream}, Returns: true},
		{Symbols: []string{streamFinish}},
		{Symbols: []string{createHeaderFields}, ReturnsOnly: true, Optional: true},
		{Symbols: []string{originateStream}, Optional: true},
		{Symbols: []string{clientHeaderHandler}, Optional: true},
	},
	Fields: append([]offsets.FieldSpec{
		{FieldRef: clientConnTarget}, {FieldRef: errorStatus}, {FieldRef: errorStringS},
		{FieldRef: headerName}, {FieldRef: headerSensitive},
		// Outgoing context only: without them the calls go as they are.
		{FieldRef: headerFrameID, Since: originateHdrSince, Before: clientHeadersSince, Optional: true},
		{FieldRef: headerFrameHF, Since: originateHdrSince, Before: clientHeadersSince, Optional: true},
		{FieldRef: clientHeadersID, Since: clientHeadersSince, Optional: true},
		{FieldRef: clientHeadersHF, Since: clientHeadersSince, Optional: true},
	}, statusFields...),
	Program: trackerProgram,
}

// Specs are this package's probes.
var Specs = []offsets.Spec{ServerSpec, ClientSpec}
