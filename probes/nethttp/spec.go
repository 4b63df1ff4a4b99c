// Package nethttp instruments net/http: server spans, client spans linked to the
// server request that caused them, and the W3C traceparent on outgoing requests. This
// file declares what the probes need from a target binary.
package nethttp

import "github.com/otel-go-launcher/otel-go-launcher/offsets"

// Fields read by the BPF program, by name.
var (
	reqMethod       = offsets.FieldRef{Struct: "net/http.Request", Field: "Method"}
	reqURL          = offsets.FieldRef{Struct: "net/http.Request", Field: "URL"}
	reqProtoMajor   = offsets.FieldRef{Struct: "net/http.Request", Field: "ProtoMajor"}
	reqProtoMinor   = offsets.FieldRef{Struct: "net/http.Request", Field: "ProtoMinor"}
	reqHeader       = offsets.FieldRef{Struct: "net/http.Request", Field: "Header"}
	reqHost         = offsets.FieldRef{Struct: "net/http.Request", Field: "Host"}
	reqRemoteAddr   = offsets.FieldRef{Struct: "net/http.Request", Field: "RemoteAddr"}
	reqTLS          = offsets.FieldRef{Struct: "net/http.Request", Field: "TLS"}
	reqPat          = offsets.FieldRef{Struct: "net/http.Request", Field: "pat"}
	reqPattern      = offsets.FieldRef{Struct: "net/http.Request", Field: "Pattern"}
	reqCtx          = offsets.FieldRef{Struct: "net/http.Request", Field: "ctx"}
	patternStr      = offsets.FieldRef{Struct: "net/http.pattern", Field: "str"}
	urlScheme       = offsets.FieldRef{Struct: "net/url.URL", Field: "Scheme"}
	urlHost         = offsets.FieldRef{Struct: "net/url.URL", Field: "Host"}
	urlPath         = offsets.FieldRef{Struct: "net/url.URL", Field: "Path"}
	urlRawQuery     = offsets.FieldRef{Struct: "net/url.URL", Field: "RawQuery"}
	responseStatus  = offsets.FieldRef{Struct: "net/http.response", Field: "status"}
	h2WriterRWS     = offsets.FieldRef{Struct: "net/http.http2responseWriter", Field: "rws"}
	h2WriterStatus  = offsets.FieldRef{Struct: "net/http.http2responseWriterState", Field: "status"}
	h2WriterRWS127  = offsets.FieldRef{Struct: "net/http/internal/http2.responseWriter", Field: "rws"}
	h2Status127     = offsets.FieldRef{Struct: "net/http/internal/http2.responseWriterState", Field: "status"}
	h2ClientReqURL  = offsets.FieldRef{Struct: "net/http/internal/http2.ClientRequest", Field: "URL"}
	h2ReqContext    = offsets.FieldRef{Struct: "net/http/internal/http2.ServerRequest", Field: "Context"}
	h2ReqMethod     = offsets.FieldRef{Struct: "net/http/internal/http2.ServerRequest", Field: "Method"}
	h2ReqURL        = offsets.FieldRef{Struct: "net/http/internal/http2.ServerRequest", Field: "URL"}
	h2ReqHeader     = offsets.FieldRef{Struct: "net/http/internal/http2.ServerRequest", Field: "Header"}
	h2ReqHost       = offsets.FieldRef{Struct: "net/http/internal/http2.ServerRequest", Field: "Host"}
	h2ReqProtoMajor = offsets.FieldRef{Struct: "net/http/internal/http2.ServerRequest", Field: "ProtoMajor"}
	h2ReqRemoteAddr = offsets.FieldRef{Struct: "net/http/internal/http2.ServerRequest", Field: "RemoteAddr"}
	h2ReqTLS        = offsets.FieldRef{Struct: "net/http/internal/http2.ServerRequest", Field: "TLS"}
	xnetWriterRWS   = offsets.FieldRef{Struct: "golang.org/x/net/http2.responseWriter", Field: "rws"}
	xnetStatus      = offsets.FieldRef{Struct: "golang.org/x/net/http2.responseWriterState", Field: "status"}
	respStatusCode  = offsets.FieldRef{Struct: "net/http.Response", Field: "StatusCode"}
	respProtoMajor  = offsets.FieldRef{Struct: "net/http.Response", Field: "ProtoMajor"}
	respProtoMinor  = offsets.FieldRef{Struct: "net/http.Response", Field: "ProtoMinor"}

	// http.Header is a map[string][]string: its layout is the runtime's.
	hmapB          = offsets.FieldRef{Struct: "runtime.hmap", Field: "B"}
	hmapBuckets    = offsets.FieldRef{Struct: "runtime.hmap", Field: "buckets"}
	hmapOldbuckets = offsets.FieldRef{Struct: "runtime.hmap", Field: "oldbuckets"}
	swissDirPtr    = offsets.FieldRef{Struct: "internal/runtime/maps.Map", Field: "dirPtr"}
	swissDirLen    = offsets.FieldRef{Struct: "internal/runtime/maps.Map", Field: "dirLen"}
	tableGroups    = offsets.FieldRef{Struct: "internal/runtime/maps.table", Field: "groups"}
	groupsData     = offsets.FieldRef{Struct: "internal/runtime/maps.groupsReference", Field: "data"}
	groupsMask     = offsets.FieldRef{Struct: "internal/runtime/maps.groupsReference", Field: "lengthMask"}
)

// swissMapsSince is the Go release whose maps are Swiss tables.
const swissMapsSince = "go1.24"

// http2InternalSince is the Go release whose HTTP/2 server is net/http/internal/http2,
// not the copy bundled into net/http.
const http2InternalSince = "go1.27"

// mapExperiments switch a release's map layout (Swiss tables opt-in in Go 1.23, opt-out
// in 1.24 and 1.25): the probes pick the layout by release, so such builds are refused.
var mapExperiments = []string{"swissmap", "noswissmap"}

// trackerProgram reaches the server and client paths, so that every type the probes
// read is in its DWARF: the offsets tracker builds it with each Go release.
const trackerProgram = `package main

import "net/http"

func main() {
	http.HandleFunc("/{name}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	go http.ListenAndServe("127.0.0.1:0", nil)
	if resp, err := http.Get("http://127.0.0.1:1/"); err == nil {
		resp.Body.Close()
	}
}
`

// ServerSpec: one uprobe at the entry of serverHandler.ServeHTTP, the one function every
// request to a net/http server passes through, where the request is complete (method,
// URL, headers); and one at the entry of what runs after the handler in the same
// goroutine, where the route pattern is set and the response status written: HTTP/1's
// (*response).finishRequest, HTTP/2's (*responseWriter).handlerDone. Two hits per
// request, both entries: a RET would be single-stepped, three times the cost on amd64.
// An HTTP/1 request that never reaches finishRequest (hijacked, or its handler
// panicked) ends at the entry of the function conn.serve defers, once per connection;
// the entry of (*response).Hijack, hit only by a hijack, tells the two apart. An HTTP/2
// request whose handler panicked ends at the call that resets its stream, made only
// then.
var ServerSpec = offsets.Spec{
	Name:   "net/http.server",
	Module: "std",
	Functions: []offsets.FuncSpec{
		{Symbols: []string{serveHTTP}},
		{Symbols: []string{finishRequest}},
		{Symbols: []string{connServeDeferred}},
		// Absent where nothing in the program can hijack (the linker drops it).
		{Symbols: []string{responseHijack}, Optional: true},
		// Absent in a program built without HTTP/2 (-tags nethttpomithttp2).
		{Symbols: []string{h2HandlerDone, h2HandlerDone127}, Optional: true},
		// Where runHandler's deferred function resets a panicked stream.
		{Symbols: []string{h2RunHandlerDeferred, h2RunHandlerDeferred127}, Calls: []string{h2WriteFromHandler, h2WriteFromHandler127}, Optional: true},
	},
	Fields:      append(append([]offsets.FieldSpec{}, serverFields...), headerMapFields...),
	Experiments: mapExperiments,
	Program:     trackerProgram,
}

// XNetServerSpec: an HTTP/2 server that calls the app's handler itself, not through
// net/http's serverHandler: golang.org/x/net/http2's own (h2c.NewHandler,
// http2.Server.ServeConn), or - x/net v0.60+ built with Go 1.27, which hands its
// connections to net/http - Go 1.27's net/http/internal/http2. The entry of its
// serverConn.runHandler(rw, req, handler), where the request is complete, and the entry
// of responseWriter.handlerDone, which runHandler defers: the handler has returned and
// the status is still there (handlerDone then frees it, before runHandler's RETs). Two
// hits per request, both entries. Only in a program with x/net's server: elsewhere
// every request reaches serverHandler. A request that reaches serverHandler under it
// too (x/net's ConfigureServer over TLS; every HTTP/2 request of a Go 1.27 program
// with x/net's h2c) is still one span, with three hits. A request whose handler
// panicked reaches no handlerDone: it ends at the call that resets its stream.
var XNetServerSpec = offsets.Spec{
	Name:   "x/net/http2.server",
	Module: xnetModule,
	Functions: []offsets.FuncSpec{
		{Symbols: []string{xnetRunHandler, h2RunHandler127}, Needs: xnetServer},
		{Symbols: []string{xnetHandlerDone, h2HandlerDone127}, Needs: xnetServer},
		// Once per connection: a request whose handler hands its connection over
		// (h2c's Upgrade) is served as the HTTP/2 stream 1, and is that span only.
		{Symbols: xnetServer},
		// Where x/net's own runHandler's deferred function resets a panicked stream, as
		// net/http's does (ServerSpec).
		{Symbols: []string{xnetRunHandlerDeferred}, Calls: []string{xnetWriteFromHandler}, Optional: true, Needs: xnetServer},
	},
	Fields: append(append([]offsets.FieldSpec{
		// x/net's own server's (x/net v0.60+ built with Go 1.27 has none). Optional:
		// without them, its spans have no status code.
		{FieldRef: xnetWriterRWS, Optional: true}, {FieldRef: xnetStatus, Optional: true},
		{FieldRef: h2ReqContext, Since: http2InternalSince},
		{FieldRef: h2ReqMethod, Since: http2InternalSince},
		{FieldRef: h2ReqURL, Since: http2InternalSince},
		{FieldRef: h2ReqHeader, Since: http2InternalSince},
		{FieldRef: h2ReqHost, Since: http2InternalSince},
		{FieldRef: h2ReqProtoMajor, Since: http2InternalSince},
		{FieldRef: h2ReqRemoteAddr, Since: http2InternalSince},
		{FieldRef: h2ReqTLS, Since: http2InternalSince},
	}, serverFields...), headerMapFields...),
	Experiments: mapExperiments,
	Program:     xnetTrackerProgram,
}

// xnetTrackerProgram reaches x/net's HTTP/2 server: the offsets tracker builds it with
// each version of golang.org/x/net.
const xnetTrackerProgram = `package main

import (
	"net/http"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

func main() {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	go http.ListenAndServe("127.0.0.1:0", h2c.NewHandler(h, &http2.Server{}))
}
`

// serverFields are what a server span reads of an *http.Request and of the response's
// status, HTTP/1 and net/http's HTTP/2.
var serverFields = []offsets.FieldSpec{
	{FieldRef: reqMethod}, {FieldRef: reqURL}, {FieldRef: reqProtoMajor}, {FieldRef: reqProtoMinor},
	{FieldRef: reqHeader}, {FieldRef: reqHost}, {FieldRef: reqRemoteAddr},
	// Set (a *tls.ConnectionState) when the request came over TLS: url.scheme. Every
	// net/http server sets it from its connection (HTTP/1: the conn's *tls.Conn;
	// HTTP/2: the serverConn's), as do x/net's server and Go 1.27's ServerRequest.
	{FieldRef: reqTLS},
	// The request's context, under which its span is registered for the calls made
	// under it (spans.h): the server's own field, not only the client's.
	{FieldRef: reqCtx},
	{FieldRef: reqPat, Since: "go1.22", Optional: true},
	{FieldRef: reqPattern, Since: "go1.23", Optional: true},
	{FieldRef: patternStr, Since: "go1.22", Optional: true},
	{FieldRef: urlPath},
	{FieldRef: responseStatus},
	// The HTTP/2 server's status: moved into net/http/internal/http2 in Go 1.27.
	// Optional: without it, HTTP/2 spans have no status code.
	{FieldRef: h2WriterRWS, Before: http2InternalSince, Optional: true},
	{FieldRef: h2WriterStatus, Before: http2InternalSince, Optional: true},
	{FieldRef: h2WriterRWS127, Since: http2InternalSince, Optional: true},
	{FieldRef: h2Status127, Since: http2InternalSince, Optional: true},
}

// headerMapFields are what reading an http.Header (a map[string][]string) takes.
var headerMapFields = []offsets.FieldSpec{
	{FieldRef: hmapB, Before: swissMapsSince},
	{FieldRef: hmapBuckets, Before: swissMapsSince},
	{FieldRef: hmapOldbuckets, Before: swissMapsSince},
	{FieldRef: swissDirPtr, Since: swissMapsSince},
	{FieldRef: swissDirLen, Since: swissMapsSince},
	{FieldRef: tableGroups, Since: swissMapsSince},
	{FieldRef: groupsData, Since: swissMapsSince},
	{FieldRef: groupsMask, Since: swissMapsSince},
}

// ClientSpec: the entry of Transport.roundTrip and each of its RETs, two hits per
// call; with propagation, the entry of the request's writer too (three). roundTrip is
// where every http.Client request passes, once per attempt, with its final URL and
// context: at entry the request is complete, at return the response (or the error) is
// known. The writers run just before the request's bytes are written, in the goroutine
// that writes them: where the kernel can tie a write to the request. Request.write for
// HTTP/1; the HTTP/2 client's clientStream.encodeAndWriteHeaders (net/http's own copy -
// bundled before Go 1.27, net/http/internal/http2 since - and golang.org/x/net/http2's,
// any of which a program may lack).
var ClientSpec = offsets.Spec{
	Name:   "net/http.client",
	Module: "std",
	Functions: []offsets.FuncSpec{
		{Symbols: []string{roundTrip}, Returns: true},
		{Symbols: []string{requestWrite}},
		{Symbols: []string{xnetRoundTrip, xnetRoundTripOld}, Returns: true, Optional: true},
		{Symbols: []string{h2EncodeHeaders}, Optional: true},
		{Symbols: []string{h2EncodeHeaders127}, Optional: true},
		{Symbols: []string{xnetEncodeHeaders, xnetEncodeHeadersOld}, Optional: true},
	},
	Fields: append([]offsets.FieldSpec{
		{FieldRef: reqMethod}, {FieldRef: reqURL}, {FieldRef: reqHeader}, {FieldRef: reqCtx},
		{FieldRef: urlScheme}, {FieldRef: urlHost}, {FieldRef: urlPath}, {FieldRef: urlRawQuery},
		{FieldRef: respStatusCode}, {FieldRef: respProtoMajor}, {FieldRef: respProtoMinor},
		// Optional: without it, Go 1.27's h2c requests get spans but no traceparent.
		{FieldRef: h2ClientReqURL, Since: http2InternalSince, Optional: true},
	}, headerMapFields...),
	Experiments: mapExperiments,
	Program:     trackerProgram,
}

// Specs are this package's probes, in the order Attach and Configure take reports.
var Specs = []offsets.Spec{ServerSpec, ClientSpec, XNetServerSpec}

const (
	serveHTTP = "net/http.serverHandler.ServeHTTP"
	// What runs after an HTTP/1 handler: finishRequest, unless it hijacked the
	// connection; the function conn.serve defers (its first closure, in every release
	// from Go 1.20 to 1.27) when the connection ends, hijacked, or after a panic.
	finishRequest     = "net/http.(*response).finishRequest"
	connServeDeferred = "net/http.(*conn).serve.func1"
	responseHijack    = "net/http.(*response).Hijack"
	// What an HTTP/2 handler's runHandler defers: net/http's bundled copy before Go
	// 1.27.
	h2HandlerDone = "net/http.(*http2responseWriter).handlerDone"
	// runHandler's deferred function (its first closure, in every release from Go 1.20
	// to 1.27), which resets the stream of a handler that panicked, and only then, by
	// a call to writeFrameFromHandler.
	h2RunHandlerDeferred    = "net/http.(*http2serverConn).runHandler.func1"
	h2RunHandlerDeferred127 = "net/http/internal/http2.(*serverConn).runHandler.func1"
	h2WriteFromHandler      = "net/http.(*http2serverConn).writeFrameFromHandler"
	h2WriteFromHandler127   = "net/http/internal/http2.(*serverConn).writeFrameFromHandler"
	roundTrip               = "net/http.(*Transport).roundTrip"
	requestWrite            = "net/http.(*Request).write"
	// HTTP/2 clients' header writers, (cs *clientStream, req *http.Request); Go 1.27
	// moved net/http's into net/http/internal/http2, with a request type of its own
	// (req *ClientRequest).
	// golang.org/x/net/http2's transport, (t, req, opt): the unexported one since
	// 2024, the exported one (which may be inlined since) before.
	xnetRoundTrip     = "golang.org/x/net/http2.(*Transport).roundTripOpt"
	xnetRoundTripOld  = "golang.org/x/net/http2.(*Transport).RoundTripOpt"
	h2EncodeHeaders   = "net/http.(*http2clientStream).encodeAndWriteHeaders"
	xnetEncodeHeaders = "golang.org/x/net/http2.(*clientStream).encodeAndWriteHeaders"
	// x/net before 2022 encodes the header block in ClientConn.encodeHeaders(cc, req,
	// ...), and writes it in the same goroutine.
	xnetEncodeHeadersOld = "golang.org/x/net/http2.(*ClientConn).encodeHeaders"
	h2EncodeHeaders127   = "net/http/internal/http2.(*clientStream).encodeAndWriteHeaders"

	xnetModule      = "golang.org/x/net"
	xnetRunHandler  = "golang.org/x/net/http2.(*serverConn).runHandler"
	xnetHandlerDone = "golang.org/x/net/http2.(*responseWriter).handlerDone"
	// x/net's own runHandler's deferred function and the call it makes only after a
	// panic.
	xnetRunHandlerDeferred = "golang.org/x/net/http2.(*serverConn).runHandler.func1"
	xnetWriteFromHandler   = "golang.org/x/net/http2.(*serverConn).writeFrameFromHandler"
	// Go 1.27's HTTP/2 server, which x/net v0.60+ wraps when built with Go 1.27.
	h2RunHandler127  = "net/http/internal/http2.(*serverConn).runHandler"
	h2HandlerDone127 = "net/http/internal/http2.(*responseWriter).handlerDone"
)

// ServerFunctions are where a server span begins, one of which a program that serves
// HTTP has: a router's probe (probes/chi...), which names the server span, is of use
// only in such a program (offsets.FuncSpec.Needs).
var ServerFunctions = []string{serveHTTP, xnetRunHandler, h2RunHandler127}

// xnetServer: x/net's HTTP/2 server is in the program. Since v0.60 ServeConn is
// inlined into its callers, which call serveConn.
var xnetServer = []string{"golang.org/x/net/http2.(*Server).serveConn", "golang.org/x/net/http2.(*Server).ServeConn"}
