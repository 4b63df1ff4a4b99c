// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/* net/http: server spans, client spans, and the W3C traceparent on outgoing requests.
 *
 * Server, two uprobe hits per request. Entry of net/http.serverHandler.ServeHTTP(sh,
 * rw, req): the request is parsed; read it, choose the span's IDs (joining the incoming
 * trace, if any), keep the state per goroutine, and register the span among the
 * in-flight server spans every probe shares (spans.h), under its context (req.ctx) and
 * its goroutine, where some probe looks. Each RET: read the route and status, output the
 * span, unregister it.
 *
 * Client, two hits per call, three with propagation. Entry of
 * net/http.(*Transport).roundTrip(t, req): find the parent by walking req.ctx's chain of
 * parent contexts up to a registered request context (of any probe's server span;
 * never by goroutine: a call made with another context starts its own trace); choose
 * the IDs; if the request is plain http and carries
 * no traceparent of its own, file the one to send under req.URL (a clone made for a
 * retry or a body rewind shares it). Entry of net/http.(*Request).write, in the
 * connection's writer goroutine: that traceparent now waits for this goroutine's next
 * write to a socket. Each RET of roundTrip: read the status or the error's type, output
 * the span.
 *
 * Propagation, without writing to the app's memory (kernel lockdown forbids it):
 * sockops adds the app's outgoing TCP connections to a sockhash; sk_msg on that
 * sockhash, seeing a write by a goroutine with a traceparent waiting that begins with
 * the expected request line, inserts "traceparent: ...\r\n" (and tracestate) after it.
 * Only the app's connections, only a request's first write, only plain HTTP/1.
 *
 * State is built in place in hash map values keyed by goroutine, never in per-CPU
 * scratch: BPF programs can be preempted on a preemptible kernel, and a per-CPU buffer
 * could then be shared by two requests. */
#include "common.h"
#include "headers.h"
#include "spans.h"

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
volatile __u64 off_http_Response_StatusCode = OFFSET_NONE; /* the client's *Response */
volatile __u64 off_http_Response_ProtoMajor = OFFSET_NONE;
volatile __u64 off_http_Response_ProtoMinor = OFFSET_NONE;
/* Set last: uprobes may be attached before the offsets are known (the app is held at
 * the start gate meanwhile), and must do nothing until they are. */
volatile __u64 server_enabled = 0;
volatile __u64 client_enabled = 0;
volatile __u64 propagate = 0; /* file traceparents for sk_msg to insert */

#define EVENT_SERVER 1
#define EVENT_CLIENT 2

#define METHOD_MAX 16
#define PATH_MAX 128
#define ROUTE_MAX 128
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
	__u8 method[METHOD_MAX];
	__u8 path[PATH_MAX];
	__u8 route[ROUTE_MAX];
	__u8 host[HOST_MAX];
	__u8 remote_addr[REMOTE_MAX];
	struct header_capture hdr; /* user agent, tracestate */
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

/* Requests between entry and return, keyed by goroutine. An entry whose return never
 * came (a handler that panicked) is replaced when its goroutine serves again. */
struct server_call {
	struct http_server_event ev;
	__u64 req;
	__u64 resp;
	__u64 ctx;          /* req.ctx's data word */
	struct span_ref ref; /* what the calls it makes get of it */
	__u8 inflight;      /* INFLIGHT_* maps it is registered in */
};

struct client_call {
	struct http_client_event ev;
	__u64 url;
	struct header_capture hdr;
};

/* A traceparent (and tracestate) on its way to the wire. */
struct outgoing {
	__u8 traceparent[TRACEPARENT_LEN + 1];
	__u8 method_len;
	__u16 tracestate_len;
	__u8 method[METHOD_MAX];
	__u8 tracestate[TRACESTATE_MAX];
	__u64 filed_ns;
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

/* Traceparents waiting for their writer goroutine's next write to a socket. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, struct outgoing);
} waiting SEC(".maps");

/* Zeroes to create map entries from, which are then filled in place. Never written. */
union zero_value {
	struct server_call server;
	struct client_call client;
	struct outgoing out;
} zeroes;

/* The app's process ID as the kernel knows it (the launcher may sit in a PID namespace
 * of its own): learned from the uprobes, which only the app hits; used by sockops to
 * pick the app's connections. */
volatile __u32 app_tgid;

/* The app's TCP connections, by socket cookie: connecting (sockops saw connect() in the
 * app), then established (in the sockhash, where sk_msg sees their writes). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u8);
} connecting SEC(".maps");

/* Sizes, not BTF types: the kernel takes no BTF for a sockhash, and the loader's
 * fallback after trying costs 30 ms of start gate. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__uint(key_size, sizeof(__u64));
	__uint(value_size, sizeof(__u64));
} app_sockets SEC(".maps");

const struct http_server_event *unused_server_event __attribute__((unused)); /* bpf2go -type */
const struct http_client_event *unused_client_event __attribute__((unused));

static __always_inline void learn_app_tgid(void)
{
	if (!app_tgid)
		app_tgid = bpf_get_current_pid_tgid() >> 32;
}

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
static __always_inline void register_span(struct server_call *st, __u64 g)
{
	if (!inflight_wanted)
		return;
	st->ctx = read_ptr(st->req + off_http_Request_ctx + 8);
	struct span_ref *ref = &st->ref;
	__builtin_memcpy(&ref->sc, &st->ev.sc, sizeof(ref->sc));
	ref->flags = sample(st->ev.sc.trace_id, st->ev.has_parent, st->ev.trace_flags);
	ref->tracestate_len = st->ev.hdr.tracestate_len;
	if (ref->tracestate_len)
		__builtin_memcpy(ref->tracestate, st->ev.hdr.tracestate, TRACESTATE_MAX);
	st->inflight = inflight_begin(g, st->ctx, ref);
}

static __always_inline int server_entry(struct go_regs *ctx, const int swiss_maps)
{
	if (!server_enabled)
		return 0;
	learn_app_tgid();
	__u64 g = go_goroutine(ctx);
	struct server_call *st = new_entry(&server_calls, &g, &zeroes);
	if (!st)
		return 0;
	st->ev.kind = EVENT_SERVER;
	st->ev.start_ns = bpf_ktime_get_ns();
	st->resp = go_arg(ctx, 3); /* rw's data word: *http.response for HTTP/1 */
	st->req = go_arg(ctx, 4);
	__u64 req = st->req;

	st->ev.method_len = read_go_string(st->ev.method, METHOD_MAX, req + off_http_Request_Method);
	st->ev.host_len = read_go_string(st->ev.host, HOST_MAX, req + off_http_Request_Host);
	st->ev.remote_len = read_go_string(st->ev.remote_addr, REMOTE_MAX, req + off_http_Request_RemoteAddr);
	__u64 url = read_ptr(req + off_http_Request_URL);
	if (url)
		st->ev.path_len = read_go_string(st->ev.path, PATH_MAX, url + off_url_URL_Path);
	st->ev.proto_major = (__u8)read_ptr(req + off_http_Request_ProtoMajor);
	st->ev.proto_minor = (__u8)read_ptr(req + off_http_Request_ProtoMinor);
	/* "PRI * HTTP/2.0" is the HTTP/2 connection preface, which an h2c handler
	 * (golang.org/x/net/http2/h2c) takes over as a connection: no request. */
	if (st->ev.proto_major == 2 && st->ev.method_len == 3 && st->ev.method[0] == 'P' && st->ev.method[1] == 'R' &&
	    st->ev.method[2] == 'I') {
		bpf_map_delete_elem(&server_calls, &g);
		return 0;
	}

	capture_headers(read_ptr(req + off_http_Request_Header), &st->ev.hdr, swiss_maps);
	if (trace_context && join_trace(&st->ev)) {
		st->ev.has_parent = 1;
	} else {
		random_bytes(st->ev.sc.trace_id, TRACE_ID_SIZE);
		st->ev.hdr.tracestate_len = 0; /* tracestate without a valid traceparent is void */
	}
	random_bytes(st->ev.sc.span_id, SPAN_ID_SIZE);
	register_span(st, g);
	return 0;
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

SEC("uprobe/serverHandler_ServeHTTP_return")
int server_return(struct go_regs *ctx)
{
	__u64 g = go_goroutine(ctx);
	struct server_call *st = bpf_map_lookup_elem(&server_calls, &g);
	if (!st)
		return 0;
	st->ev.end_ns = bpf_ktime_get_ns();
	__u64 req = st->req;

	/* An HTTP/1 ResponseWriter is an *http.response, an HTTP/2 one the HTTP/2
	 * server's. A handler that wrote no header gets 200 when ServeHTTP returns. */
	if (st->ev.proto_major == 1) {
		__u64 status = read_ptr(st->resp + off_http_response_status);
		st->ev.status = status ? (__u16)status : 200;
	} else if (st->ev.proto_major == 2) {
		__u64 rws_off = off_http_http2responseWriter_rws, status_off = off_http_http2responseWriterState_status;
		if (rws_off == OFFSET_NONE) { /* Go 1.27+ */
			rws_off = off_http2_responseWriter_rws;
			status_off = off_http2_responseWriterState_status;
		}
		if (rws_off != OFFSET_NONE && status_off != OFFSET_NONE) {
			__u64 status = read_ptr(read_ptr(st->resp + rws_off) + status_off);
			st->ev.status = status ? (__u16)status : 200;
		}
	}
	if (off_http_Request_Pattern != OFFSET_NONE) {
		st->ev.route_len = read_go_string(st->ev.route, ROUTE_MAX, req + off_http_Request_Pattern);
	} else if (off_http_Request_pat != OFFSET_NONE) {
		__u64 pat = read_ptr(req + off_http_Request_pat);
		if (pat)
			st->ev.route_len = read_go_string(st->ev.route, ROUTE_MAX, pat + off_http_pattern_str);
	}
	if (st->inflight)
		inflight_end(g, st->ctx, st->inflight);
	submit(&st->ev, sizeof(st->ev));
	bpf_map_delete_elem(&server_calls, &g);
	return 0;
}

/* ---------------------------------------------------------------- client */

/* file_traceparent files the traceparent the request is to carry, for Request.write. */
static __always_inline int file_traceparent(struct client_call *st, struct span_ref *parent, __u8 flags)
{
	struct outgoing *out = new_entry(&filed, &st->url, &zeroes);
	if (!out)
		return 0;
	format_traceparent(out->traceparent, st->ev.sc.trace_id, st->ev.sc.span_id, flags);
	out->method_len = st->ev.method_len;
	__builtin_memcpy(out->method, st->ev.method, METHOD_MAX);
	if (parent && parent->tracestate_len) {
		out->tracestate_len = parent->tracestate_len;
		__builtin_memcpy(out->tracestate, parent->tracestate, TRACESTATE_MAX);
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
	learn_app_tgid();
	__u64 g = go_goroutine(ctx);
	struct client_call *st = new_entry(&client_calls, &g, &zeroes);
	if (!st)
		return 0;
	st->ev.kind = EVENT_CLIENT;
	st->ev.start_ns = bpf_ktime_get_ns();
	__u64 req = go_arg(ctx, 2);

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

	struct span_ref *parent = parent_by_context(read_ptr(req + off_http_Request_ctx + 8));
	start_client_span(parent, &st->ev.sc, st->ev.parent_span_id, &st->ev.has_parent, &st->ev.trace_flags);
	__u8 flags = sample(st->ev.sc.trace_id, st->ev.has_parent, st->ev.trace_flags);

	/* Never a second traceparent: a request that has one is left as it is. */
	if (propagate && st->url && is_http(st) && st->ev.method_len > 0 && st->ev.method_len < METHOD_MAX &&
	    !(st->hdr.found & HEADER_TRACEPARENT))
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

/* The connection's writer goroutine is about to write the request: the traceparent
 * filed for it waits for this goroutine's next write. */
SEC("uprobe/Request_write")
int request_write(struct go_regs *ctx)
{
	__u64 url = read_ptr(go_arg(ctx, 1) + off_http_Request_URL);
	struct outgoing *out = bpf_map_lookup_elem(&filed, &url);
	if (!out)
		return 0;
	out->filed_ns = bpf_ktime_get_ns();
	__u64 g = go_goroutine(ctx);
	bpf_map_update_elem(&waiting, &g, out, BPF_ANY);
	bpf_map_delete_elem(&filed, &url);
	return 0;
}

/* ---------------------------------------------------------------- propagation */

SEC("sockops")
int app_sockops(struct bpf_sock_ops *ops)
{
	__u32 tgid = app_tgid;
	if (!tgid)
		return 1;
	__u64 cookie;
	__u8 one = 1;
	switch (ops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB: /* in the connecting thread */
		if ((bpf_get_current_pid_tgid() >> 32) == tgid) {
			cookie = bpf_get_socket_cookie(ops);
			bpf_map_update_elem(&connecting, &cookie, &one, BPF_ANY);
		}
		break;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB: /* in softirq: no current process */
		cookie = bpf_get_socket_cookie(ops);
		if (bpf_map_lookup_elem(&connecting, &cookie)) {
			bpf_sock_hash_update(ops, &app_sockets, &cookie, BPF_NOEXIST);
			bpf_map_delete_elem(&connecting, &cookie);
		}
		break;
	}
	return 1;
}

#define WAIT_MAX_NS (1000 * 1000 * 1000ULL) /* a traceparent older than this is dropped */
#define LINE_MAX 512                        /* longer request lines go without */
#define TRACEPARENT_LINE_LEN (13 + TRACEPARENT_LEN + 2) /* "traceparent: " value "\r\n" */
/* "tracestate: " value "\r\n", padded with spaces (optional whitespace, which HTTP
 * parsers drop) to a multiple of 8 bytes: the line is written in 8-byte chunks. */
#define TRACESTATE_LINE_MAX ((12 + TRACESTATE_MAX + 2 + 7) & ~7)

/* The header lines to insert, built and checked before anything is changed: only
 * well-formed header lines ever reach the wire, whatever the map held. */
struct insertion {
	__u8 traceparent[TRACEPARENT_LEN];
	__u8 method_len;
	__u64 method[2]; /* "METHOD ", zero-padded: the request line's first bytes */
	__u16 tracestate_line_len; /* 0, or a multiple of 8 */
	__u16 tracestate_len;
	__u8 bad; /* BAD_*: a byte that may not be sent */
	__u8 tracestate_line[TRACESTATE_LINE_MAX];
};

#define BAD_TRACEPARENT 1
#define BAD_TRACESTATE 2

static __always_inline int hex_or_dash(__u8 c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || c == '-';
}

/* check_byte checks byte i of the traceparent, then checks or fills byte i - 55 of
 * the tracestate line: the value's bytes must be printable ASCII (no line breaks), then
 * come padding and "\r\n". A bpf_loop callback: verified once for all the bytes. */
static long check_byte(__u32 i, void *arg)
{
	struct insertion *ins = arg;
	if (i < TRACEPARENT_LEN) {
		if (!hex_or_dash(ins->traceparent[i]))
			ins->bad |= BAD_TRACEPARENT;
		return 0;
	}
	i -= TRACEPARENT_LEN;
	__u32 len = ins->tracestate_line_len, ts = ins->tracestate_len;
	if (i >= len)
		return 1;
	if (i < 12)
		return 0;
	asm volatile("" : "+r"(i)); /* keep the clamp below next to the access */
	if (i >= TRACESTATE_LINE_MAX)
		return 1;
	__u8 *c = &ins->tracestate_line[i];
	if (i < 12 + ts) {
		if (*c < 0x20 || *c > 0x7e)
			ins->bad |= BAD_TRACESTATE;
	} else if (i < len - 2) {
		*c = ' ';
	} else {
		*c = i == len - 2 ? '\r' : '\n';
	}
	return 0;
}

/* take_waiting takes the current goroutine's waiting traceparent, if any, into ins. */
static __always_inline int take_waiting(struct insertion *ins)
{
	__u64 g = go_current_goroutine();
	if (!g)
		return 0;
	struct outgoing *w = bpf_map_lookup_elem(&waiting, &g);
	if (!w)
		return 0;
	int ok = bpf_ktime_get_ns() - w->filed_ns < WAIT_MAX_NS;
	__builtin_memcpy(ins->traceparent, w->traceparent, TRACEPARENT_LEN);
	ins->method_len = w->method_len;
	__builtin_memcpy(ins->method, w->method, METHOD_MAX);
	__u16 ts = w->tracestate_len;
	if (ins->method_len == 0 || ins->method_len >= METHOD_MAX)
		ok = 0;
	else
		((__u8 *)ins->method)[ins->method_len & (METHOD_MAX - 1)] = ' ';
	if (ts > 0 && ts <= TRACESTATE_MAX) {
		__builtin_memcpy(ins->tracestate_line, "tracestate: ", 12);
		__builtin_memcpy(ins->tracestate_line + 12, w->tracestate, TRACESTATE_MAX);
		ins->tracestate_len = ts;
		ins->tracestate_line_len = (12 + ts + 2 + 7) & ~7;
	}
	bpf_map_delete_elem(&waiting, &g); /* one write per traceparent */

	bpf_loop(TRACEPARENT_LEN + TRACESTATE_LINE_MAX, check_byte, ins, 0);
	if (ins->bad & BAD_TRACESTATE)
		ins->tracestate_line_len = 0; /* the traceparent still goes */
	return ok && !(ins->bad & BAD_TRACEPARENT);
}

/* first_cr returns the offset of the first '\r' in the message's first LINE_MAX
 * bytes, or -1. It looks at a word at a time: a byte at a time, the verifier would walk
 * 500 iterations, each with its own way out. A global function: verified once, on its
 * own, whatever state its callers are in. */
__noinline int first_cr(struct sk_msg_md *msg)
{
	if (!msg)
		return -1;
	__u8 *data = (__u8 *)(long)msg->data, *end = (__u8 *)(long)msg->data_end;
	for (int w = 0; w < LINE_MAX / 8; w++) {
		__u8 *q = data + w * 8;
		if (q + 8 > end)
			return -1;
		__u64 x = *(__u64 *)q ^ 0x0d0d0d0d0d0d0d0dULL; /* '\r' bytes become zero */
		__u64 zero = (x - 0x0101010101010101ULL) & ~x & 0x8080808080808080ULL;
		if (zero) { /* the lowest flagged byte is the first zero byte */
			int b = 0;
			if (!(zero & 0x80808080ULL)) {
				b += 4;
				zero >>= 32;
			}
			if (!(zero & 0x8080ULL)) {
				b += 2;
				zero >>= 16;
			}
			if (!(zero & 0x80ULL))
				b += 1;
			return w * 8 + b;
		}
	}
	return -1;
}

/* request_line_end returns where the request line ends (its "\r\n"), if the message
 * begins with "METHOD " and the line ends with " HTTP/1.x"; -1 otherwise. */
static __always_inline int request_line_end(struct sk_msg_md *msg, struct insertion *ins)
{
	__u8 *data = (__u8 *)(long)msg->data, *end = (__u8 *)(long)msg->data_end;
	__u32 m = ins->method_len; /* 1..15, checked by take_waiting */
	/* Compare "METHOD " as two masked words: no branch per length, which would
	 * multiply the paths the verifier walks through the scan below. */
	if (data + 16 > end)
		return -1;
	__u32 bits = (m + 1) * 8;
	__u64 mask0 = bits >= 64 ? ~0ULL : (1ULL << bits) - 1;
	__u64 mask1 = bits <= 64 ? 0 : bits >= 128 ? ~0ULL : (1ULL << (bits - 64)) - 1;
	__u64 w0 = *(__u64 *)data, w1 = *(__u64 *)(data + 8);
	if (((w0 ^ ins->method[0]) & mask0) | ((w1 ^ ins->method[1]) & mask1))
		return -1;
	int eol = first_cr(msg);
	/* The shortest line is "M / HTTP/1.x". */
	if (eol < 0 || eol < (int)m + 11 || eol > LINE_MAX - 2)
		return -1;
	__u32 at = (__u32)eol - 9;
	if (at > LINE_MAX)
		return -1;
	__u8 *v = data + at; /* " HTTP/1.x\r\n" */
	if (v + 11 > end || v[0] != ' ' || v[1] != 'H' || v[2] != 'T' || v[3] != 'T' || v[4] != 'P' ||
	    v[5] != '/' || v[6] != '1' || v[7] != '.' || v[10] != '\n')
		return -1;
	return eol;
}

/* insert_headers inserts the header lines of ins at offset at of the message. */
__noinline int insert_headers(struct sk_msg_md *msg, __u32 at, struct insertion *ins)
{
	if (!ins || at > LINE_MAX)
		return 0;
	__u32 ts_len = ins->tracestate_line_len;
	if (ts_len > TRACESTATE_LINE_MAX)
		ts_len = 0;
	__u32 add = TRACEPARENT_LINE_LEN + ts_len;
	if (bpf_msg_push_data(msg, at, add, 0) != 0)
		return 0;
	/* Make the inserted bytes writable; should that fail, take them out again. */
	if (bpf_msg_pull_data(msg, at, at + add, 0) != 0 ||
	    (__u8 *)(long)msg->data + add > (__u8 *)(long)msg->data_end) {
		bpf_msg_pop_data(msg, at, add, 0);
		return 0;
	}
	/* From here every write is inside the add bytes just checked; the checks below
	 * are for the verifier. */
	__u8 *p = (__u8 *)(long)msg->data, *end = (__u8 *)(long)msg->data_end;
	if (p + TRACEPARENT_LINE_LEN > end)
		return 0;
	__builtin_memcpy(p, "traceparent: ", 13);
	__builtin_memcpy(p + 13, ins->traceparent, TRACEPARENT_LEN);
	p[13 + TRACEPARENT_LEN] = '\r';
	p[14 + TRACEPARENT_LEN] = '\n';
	p += TRACEPARENT_LINE_LEN;
	for (__u32 c = 0; c < TRACESTATE_LINE_MAX / 8; c++) {
		if (c * 8 >= ts_len)
			break;
		__u8 *q = p + c * 8;
		if (q + 8 > end)
			break;
		__builtin_memcpy(q, &ins->tracestate_line[c * 8], 8);
	}
	return 1;
}

/* inject inserts the traceparent (and tracestate) after the request line. Everything
 * else passes through untouched. */
SEC("sk_msg")
int inject(struct sk_msg_md *msg)
{
	struct insertion ins = {};
	if (!take_waiting(&ins))
		return SK_PASS;
	__u32 n = msg->size < LINE_MAX ? msg->size : LINE_MAX;
	if (n < 16 || bpf_msg_pull_data(msg, 0, n, 0) != 0)
		return SK_PASS;
	int eol = request_line_end(msg, &ins);
	if (eol >= 0)
		insert_headers(msg, eol + 2, &ins);
	return SK_PASS;
}
