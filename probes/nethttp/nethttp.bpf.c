// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/* net/http: server spans, client spans, and the W3C traceparent on outgoing requests.
 *
 * Server, two uprobe hits per request, both entries (an entry probe is emulated, a RET
 * single-stepped: a third of the cost on amd64). Entry of
 * net/http.serverHandler.ServeHTTP(sh, rw, req): the request is parsed; read it, choose
 * the span's IDs (joining the incoming trace, if any), keep the state per goroutine,
 * and register the span among the in-flight server spans every probe shares (spans.h),
 * under its context (req.ctx) and its goroutine, where some probe looks. The span ends
 * at the entry of what runs next in that goroutine once the handler has returned, where
 * the response still holds the status: HTTP/1's (*response).finishRequest(w), HTTP/2's
 * (*responseWriter).handlerDone(rw) (net/http's bundled copy before Go 1.27,
 * net/http/internal/http2 since); there read the route (a router's, filed by its probe
 * in routes.h, else ServeMux's pattern) and status, output the span, unregister it. An
 * HTTP/1 request that reaches no finishRequest - its handler hijacked the connection,
 * or panicked (conn.serve recovers) - ends at the entry of conn.serve's deferred
 * function, once per connection; the entry of (*response).Hijack, hit only by a
 * hijack, tells the two apart. An HTTP/2 handler that panics reaches no handlerDone:
 * the stream's runHandler recovers in its deferred function, which then calls
 * writeFrameFromHandler to reset the stream, a call made only after a panic; a probe
 * on that call (emulated, as an entry) ends the span; x/net's own server's too.
 *
 * An HTTP/2 server that calls the handler without serverHandler, two hits too:
 * golang.org/x/net/http2's own (h2c.NewHandler, http2.Server.ServeConn), and Go
 * 1.27's net/http/internal/http2, to which x/net v0.60+ hands its connections. The
 * entry of its serverConn.runHandler(sc, rw, req, handler) begins the span as above,
 * the entry of responseWriter.handlerDone(rw), which runHandler defers, ends it while
 * rw still holds the status. A handler that does reach serverHandler under it (the
 * same request: the same URL) adopts the span: it swaps in its *http.Request, which has
 * the route, and handlerDone ends it. A request whose handler gives its connection to
 * x/net's server (h2c's Upgrade: h2c) goes on there as stream 1: the entry of
 * (*Server).serveConn, once per connection, marks its serverHandler span, which would
 * last as long as the connection, to be dropped.
 *
 * Client, two hits per call, three with propagation. Entry of
 * net/http.(*Transport).roundTrip(t, req) - or of golang.org/x/net/http2's
 * (*Transport).roundTripOpt(t, req, opt), for apps that use its transport (a request
 * net/http hands on to it is one span: the nested entry and return only count): find the parent by walking req.ctx's chain of
 * parent contexts up to a registered request context (of any probe's server span),
 * else, for a call made without it in a goroutine serving a request, by that
 * goroutine (a call from another goroutine with another context starts its own
 * trace); choose the IDs; if the request is plain http, file the one to send under
 * req.URL (a clone made for a retry or a body rewind shares it), saying whether the
 * request holds a traceparent or tracestate of its own, which the wire replaces
 * instead. The
 * request's writer takes it for the wire (outgoing.h; probes/wire puts it there): over
 * HTTP/1, at the entry of net/http.(*Request).write, in the connection's writer
 * goroutine, for that goroutine's next write; over HTTP/2, at the entry of the HTTP/2
 * client's (*clientStream).encodeAndWriteHeaders(cs, req), for the next header block
 * its goroutine writes (it writes and flushes the block under the connection's write
 * lock). Each RET of roundTrip: read the status or the error's type, output the span.
 *
 * State is built in place in hash map values keyed by goroutine, never in per-CPU
 * scratch: BPF programs can be preempted on a preemptible kernel, and a per-CPU buffer
 * could then be shared by two requests. */
#include "common.h"
#include "headers.h"
#include "tracestate.h"
#include "spans.h"
#include "client.h"
#include "routes.h"
#include "outgoing.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Field offsets in the app: each is named after its Go field (kit.VarName), and set by
 * the loader from the app's DWARF, the offsets database or its type descriptors, before
 * the probes are enabled; OFFSET_NONE where the app's Go release has no such field.
 * Globals rather than constants: the programs are loaded (and verified) while the app's
 * binary is still being analysed. */
volatile __u64 off_http_Request_Method = OFFSET_NONE;
volatile __u64 off_http_Request_URL = OFFSET_NONE;
volatile __u64 off_http_Request_ProtoMajor = OFFSET_NONE;
volatile __u64 off_http_Request_ProtoMinor = OFFSET_NONE;
volatile __u64 off_http_Request_Header = OFFSET_NONE;
volatile __u64 off_http_Request_Host = OFFSET_NONE;
volatile __u64 off_http_Request_RemoteAddr = OFFSET_NONE;
volatile __u64 off_http_Request_TLS = OFFSET_NONE; /* non-nil over TLS: url.scheme https */
volatile __u64 off_http_Request_Pattern = OFFSET_NONE; /* Go 1.23+ */
volatile __u64 off_http_Request_pat = OFFSET_NONE;     /* Go 1.22: *pattern */
volatile __u64 off_http_Request_ctx = OFFSET_NONE;
volatile __u64 off_http_pattern_str = OFFSET_NONE;
volatile __u64 off_url_URL_Scheme = OFFSET_NONE;
volatile __u64 off_url_URL_Host = OFFSET_NONE;
volatile __u64 off_url_URL_Path = OFFSET_NONE;
volatile __u64 off_url_URL_RawQuery = OFFSET_NONE;
volatile __u64 off_http_response_status = OFFSET_NONE;     /* the server's ResponseWriter */
/* The HTTP/2 server's ResponseWriter: net/http's bundled copy of x/net/http2 before Go
 * 1.27, net/http/internal/http2 since; either way a pointer in the interface's data
 * word, whose rws holds the status. */
volatile __u64 off_http_http2responseWriter_rws = OFFSET_NONE;
volatile __u64 off_http_http2responseWriterState_status = OFFSET_NONE;
volatile __u64 off_http2_responseWriter_rws = OFFSET_NONE;
volatile __u64 off_http2_responseWriterState_status = OFFSET_NONE;
/* The request Go 1.27's HTTP/2 client (net/http/internal/http2) writes: its URL is the
 * http.Request's. */
volatile __u64 off_http2_ClientRequest_URL = OFFSET_NONE;
/* golang.org/x/net/http2's own server's ResponseWriter, *responseWriter. */
volatile __u64 off_x_http2_responseWriter_rws = OFFSET_NONE;
volatile __u64 off_x_http2_responseWriterState_status = OFFSET_NONE;
/* The request Go 1.27's HTTP/2 server hands to its handler, before net/http makes an
 * *http.Request of it. */
volatile __u64 off_http2_ServerRequest_Context = OFFSET_NONE;
volatile __u64 off_http2_ServerRequest_Method = OFFSET_NONE;
volatile __u64 off_http2_ServerRequest_URL = OFFSET_NONE;
volatile __u64 off_http2_ServerRequest_Header = OFFSET_NONE;
volatile __u64 off_http2_ServerRequest_Host = OFFSET_NONE;
volatile __u64 off_http2_ServerRequest_RemoteAddr = OFFSET_NONE;
volatile __u64 off_http2_ServerRequest_TLS = OFFSET_NONE;
volatile __u64 off_http2_ServerRequest_ProtoMajor = OFFSET_NONE;
volatile __u64 off_http_Response_StatusCode = OFFSET_NONE; /* the client's *Response */
volatile __u64 off_http_Response_ProtoMajor = OFFSET_NONE;
volatile __u64 off_http_Response_ProtoMinor = OFFSET_NONE;
/* Set last: uprobes may be attached before the offsets are known (the app is held at
 * the start gate meanwhile), and must do nothing until they are. */
volatile __u64 server_enabled = 0;
volatile __u64 xnet_server_enabled = 0;
volatile __u64 client_enabled = 0;
volatile __u64 propagate = 0; /* file traceparents for sk_msg to insert */

#define EVENT_SERVER 1
#define EVENT_CLIENT 2

#define METHOD_MAX 16
#define PATH_MAX 128
#define HOST_MAX 64
#define REMOTE_MAX 64
#define SCHEME_MAX 8
#define URL_PATH_MAX 256
#define QUERY_MAX 256

struct http_server_event {
	__u32 kind;
	__u8 has_parent;
	__u8 proto_major;
	__u8 proto_minor;
	__u8 trace_flags; /* the incoming parent's */
	__u64 start_ns;
	__u64 end_ns;
	struct span_context sc;
	__u8 parent_span_id[SPAN_ID_SIZE];
	__u16 status;
	__u16 method_len;
	__u16 path_len;
	__u16 route_len;
	__u16 host_len;
	__u16 remote_len;
	__u8 routed; /* the route is a router's template (routes.h), not a ServeMux pattern */
	__u8 tls;    /* the request came over TLS (its TLS field is set): url.scheme https */
	__u8 panicked; /* the handler panicked: no response but what it wrote before */
	__u8 _pad[5];
	__u8 method[METHOD_MAX];
	__u8 path[PATH_MAX];
	__u8 route[ROUTE_MAX];
	__u8 host[HOST_MAX];
	__u8 remote_addr[REMOTE_MAX];
	struct header_capture hdr; /* user agent */
	__u16 tracestate_len;      /* the incoming tracestate as kept (tracestate.h) */
	__u8 tracestate[TRACESTATE_MAX]; /* last: a record goes without its unused bytes */
};

struct http_client_event {
	__u32 kind;
	__u8 has_parent;
	__u8 proto_major;
	__u8 proto_minor;
	__u8 trace_flags; /* the parent's */
	__u64 start_ns;
	__u64 end_ns;
	struct span_context sc;
	__u8 parent_span_id[SPAN_ID_SIZE];
	__u64 error_type; /* address of the error's dynamic type; 0 without an error */
	__u16 status;
	__u16 method_len;
	__u16 scheme_len;
	__u16 host_len;
	__u16 path_len;
	__u16 query_len;
	__u8 propagated; /* a traceparent was filed for the wire */
	__u8 _pad[3];
	__u8 method[METHOD_MAX];
	__u8 scheme[SCHEME_MAX];
	__u8 host[HOST_MAX];
	__u8 path[URL_PATH_MAX];
	__u8 query[QUERY_MAX];
};

/* Requests between their begin and end, keyed by goroutine. An entry whose end never
 * came (an HTTP/2 handler that panicked) is replaced when its goroutine serves again. */
struct server_call {
	struct http_server_event ev;
	__u64 req;
	__u64 resp;
	__u64 ctx;          /* req.ctx's data word */
	union {
		struct span_ref ref;          /* what the calls it makes get of it */
		struct tracestate_scratch ts; /* before: reading the tracestate */
	};
	__u64 url;          /* req.URL: what a nested serverHandler's request shares */
	__u8 inflight;      /* INFLIGHT_* maps it is registered in */
	__u8 outer;         /* begun by an HTTP/2 server's runHandler: resp is its *responseWriter */
	__u8 xnet;          /* that server is x/net's own, not net/http's */
	__u8 adopted;       /* serverHandler took it over: req is now an *http.Request */
	__u8 handed_over;   /* its handler gave the connection to x/net's HTTP/2 server */
	__u8 hijacked;      /* its handler took the HTTP/1 connection: no finishRequest */
};

/* The tracestate's scratch costs no room: it fits in the span_ref it shares. */
_Static_assert(sizeof(struct tracestate_scratch) <= sizeof(struct span_ref), "tracestate scratch outgrew span_ref");

struct client_call {
	struct http_client_event ev;
	__u64 req;
	__u64 caller; /* the address the entry returns to */
	__u64 url;
	__u32 depth; /* calls of the request nested in this one: net/http handing it to x/net's HTTP/2 */
	struct header_capture hdr;
};


struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct server_call);
} server_calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct client_call);
} client_calls SEC(".maps");

/* Traceparents filed by roundTrip under req.URL, until Request.write takes them. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct outgoing);
} filed SEC(".maps");

/* Zeroes to create map entries from, which are then filled in place. Never written. */
union zero_value {
	struct server_call server;
	struct client_call client;
	struct outgoing out;
} zeroes;

const struct http_server_event *unused_server_event __attribute__((unused)); /* bpf2go -type */
const struct http_client_event *unused_client_event __attribute__((unused));


/* ---------------------------------------------------------------- server */

/* join_trace takes the trace ID, parent span ID and flags from the request's
 * traceparent. A global function: verified once, on its own. */
__noinline int join_trace(struct http_server_event *ev)
{
	if (!ev)
		return 0;
	return parse_traceparent((const char *)ev->hdr.traceparent, ev->hdr.traceparent_len, ev->sc.trace_id,
				 ev->parent_span_id, &ev->trace_flags) == 0;
}

/* register_span makes the request's span the parent of the calls made under it, by
 * any probe: its context (req.ctx's data word) and its goroutine stand for it. */
static __always_inline void register_span(struct server_call *st, __u64 g, __u64 ctx_off)
{
	if (!inflight_wanted)
		return;
	st->ctx = ctx_off == OFFSET_NONE ? 0 : read_ptr(st->req + ctx_off + 8); /* 0: by goroutine only */
	struct span_ref *ref = &st->ref;
	__builtin_memcpy(&ref->sc, &st->ev.sc, sizeof(ref->sc));
	ref->flags = sample(st->ev.sc.trace_id, st->ev.has_parent, st->ev.trace_flags);
	ref->tracestate_len = st->ev.tracestate_len;
	if (ref->tracestate_len)
		__builtin_memcpy(ref->tracestate, st->ev.tracestate, TRACESTATE_MAX);
	st->inflight = inflight_begin(g, st->ctx, ref);
}

/* Where a request type keeps what a span needs: *http.Request's fields, or Go 1.27's
 * *http2.ServerRequest's (no minor version read there: HTTP/2.0, or the 1.1 of an h2c
 * upgrade). */
struct request_layout {
	__u64 method, url, header, host, remote_addr, ctx, proto_major, proto_minor, tls;
};

/* server_begin begins the span of request req, answered through resp (the
 * ResponseWriter's data word). */
static __always_inline int server_begin(struct go_regs *ctx, __u64 resp, __u64 req, const struct request_layout *l,
					const int swiss_maps)
{
	learn_app_process();
	__u64 g = go_goroutine(ctx);
	struct server_call *st = new_entry(&server_calls, &g, &zeroes);
	if (!st)
		return 0;
	st->ev.kind = EVENT_SERVER;
	st->ev.start_ns = bpf_ktime_get_ns();
	st->resp = resp;
	st->req = req;

	st->ev.method_len = read_go_string(st->ev.method, METHOD_MAX, req + l->method);
	st->ev.host_len = read_go_string(st->ev.host, HOST_MAX, req + l->host);
	st->ev.remote_len = read_go_string(st->ev.remote_addr, REMOTE_MAX, req + l->remote_addr);
	/* The server set the request's TLS (a *tls.ConnectionState) from its connection:
	 * one word, no other hit. */
	if (l->tls != OFFSET_NONE)
		st->ev.tls = read_ptr(req + l->tls) != 0;
	st->url = read_ptr(req + l->url);
	if (st->url)
		st->ev.path_len = read_go_string(st->ev.path, PATH_MAX, st->url + off_url_URL_Path);
	st->ev.proto_major = (__u8)read_ptr(req + l->proto_major);
	if (l->proto_minor != OFFSET_NONE)
		st->ev.proto_minor = (__u8)read_ptr(req + l->proto_minor);
	/* "PRI * HTTP/2.0" is the HTTP/2 connection preface, which an h2c handler
	 * (golang.org/x/net/http2/h2c) takes over as a connection: no request. */
	if (st->ev.proto_major == 2 && st->ev.method_len == 3 && st->ev.method[0] == 'P' && st->ev.method[1] == 'R' &&
	    st->ev.method[2] == 'I') {
		bpf_map_delete_elem(&server_calls, &g);
		return 0;
	}

	capture_headers(read_ptr(req + l->header), &st->ev.hdr, swiss_maps);
	if (trace_context && join_trace(&st->ev)) {
		st->ev.has_parent = 1;
		/* Only with a valid traceparent: a tracestate without one is void. */
		if (st->ev.hdr.found & HEADER_TRACESTATE) {
			tracestate_of_values(&st->ts, &st->ev.hdr.tracestate);
			st->ev.tracestate_len = tracestate_take(&st->ts, &st->ev.tracestate);
		}
	} else {
		random_bytes(st->ev.sc.trace_id, TRACE_ID_SIZE);
	}
	random_bytes(st->ev.sc.span_id, SPAN_ID_SIZE);
	register_span(st, g, l->ctx);
	return 0;
}

/* server_end reads the route and the status, outputs the span and forgets it. A
 * handler that wrote no header gets 200 when it returns; one that panicked, only what
 * it wrote. */
static __always_inline void server_end(struct server_call *st, __u64 g)
{
	st->ev.end_ns = bpf_ktime_get_ns();
	__u64 req = st->req;

	/* An HTTP/1 ResponseWriter is an *http.response, an HTTP/2 one the HTTP/2
	 * server's: net/http's own, or x/net's. */
	__u64 rws_off = OFFSET_NONE, status_off = OFFSET_NONE;
	if (st->xnet) {
		rws_off = off_x_http2_responseWriter_rws;
		status_off = off_x_http2_responseWriterState_status;
	} else if (st->ev.proto_major == 1) {
		__u64 status = read_ptr(st->resp + off_http_response_status);
		st->ev.status = status || st->ev.panicked ? (__u16)status : 200;
	} else if (st->ev.proto_major == 2) {
		rws_off = off_http_http2responseWriter_rws;
		status_off = off_http_http2responseWriterState_status;
		if (rws_off == OFFSET_NONE) { /* Go 1.27+ */
			rws_off = off_http2_responseWriter_rws;
			status_off = off_http2_responseWriterState_status;
		}
	}
	if (rws_off != OFFSET_NONE && status_off != OFFSET_NONE) {
		__u64 status = read_ptr(read_ptr(st->resp + rws_off) + status_off);
		st->ev.status = status || st->ev.panicked ? (__u16)status : 200;
	}
	/* A router's template, if one filed it (routes.h), wins over ServeMux's pattern:
	 * a catch-all "/" around a router. */
	if (inflight_wanted & INFLIGHT_ROUTES) {
		st->ev.route_len = take_route(g, st->ev.sc.span_id, st->ev.route);
		st->ev.routed = st->ev.route_len > 0;
	}
	/* Else the route is the *http.Request's, set by a ServeMux: not there when Go
	 * 1.27's HTTP/2 server ran the handler without serverHandler. */
	int http_request = !(st->outer && !st->xnet && !st->adopted);
	if (st->ev.routed || !http_request) {
	} else if (off_http_Request_Pattern != OFFSET_NONE) {
		st->ev.route_len = read_go_string(st->ev.route, ROUTE_MAX, req + off_http_Request_Pattern);
	} else if (off_http_Request_pat != OFFSET_NONE) {
		__u64 pat = read_ptr(req + off_http_Request_pat);
		if (pat)
			st->ev.route_len = read_go_string(st->ev.route, ROUTE_MAX, pat + off_http_pattern_str);
	}
	if (st->inflight)
		inflight_end(g, st->ctx, st->inflight);
	/* The tracestate's unused bytes stay out (userspace completes the record): the
	 * ring buffer holds that many more spans. */
	__u64 size = sizeof(st->ev) - TRACESTATE_MAX + st->ev.tracestate_len;
	if (size > sizeof(st->ev))
		size = sizeof(st->ev);
	submit(&st->ev, size);
	bpf_map_delete_elem(&server_calls, &g);
}

/* The *http.Request's layout. */
static __always_inline void http_request_layout(struct request_layout *l)
{
	l->method = off_http_Request_Method;
	l->url = off_http_Request_URL;
	l->header = off_http_Request_Header;
	l->host = off_http_Request_Host;
	l->remote_addr = off_http_Request_RemoteAddr;
	l->ctx = off_http_Request_ctx;
	l->proto_major = off_http_Request_ProtoMajor;
	l->proto_minor = off_http_Request_ProtoMinor;
	l->tls = off_http_Request_TLS;
}

/* serverHandler.ServeHTTP(sh, rw, req): rw's data word is argument 3 (an
 * *http.response for HTTP/1), req argument 4. */
static __always_inline int server_entry(struct go_regs *ctx, const int swiss_maps)
{
	if (!server_enabled)
		return 0;
	__u64 g = go_goroutine(ctx), req = go_arg(ctx, 4);
	struct server_call *outer = bpf_map_lookup_elem(&server_calls, &g);
	if (outer && outer->outer && !outer->adopted && outer->url && outer->url == read_ptr(req + off_http_Request_URL)) {
		/* An HTTP/2 server's runHandler began this request's span. */
		outer->req = req;
		outer->adopted = 1;
		return 0;
	}
	struct request_layout l;
	http_request_layout(&l);
	return server_begin(ctx, go_arg(ctx, 3), req, &l, swiss_maps);
}

/* One entry program per map layout; the loader loads the one the target needs. */
SEC("uprobe/serverHandler_ServeHTTP")
int server_entry_swiss(struct go_regs *ctx)
{
	return server_entry(ctx, 1);
}

SEC("uprobe/serverHandler_ServeHTTP")
int server_entry_hmap(struct go_regs *ctx)
{
	return server_entry(ctx, 0);
}

/* server_done ends the request's span, or drops it if its connection went on as
 * HTTP/2 in x/net's server (whose streams have spans of their own). */
static __always_inline void server_done(struct server_call *st, __u64 g)
{
	if (!st->handed_over) {
		server_end(st, g);
		return;
	}
	if (st->inflight)
		inflight_end(g, st->ctx, st->inflight);
	bpf_map_delete_elem(&server_calls, &g);
}

/* (*response).finishRequest(w): conn.serve calls it once serverHandler returned,
 * unless the handler hijacked the connection. It also answers a request no handler
 * saw (an unmet Expect): w is not the span's then. */
SEC("uprobe/response_finishRequest")
int server_finish(struct go_regs *ctx)
{
	__u64 g = go_goroutine(ctx);
	struct server_call *st = bpf_map_lookup_elem(&server_calls, &g);
	if (!st || st->outer || st->resp != go_arg(ctx, 1))
		return 0;
	server_done(st, g);
	return 0;
}

/* (*response).Hijack(w): the handler takes the connection; conn.serve will skip
 * finishRequest. Hit once per hijack. */
SEC("uprobe/response_Hijack")
int server_hijack(struct go_regs *ctx)
{
	__u64 g = go_goroutine(ctx);
	struct server_call *st = bpf_map_lookup_elem(&server_calls, &g);
	if (st && !st->outer && st->resp == go_arg(ctx, 1))
		st->hijacked = 1;
	return 0;
}

/* The function (*conn).serve defers, at its entry: the connection is done. A span
 * still open in its goroutine reached no finishRequest: its handler hijacked the
 * connection and returned, or panicked (or called runtime.Goexit). Once per
 * connection, not per request. */
SEC("uprobe/conn_serve_func1")
int server_conn_done(struct go_regs *ctx)
{
	__u64 g = go_goroutine(ctx);
	struct server_call *st = bpf_map_lookup_elem(&server_calls, &g);
	if (!st || st->outer)
		return 0;
	if (!st->hijacked)
		st->ev.panicked = 1;
	server_done(st, g);
	return 0;
}

/* An HTTP/2 server's (*serverConn).runHandler(sc, rw, req, handler): x/net's own,
 * req an *http.Request, or Go 1.27's net/http/internal/http2, req an *ServerRequest. */
static __always_inline int h2_server_entry(struct go_regs *ctx, const int swiss_maps, const int xnet)
{
	if (!xnet_server_enabled)
		return 0;
	struct request_layout l;
	if (xnet) {
		http_request_layout(&l);
	} else {
		l.method = off_http2_ServerRequest_Method;
		l.url = off_http2_ServerRequest_URL;
		l.header = off_http2_ServerRequest_Header;
		l.host = off_http2_ServerRequest_Host;
		l.remote_addr = off_http2_ServerRequest_RemoteAddr;
		l.ctx = off_http2_ServerRequest_Context;
		l.proto_major = off_http2_ServerRequest_ProtoMajor;
		l.proto_minor = OFFSET_NONE;
		l.tls = off_http2_ServerRequest_TLS;
	}
	__u64 g = go_goroutine(ctx);
	server_begin(ctx, go_arg(ctx, 2), go_arg(ctx, 3), &l, swiss_maps);
	struct server_call *st = bpf_map_lookup_elem(&server_calls, &g);
	if (!st)
		return 0;
	st->outer = 1;
	st->xnet = xnet;
	/* Answered over HTTP/2, the HTTP/1.1 request an h2c handler upgraded too. */
	if (st->ev.proto_major != 2) {
		st->ev.proto_major = 2;
		st->ev.proto_minor = 0;
	}
	return 0;
}

/* golang.org/x/net/http2.(*Server).serveConn (ServeConn before v0.60): a handler gives
 * its connection to x/net's HTTP/2 server - h2c's, for an Upgrade: h2c request or the
 * prior-knowledge preface. Its request goes on as an HTTP/2 stream with a span of its
 * own, and serverHandler returns when the connection closes: no span for it there. */
SEC("uprobe/x_http2_Server_serveConn")
int xnet_serve_conn(struct go_regs *ctx)
{
	__u64 g = go_goroutine(ctx);
	struct server_call *st = bpf_map_lookup_elem(&server_calls, &g);
	if (st && !st->outer)
		st->handed_over = 1;
	return 0;
}

SEC("uprobe/x_http2_serverConn_runHandler")
int xnet_server_entry_swiss(struct go_regs *ctx)
{
	return h2_server_entry(ctx, 1, 1);
}

SEC("uprobe/x_http2_serverConn_runHandler")
int xnet_server_entry_hmap(struct go_regs *ctx)
{
	return h2_server_entry(ctx, 0, 1);
}

SEC("uprobe/http2_serverConn_runHandler")
int h2_server_entry_swiss(struct go_regs *ctx)
{
	return h2_server_entry(ctx, 1, 0);
}

/* (*responseWriter).handlerDone(rw), which an HTTP/2 server's runHandler defers, in
 * its goroutine: net/http's (bundled, or Go 1.27's internal) or x/net's. rw is the
 * ResponseWriter serverHandler got (a span it began), or runHandler's (a span
 * runHandler began, adopted or not). */
SEC("uprobe/http2_responseWriter_handlerDone")
int h2_server_done(struct go_regs *ctx)
{
	__u64 g = go_goroutine(ctx);
	struct server_call *st = bpf_map_lookup_elem(&server_calls, &g);
	if (!st || st->resp != go_arg(ctx, 1))
		return 0;
	server_done(st, g);
	return 0;
}

/* An HTTP/2 handler panicked: the deferred function of runHandler (net/http's bundled
 * one, Go 1.27's internal one, x/net's) recovered, and calls writeFrameFromHandler to
 * reset the stream; rw.rws, which handlerDone would free, still holds the status. In the
 * handler's goroutine: its span, begun by serverHandler or by runHandler. */
SEC("uprobe/http2_serverConn_runHandler_func1")
int h2_server_panic(struct go_regs *ctx)
{
	__u64 g = go_goroutine(ctx);
	struct server_call *st = bpf_map_lookup_elem(&server_calls, &g);
	if (!st || (!st->outer && st->ev.proto_major != 2))
		return 0;
	st->ev.panicked = 1;
	server_done(st, g);
	return 0;
}

/* ---------------------------------------------------------------- client */

/* file_traceparent files the traceparent the request is to carry, for its writer. */
static __always_inline int file_traceparent(struct client_call *st, struct span_ref *parent, __u8 flags)
{
	struct outgoing *out = new_entry(&filed, &st->url, &zeroes);
	if (!out)
		return 0;
	fill_outgoing(out, &st->ev.sc, flags, parent ? parent->tracestate : 0, parent ? parent->tracestate_len : 0);
	out->method_len = st->ev.method_len;
	__builtin_memcpy(out->method, st->ev.method, OUTGOING_METHOD_MAX);
	if (st->hdr.found & HEADER_TRACEPARENT) {
		out->app |= OUTGOING_APP_TRACEPARENT;
		__builtin_memcpy(out->app_traceparent, st->hdr.traceparent, TRACEPARENT_LEN + 1);
		out->app_traceparent_len = st->hdr.traceparent_len;
	}
	if (st->hdr.found & HEADER_TRACESTATE) {
		struct go_string v = {};
		out->app |= OUTGOING_APP_TRACESTATE;
		if (st->hdr.tracestate.len > 0 && read_user(&v, sizeof(v), st->hdr.tracestate.ptr) == 0) {
			out->app_tracestate_len = v.len > 0xffff ? 0xffff : v.len;
			/* Compared with ours only if the request goes over HTTP/2 (hand_h2), where
			 * the wire may not see it: HTTP/1 reads the lines. */
			if (st->hdr.tracestate.len == 1)
				out->app_tracestate = v.ptr;
		}
	}
	return 1;
}

static __always_inline int is_http(struct client_call *st)
{
	return st->ev.scheme_len == 4 && st->ev.scheme[0] == 'h' && st->ev.scheme[1] == 't' &&
	       st->ev.scheme[2] == 't' && st->ev.scheme[3] == 'p';
}

static __always_inline int client_entry(struct go_regs *ctx, const int swiss_maps)
{
	if (!client_enabled)
		return 0;
	learn_app_process();
	__u64 g = go_goroutine(ctx);
	__u64 req = go_arg(ctx, 2), caller = go_return_address(ctx);
	struct client_call *st = bpf_map_lookup_elem(&client_calls, &g);
	if (st && st->req == req) {
		/* The same request: entered again from the same caller, it is the function
		 * starting over once its goroutine's stack has grown (the prologue's
		 * morestack); from another, it is handed on: one span either way. */
		if (st->caller != caller)
			st->depth++;
		return 0;
	}
	st = new_entry(&client_calls, &g, &zeroes);
	if (!st)
		return 0;
	st->ev.kind = EVENT_CLIENT;
	st->ev.start_ns = bpf_ktime_get_ns();
	st->req = req;
	st->caller = caller;

	st->ev.method_len = read_go_string(st->ev.method, METHOD_MAX, req + off_http_Request_Method);
	st->url = read_ptr(req + off_http_Request_URL);
	if (st->url) {
		st->ev.scheme_len = read_go_string(st->ev.scheme, SCHEME_MAX, st->url + off_url_URL_Scheme);
		st->ev.host_len = read_go_string(st->ev.host, HOST_MAX, st->url + off_url_URL_Host);
		st->ev.path_len = read_go_string(st->ev.path, URL_PATH_MAX, st->url + off_url_URL_Path);
		st->ev.query_len = read_go_string(st->ev.query, QUERY_MAX, st->url + off_url_URL_RawQuery);
	}

	/* Only for a request that may get a traceparent (below TLS nothing can be
	 * inserted); read before the paths below part: verified once, not once per path. */
	if (propagate && st->url && is_http(st))
		capture_headers(read_ptr(req + off_http_Request_Header), &st->hdr, swiss_maps);

	/* By req.ctx's chain; else, for a call made without the request's context
	 * (http.Get) in the goroutine serving a request, by that goroutine. */
	struct span_ref *parent = find_parent(0, 0, req + off_http_Request_ctx, g, 1);
	start_client_span(parent, &st->ev.sc, st->ev.parent_span_id, &st->ev.has_parent, &st->ev.trace_flags);
	__u8 flags = sample(st->ev.sc.trace_id, st->ev.has_parent, st->ev.trace_flags);

	/* A request that has a traceparent (or tracestate) of its own - forwarded by a
	 * proxy, or the app's - gets ours in its place, never a second: the wire is told
	 * which it holds. */
	if (propagate && st->url && is_http(st) && st->ev.method_len > 0 && st->ev.method_len < METHOD_MAX)
		st->ev.propagated = file_traceparent(st, parent, flags);
	return 0;
}

SEC("uprobe/Transport_roundTrip")
int client_entry_swiss(struct go_regs *ctx)
{
	return client_entry(ctx, 1);
}

SEC("uprobe/Transport_roundTrip")
int client_entry_hmap(struct go_regs *ctx)
{
	return client_entry(ctx, 0);
}

SEC("uprobe/Transport_roundTrip_return")
int client_return(struct go_regs *ctx)
{
	__u64 g = go_goroutine(ctx);
	struct client_call *st = bpf_map_lookup_elem(&client_calls, &g);
	if (!st)
		return 0;
	if (st->depth) {
		st->depth--;
		return 0;
	}
	st->ev.end_ns = bpf_ktime_get_ns();
	__u64 resp = go_arg(ctx, 1);
	__u64 err_tab = go_arg(ctx, 2);
	if (resp) {
		st->ev.status = (__u16)read_ptr(resp + off_http_Response_StatusCode);
		st->ev.proto_major = (__u8)read_ptr(resp + off_http_Response_ProtoMajor);
		st->ev.proto_minor = (__u8)read_ptr(resp + off_http_Response_ProtoMinor);
	}
	if (err_tab)
		st->ev.error_type = read_ptr(err_tab + 8); /* itab.Type */
	if (st->ev.propagated)
		bpf_map_delete_elem(&filed, &st->url);
	submit(&st->ev, sizeof(st->ev));
	bpf_map_delete_elem(&client_calls, &g);
	return 0;
}

/* The connection's writer goroutine is about to write the request (HTTP/1): the
 * traceparent filed for it waits for this goroutine's next write. */
SEC("uprobe/Request_write")
int request_write(struct go_regs *ctx)
{
	__u64 url = read_ptr(go_arg(ctx, 1) + off_http_Request_URL);
	struct outgoing *out = bpf_map_lookup_elem(&filed, &url);
	if (!out)
		return 0;
	out->filed_ns = bpf_ktime_get_ns();
	__u64 g = go_goroutine(ctx);
	bpf_map_update_elem(&outgoing_http1, &g, out, BPF_ANY);
	bpf_map_delete_elem(&filed, &url);
	return 0;
}

/* hand_h2 hands the traceparent filed under url to the next header block this
 * goroutine writes. */
static __always_inline int hand_h2(struct go_regs *ctx, __u64 url)
{
	struct outgoing *out = bpf_map_lookup_elem(&filed, &url);
	if (!out)
		return 0;
	out->filed_ns = bpf_ktime_get_ns();
	if (out->app_tracestate && tracestate_is_ours(out, out->app_tracestate, out->app_tracestate_len))
		out->app |= OUTGOING_APP_TRACESTATE_OURS;
	struct h2_stream key = {.g = go_goroutine(ctx), .stream_id = 0};
	bpf_map_update_elem(&outgoing_h2, &key, out, BPF_ANY);
	bpf_map_delete_elem(&filed, &url);
	return 0;
}

/* The HTTP/2 client is about to write the request's header block, and flush it:
 * clientStream.encodeAndWriteHeaders(req *http.Request), net/http's bundled copy
 * before Go 1.27 and golang.org/x/net's. */
SEC("uprobe/clientStream_encodeAndWriteHeaders")
int h2_request_write(struct go_regs *ctx)
{
	return hand_h2(ctx, read_ptr(go_arg(ctx, 2) + off_http_Request_URL));
}

/* The same in Go 1.27's net/http/internal/http2, (req *ClientRequest). */
SEC("uprobe/http2_clientStream_encodeAndWriteHeaders")
int h2_request_write_internal(struct go_regs *ctx)
{
	if (off_http2_ClientRequest_URL == OFFSET_NONE)
		return 0;
	return hand_h2(ctx, read_ptr(go_arg(ctx, 2) + off_http2_ClientRequest_URL));
}
