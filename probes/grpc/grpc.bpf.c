// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/* google.golang.org/grpc: server spans and client spans.
 *
 * Server, three uprobe hits per RPC, unary or streaming; the span covers the stream
 * from its request headers to its final status.
 *  - Entry of transport.(*http2Server).operateHeaders(t, [ctx,] frame, ...), in the
 *    connection's reader goroutine: the stream's HEADERS, decoded. Read the method
 *    (:path), traceparent and tracestate, and the connection's addresses (those grpc
 *    took from the app's net.Conn, whatever wraps the TCP connection); choose the
 *    span's IDs (joining the incoming trace); keep the state under (transport, stream).
 *  - Entry of grpc.(*Server).handleStream(s, t, stream, ...), in the goroutine that
 *    runs the handler: register the span among the in-flight server spans (spans.h)
 *    under the stream's context and this goroutine, so that the calls the handler makes,
 *    with any library, find their parent.
 *  - Entry of the transport's WriteStatus (writeStatus since v1.69), which every stream
 *    that reached a handler ends with: read the status, output the span, unregister it.
 * A stream refused before any handler (bad headers, too many streams) leaves its state
 * behind in an LRU map, and no span.
 *
 * Client, three hits per call, unary or a stream: both are a clientStream. Entry of
 * grpc.newClientStreamWithParams(ctx, desc, cc, method, ...), which makes it: find the
 * parent by the call's context (else by the goroutine, for a call made with
 * context.Background() in a handler's), choose the IDs, read the target; state under the
 * goroutine. Each of its RETs: the stream (*clientStream), under which the state
 * moves - or the error, if the span is still open. Entry of (*clientStream).finish(cs,
 * err), once per stream (a second call is a no-op to grpc and finds no state): the
 * final status; a stream that fails while being made is finished before it is
 * returned, found under the goroutine then. (Errors newClientStream returns before
 * making a stream - a name that does not resolve - get no span.) An error is
 * read as an *internal/status.Error, and its first word as an *errors.errorString's
 * text (io.EOF ends a stream that succeeded); userspace uses what the error's dynamic
 * type says it is.
 *
 * Outgoing context (with propagation on; probes/wire puts it on the wire), two hits
 * more per call. The entry of newClientStreamWithParams files the traceparent under
 * its goroutine. Each RET of transport.(*http2Client).createHeaderFields, in that
 * goroutine: the request's header fields are made; the traceparent moves under the
 * fields' array, noting the trace context fields the app put there itself (forwarded
 * metadata, or its own), which the wire replaces instead of adding; the stream's
 * header frame carries to the connection's writer goroutine (loopyWriter). Entry of
 * the writer's originateStream(str, hdr) (clientHeaderHandler(hdr) since v1.82.1; not
 * before v1.53, whose writer takes the frame from a queue: no context goes out), which
 * writes the stream's header block, with its stream ID: the traceparent waits there
 * for that block (outgoing.h). Only client streams pass there: a server's responses
 * cost nothing. */
#include "common.h"
#include "tracestate.h"
#include "spans.h"
#include "client.h"
#include "outgoing.h"
#include "net.h" /* a *net.TCPAddr's offsets */

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Field offsets in the app, named after the Go fields (kit.VarName) and set by the
 * loader; OFFSET_NONE where the app's versions have no such field. */
/* The connection's addresses, as its net.Conn's RemoteAddr() and LocalAddr() gave them
 * when grpc took it: net.Addr interfaces, two fields before v1.60, a peer.Peer since. */
volatile __u64 off_transport_http2Server_remoteAddr = OFFSET_NONE;
volatile __u64 off_transport_http2Server_localAddr = OFFSET_NONE;
volatile __u64 off_transport_http2Server_peer = OFFSET_NONE;
volatile __u64 off_peer_Peer_Addr = OFFSET_NONE;
volatile __u64 off_peer_Peer_LocalAddr = OFFSET_NONE;
volatile __u64 off_transport_Stream_id = OFFSET_NONE;
volatile __u64 off_transport_Stream_ctx = OFFSET_NONE;
volatile __u64 off_transport_ServerStream_Stream = OFFSET_NONE; /* v1.69+: embeds Stream */
volatile __u64 off_status_Status_s = OFFSET_NONE;              /* internal/status: *spb.Status */
volatile __u64 off_status_Error_s = OFFSET_NONE;               /* internal/status: *Status */
volatile __u64 off_status_Status_Code = OFFSET_NONE;           /* genproto rpc/status */
volatile __u64 off_status_Status_Message = OFFSET_NONE;
volatile __u64 off_grpc_ClientConn_target = OFFSET_NONE;
volatile __u64 off_errors_errorString_s = OFFSET_NONE;
volatile __u64 off_x_http2_MetaHeadersFrame_HeadersFrame = OFFSET_NONE; /* golang.org/x/net */
volatile __u64 off_x_http2_MetaHeadersFrame_Fields = OFFSET_NONE;
volatile __u64 off_x_http2_HeadersFrame_FrameHeader = OFFSET_NONE;
volatile __u64 off_x_http2_FrameHeader_StreamID = OFFSET_NONE;
volatile __u64 off_x_hpack_HeaderField_Name = OFFSET_NONE;
volatile __u64 off_x_hpack_HeaderField_Value = OFFSET_NONE;
volatile __u64 off_x_hpack_HeaderField_Sensitive = OFFSET_NONE; /* the last field: gives the size */
volatile __u64 off_transport_headerFrame_streamID = OFFSET_NONE;   /* v1.53 to v1.82 */
volatile __u64 off_transport_headerFrame_hf = OFFSET_NONE;
volatile __u64 off_transport_clientHeaders_streamID = OFFSET_NONE; /* v1.82.1+ */
volatile __u64 off_transport_clientHeaders_hf = OFFSET_NONE;
/* Which argument of operateHeaders is the frame: 2, or 4 since v1.60 (after a ctx). */
volatile __u64 headers_frame_arg = 4;
/* Set last, once the offsets are. */
volatile __u64 server_enabled = 0;
volatile __u64 client_enabled = 0;
volatile __u64 propagate = 0; /* file traceparents for the wire */

#define EVENT_SERVER 1
#define EVENT_CLIENT 2

#define METHOD_MAX 128
#define MESSAGE_MAX 128
#define TARGET_MAX 128
#define HEADERS_MAX 32 /* header fields of a stream looked at */
#define TRACEPARENT_MAX 64

/* A net.Addr: its dynamic type, and what it holds read as a *net.TCPAddr (userspace
 * keeps it only if the type is that). */
struct grpc_addr {
	__u8 ip[16];
	__u64 type;
	__u16 port;
	__u8 ip_len;
	__u8 _pad[5];
};

struct grpc_server_event {
	__u32 kind;
	__u8 has_parent;
	__u8 trace_flags; /* the incoming parent's */
	__u16 method_len;
	__u64 start_ns;
	__u64 end_ns;
	struct span_context sc;
	__u8 parent_span_id[SPAN_ID_SIZE];
	struct grpc_addr local;
	struct grpc_addr remote;
	__u32 code;
	__u16 message_len;
	__u16 tracestate_len; /* the incoming tracestate as kept (tracestate.h) */
	__u8 method[METHOD_MAX];
	__u8 message[MESSAGE_MAX];
	__u8 tracestate[TRACESTATE_MAX]; /* last: a record goes without its unused bytes */
};

struct grpc_client_event {
	__u32 kind;
	__u8 has_parent;
	__u8 trace_flags; /* the parent's */
	__u16 method_len;
	__u64 start_ns;
	__u64 end_ns;
	struct span_context sc;
	__u8 parent_span_id[SPAN_ID_SIZE];
	__u64 error_type; /* the error's dynamic type; 0 without an error */
	__u32 code;       /* read as a status error: valid only if error_type is one */
	__u16 message_len;
	__u16 target_len;
	__u8 eof; /* the error's text is "EOF", read as an *errors.errorString */
	__u8 _pad[7];
	__u8 method[METHOD_MAX];
	__u8 message[MESSAGE_MAX];
	__u8 target[TARGET_MAX];
};

/* A server stream, from its headers to its status. */
struct server_stream {
	struct grpc_server_event ev;
	__u8 traceparent[TRACEPARENT_MAX];
	__u64 traceparent_len;
	__u64 g;             /* the handler's goroutine, once handleStream ran */
	__u64 ctx;           /* the stream's context's data word */
	union {
		struct span_ref ref;          /* what the calls the handler makes get of it */
		struct tracestate_scratch ts; /* before: reading the tracestate */
	};
	__u8 inflight; /* INFLIGHT_* maps it is registered in */
};

/* The tracestate's scratch costs no room: it fits in the span_ref it shares. */
_Static_assert(sizeof(struct tracestate_scratch) <= sizeof(struct span_ref), "tracestate scratch outgrew span_ref");

/* A stream of one transport (one connection): HTTP/2 stream IDs are unique within it. */
struct stream_key {
	__u64 transport;
	__u64 id;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct stream_key);
	__type(value, struct server_stream);
} server_streams SEC(".maps");

/* Client calls being set up, by goroutine. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct grpc_client_event);
} client_calls SEC(".maps");

/* Client calls in flight, by *clientStream. LRU: a stream the app abandons without
 * finishing it (grpc finishes every stream whose context ends) must not fill it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct grpc_client_event);
} client_streams SEC(".maps");

/* Traceparents to send, by the calling goroutine until its header fields are made,
 * then by their array until the writer takes them. LRU: a call that never reaches the
 * writer leaves its entry. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, struct outgoing);
} calls_outgoing SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, struct outgoing);
} fields_outgoing SEC(".maps");

/* Zeroes to create map entries from. Never written. */
union zero_value {
	struct server_stream server;
	struct grpc_client_event client;
	struct outgoing out;
} zeroes;

const struct grpc_server_event *unused_server_event __attribute__((unused)); /* bpf2go -type */
const struct grpc_client_event *unused_client_event __attribute__((unused));

/* offset_or_zero is an embedded field's offset, 0 where the version does not embed. */
static __always_inline __u64 offset_or_zero(__u64 off)
{
	return off == OFFSET_NONE ? 0 : off;
}

/* stream_id reads a server stream's HTTP/2 stream ID. */
static __always_inline __u64 stream_id(__u64 stream)
{
	__u32 id = 0;
	read_user(&id, sizeof(id), stream + offset_or_zero(off_transport_ServerStream_Stream) + off_transport_Stream_id);
	return id;
}

/* read_status reads a *internal/status.Status: code and message. */
static __always_inline void read_status(__u64 st, __u32 *code, __u8 *message, __u16 *message_len)
{
	__u64 pb = read_ptr(st + off_status_Status_s);
	if (!pb) {
		*code = 0; /* a nil *spb.Status is OK */
		return;
	}
	read_user(code, sizeof(*code), pb + off_status_Status_Code);
	*message_len = read_go_string(message, MESSAGE_MAX, pb + off_status_Status_Message);
}

/* read_addr reads the net.Addr interface at addr: its dynamic type, and its value taken
 * for a *net.TCPAddr, which userspace keeps only if the type is that. */
static __always_inline void read_addr(struct grpc_addr *a, __u64 addr)
{
	struct go_iface i = {};
	if (read_user(&i, sizeof(i), addr) != 0 || !i.tab)
		return;
	a->type = read_ptr(i.tab + 8); /* itab.Type */
	__u8 ip_len = 0;
	__u64 port = 0;
	if (read_tcp_addr(i.data, a->ip, &ip_len, &port) == 0) {
		a->ip_len = ip_len;
		a->port = (__u16)port;
	}
}

/* read_peer reads the addresses of transport t's connection: what its net.Conn's
 * RemoteAddr() and LocalAddr() answered, whatever wraps the TCP connection (TLS, cmux,
 * a PROXY protocol listener, which answers with the addresses its header gave). */
static __always_inline void read_peer(struct grpc_server_event *ev, __u64 t)
{
	__u64 remote = OFFSET_NONE, local = OFFSET_NONE;
	if (off_transport_http2Server_peer != OFFSET_NONE) { /* v1.60+ */
		if (off_peer_Peer_Addr != OFFSET_NONE)
			remote = off_transport_http2Server_peer + off_peer_Peer_Addr;
		if (off_peer_Peer_LocalAddr != OFFSET_NONE)
			local = off_transport_http2Server_peer + off_peer_Peer_LocalAddr;
	} else {
		remote = off_transport_http2Server_remoteAddr;
		local = off_transport_http2Server_localAddr;
	}
	if (remote != OFFSET_NONE)
		read_addr(&ev->remote, t + remote);
	if (local != OFFSET_NONE)
		read_addr(&ev->local, t + local);
}

/* ---------------------------------------------------------------- server */

static __always_inline int is_name(const __u8 *name, const char *want, int n)
{
	for (int i = 0; i < n; i++)
		if (name[i] != want[i])
			return 0;
	return 1;
}

/* read_headers reads the stream's method and traceparent from the decoded header
 * fields (x/net/http2's names are lowercase), and finds its tracestate fields, each a
 * value of the one list they make. A global function: verified once, on its own. */
__noinline int read_headers(struct server_stream *st, __u64 fields, __u64 n)
{
	if (!st)
		return 0;
	__u64 size = (off_x_hpack_HeaderField_Sensitive + 8) & ~7ULL;
	for (int i = 0; i < HEADERS_MAX; i++) {
		if (i >= n)
			break;
		__u64 field = fields + i * size;
		struct go_string name = {};
		if (read_user(&name, sizeof(name), field + off_x_hpack_HeaderField_Name) != 0)
			break;
		__u8 buf[11] = {};
		if (name.len == 5 && read_user(buf, 5, name.ptr) == 0 && is_name(buf, ":path", 5)) {
			st->ev.method_len = read_go_string(st->ev.method, METHOD_MAX, field + off_x_hpack_HeaderField_Value);
		} else if (name.len == 11 && read_user(buf, 11, name.ptr) == 0 && is_name(buf, "traceparent", 11)) {
			st->traceparent_len = read_go_string(st->traceparent, TRACEPARENT_MAX, field + off_x_hpack_HeaderField_Value);
		} else if (name.len == 10 && read_user(buf, 10, name.ptr) == 0 && is_name(buf, "tracestate", 10)) {
			__u32 k = st->ts.fields;
			if (k < TRACESTATE_FIELDS &&
			    read_user(&st->ts.field[k & (TRACESTATE_FIELDS - 1)], sizeof(struct go_string),
				      field + off_x_hpack_HeaderField_Value) != 0)
				k = TRACESTATE_FIELDS; /* unreadable: dropped, as too many are */
			st->ts.fields = k + 1;
		}
	}
	return 0;
}

SEC("uprobe/http2Server_operateHeaders")
int server_headers(struct go_regs *ctx)
{
	if (!server_enabled)
		return 0;
	__u64 t = go_arg(ctx, 1);
	/* Both read before choosing: a register chosen by a variable would be a ctx
	 * access at a variable offset, which the verifier refuses. */
	__u64 arg2 = go_arg(ctx, 2), arg4 = go_arg(ctx, 4);
	asm volatile("" : "+r"(arg2), "+r"(arg4));
	__u64 frame = headers_frame_arg == 2 ? arg2 : arg4;
	__u64 headers = read_ptr(frame + off_x_http2_MetaHeadersFrame_HeadersFrame);
	__u32 id = 0;
	if (read_user(&id, sizeof(id), headers + off_x_http2_HeadersFrame_FrameHeader + off_x_http2_FrameHeader_StreamID) != 0)
		return 0;
	struct stream_key key = {.transport = t, .id = id};
	struct server_stream *st = new_entry(&server_streams, &key, &zeroes);
	if (!st)
		return 0;
	st->ev.kind = EVENT_SERVER;
	st->ev.start_ns = bpf_ktime_get_ns();

	struct go_slice fields = {};
	read_user(&fields, sizeof(fields), frame + off_x_http2_MetaHeadersFrame_Fields);
	read_headers(st, fields.ptr, fields.len);

	read_peer(&st->ev, t);

	if (trace_context && st->traceparent_len &&
	    parse_traceparent((const char *)st->traceparent, st->traceparent_len, st->ev.sc.trace_id,
			      st->ev.parent_span_id, &st->ev.trace_flags) == 0) {
		st->ev.has_parent = 1;
		/* Only with a valid traceparent: a tracestate without one is void. */
		if (st->ts.fields)
			st->ev.tracestate_len = tracestate_take(&st->ts, &st->ev.tracestate);
	} else {
		random_bytes(st->ev.sc.trace_id, TRACE_ID_SIZE);
	}
	random_bytes(st->ev.sc.span_id, SPAN_ID_SIZE);
	return 0;
}

SEC("uprobe/Server_handleStream")
int server_handle(struct go_regs *ctx)
{
	if (!server_enabled || !inflight_wanted)
		return 0;
	__u64 stream = go_arg(ctx, 4);
	struct stream_key key = {.transport = go_arg(ctx, 3), .id = stream_id(stream)};
	struct server_stream *st = bpf_map_lookup_elem(&server_streams, &key);
	if (!st || st->inflight)
		return 0;
	st->g = go_goroutine(ctx);
	st->ctx = read_ptr(stream + offset_or_zero(off_transport_ServerStream_Stream) + off_transport_Stream_ctx + 8);
	struct span_ref *ref = &st->ref;
	__builtin_memcpy(&ref->sc, &st->ev.sc, sizeof(ref->sc));
	ref->flags = sample(st->ev.sc.trace_id, st->ev.has_parent, st->ev.trace_flags);
	ref->tracestate_len = st->ev.tracestate_len;
	if (ref->tracestate_len)
		__builtin_memcpy(ref->tracestate, st->ev.tracestate, TRACESTATE_MAX);
	st->inflight = inflight_begin(st->g, st->ctx, ref);
	return 0;
}

SEC("uprobe/http2Server_WriteStatus")
int server_status(struct go_regs *ctx)
{
	struct stream_key key = {.transport = go_arg(ctx, 1), .id = stream_id(go_arg(ctx, 2))};
	struct server_stream *st = bpf_map_lookup_elem(&server_streams, &key);
	if (!st)
		return 0;
	st->ev.end_ns = bpf_ktime_get_ns();
	read_status(go_arg(ctx, 3), &st->ev.code, st->ev.message, &st->ev.message_len);
	if (st->inflight)
		inflight_end(st->g, st->ctx, st->inflight);
	/* The tracestate's unused bytes stay out (userspace completes the record): the
	 * ring buffer holds that many more spans. */
	__u64 size = sizeof(st->ev) - TRACESTATE_MAX + st->ev.tracestate_len;
	if (size > sizeof(st->ev))
		size = sizeof(st->ev);
	submit(&st->ev, size);
	bpf_map_delete_elem(&server_streams, &key);
	return 0;
}

/* ---------------------------------------------------------------- client */

/* client_error records err (an interface: its itab and data words) in ev. */
static __always_inline void client_error(struct grpc_client_event *ev, __u64 tab, __u64 data)
{
	if (!tab)
		return;
	ev->error_type = read_ptr(tab + 8); /* itab.Type */
	__u64 st = read_ptr(data + off_status_Error_s);
	if (st)
		read_status(st, &ev->code, ev->message, &ev->message_len);
	struct go_string text = {};
	__u8 buf[3] = {};
	if (read_user(&text, sizeof(text), data + off_errors_errorString_s) == 0 && text.len == 3 &&
	    read_user(buf, 3, text.ptr) == 0 && buf[0] == 'E' && buf[1] == 'O' && buf[2] == 'F')
		ev->eof = 1;
}

SEC("uprobe/newClientStreamWithParams")
int client_entry(struct go_regs *ctx)
{
	if (!client_enabled)
		return 0;
	learn_app_process();
	__u64 g = go_goroutine(ctx);
	struct grpc_client_event *ev = new_entry(&client_calls, &g, &zeroes);
	if (!ev)
		return 0;
	ev->kind = EVENT_CLIENT;
	ev->start_ns = bpf_ktime_get_ns();
	__u64 cc = go_arg(ctx, 4);
	struct go_string method = {.ptr = go_arg(ctx, 5), .len = go_arg(ctx, 6)};
	ev->method_len = copy_go_string(ev->method, METHOD_MAX, &method);
	ev->target_len = read_go_string(ev->target, TARGET_MAX, cc + off_grpc_ClientConn_target);

	/* By the call's context; else, for a call made without the request's (with
	 * context.Background()) in the goroutine serving a request, by that goroutine. */
	struct span_ref *parent = find_parent(go_arg(ctx, 1), go_arg(ctx, 2), 0, g, 1);
	start_client_span(parent, &ev->sc, ev->parent_span_id, &ev->has_parent, &ev->trace_flags);
	if (propagate) {
		struct outgoing *out = new_entry(&calls_outgoing, &g, &zeroes);
		if (out)
			fill_outgoing(out, &ev->sc, sample(ev->sc.trace_id, ev->has_parent, ev->trace_flags),
				      parent ? parent->tracestate : 0, parent ? parent->tracestate_len : 0);
	}
	return 0;
}

/* own_field notes in out the header field at field if it is a trace context field
 * (the first of each): the traceparent's value, the tracestate's length, and in ts
 * where the tracestate's value is (none if it has two). A global function: verified
 * once. */
__noinline int own_field(__u64 field, struct outgoing *out, struct go_string *ts)
{
	if (!out || !ts)
		return 0;
	__u64 name = field + off_x_hpack_HeaderField_Name;
	__u64 len = read_ptr(name + 8);
	if (len != 11 && len != 10)
		return 0;
	char b[12] = {};
	bpf_probe_read_user(b, 11, (void *)read_ptr(name));
	if (b[0] != 't' || b[1] != 'r' || b[2] != 'a' || b[3] != 'c' || b[4] != 'e')
		return 0;
	struct go_string v = {};
	if (len == 11 && b[5] == 'p' && b[6] == 'a' && b[7] == 'r' && b[8] == 'e' && b[9] == 'n' && b[10] == 't') {
		if (out->app & OUTGOING_APP_TRACEPARENT)
			return 0;
		out->app |= OUTGOING_APP_TRACEPARENT;
		if (read_user(&v, sizeof(v), field + off_x_hpack_HeaderField_Value) == 0 && v.len > 0) {
			copy_go_string(out->app_traceparent, TRACEPARENT_LEN + 1, &v);
			out->app_traceparent_len = v.len > 255 ? 255 : v.len;
		}
	} else if (len == 10 && b[5] == 's' && b[6] == 't' && b[7] == 'a' && b[8] == 't' && b[9] == 'e') {
		if (out->app & OUTGOING_APP_TRACESTATE) { /* a second value: the two are not ours */
			ts->len = 0;
			return 0;
		}
		out->app |= OUTGOING_APP_TRACESTATE;
		if (read_user(ts, sizeof(*ts), field + off_x_hpack_HeaderField_Value) == 0 && ts->len > 0)
			out->app_tracestate_len = ts->len > 0xffff ? 0xffff : ts->len;
	}
	return 0;
}

/* own_context notes in out the trace context fields among the n header fields at hf
 * that the app put there itself (forwarded metadata, or its own): which, the first
 * value of each as the wire looks for it, and whether the tracestate is ours. A global
 * function: verified once. */
__noinline int own_context(__u64 hf, __u64 n, struct outgoing *out)
{
	if (!out)
		return 0;
	__u64 size = (off_x_hpack_HeaderField_Sensitive + 8) & ~7ULL; /* the last field, padded */
	if (size > 64)
		return 0;
	struct go_string ts = {};
	for (int i = 0; i < HEADERS_MAX; i++) {
		if (i >= n)
			break;
		own_field(hf + i * size, out, &ts);
	}
	if (ts.len > 0 && tracestate_is_ours(out, ts.ptr, ts.len))
		out->app |= OUTGOING_APP_TRACESTATE_OURS;
	return 0;
}

/* The call's header fields are made (or not: an error): its traceparent moves under
 * their array, saying which trace context fields the app put there itself (the wire
 * gives those ours in place). */
SEC("uprobe/http2Client_createHeaderFields_return")
int client_fields(struct go_regs *ctx)
{
	__u64 g = go_goroutine(ctx);
	struct outgoing *out = bpf_map_lookup_elem(&calls_outgoing, &g);
	if (!out)
		return 0;
	__u64 hf = go_arg(ctx, 1), n = go_arg(ctx, 2);
	if (!hf)
		return 0;
	if (go_arg(ctx, 4)) { /* an error */
		bpf_map_delete_elem(&fields_outgoing, &hf);
		return 0;
	}
	out->app = 0;
	out->app_traceparent_len = 0;
	out->app_tracestate_len = 0;
	own_context(hf, n, out);
	out->filed_ns = bpf_ktime_get_ns();
	bpf_map_update_elem(&fields_outgoing, &hf, out, BPF_ANY);
	return 0;
}

/* file_h2 files the traceparent of the header frame hdr for the writer goroutine's
 * write of its block. */
static __always_inline void file_h2(struct go_regs *ctx, __u64 hdr, __u64 off_id, __u64 off_hf)
{
	if (!hdr || off_id == OFFSET_NONE || off_hf == OFFSET_NONE)
		return;
	__u64 hf = read_ptr(hdr + off_hf);
	struct outgoing *out = bpf_map_lookup_elem(&fields_outgoing, &hf);
	if (!out)
		return;
	__u32 id = 0;
	bpf_probe_read_user(&id, sizeof(id), (void *)(hdr + off_id));
	struct h2_stream key = {.g = go_goroutine(ctx), .stream_id = id};
	out->filed_ns = bpf_ktime_get_ns(); /* the write follows now, whatever the call waited for */
	if (id)
		bpf_map_update_elem(&outgoing_h2, &key, out, BPF_ANY);
	bpf_map_delete_elem(&fields_outgoing, &hf);
}

SEC("uprobe/loopyWriter_originateStream")
int client_originate(struct go_regs *ctx)
{
	file_h2(ctx, go_arg(ctx, 3), off_transport_headerFrame_streamID, off_transport_headerFrame_hf);
	return 0;
}

SEC("uprobe/loopyWriter_clientHeaderHandler")
int client_header_handler(struct go_regs *ctx)
{
	file_h2(ctx, go_arg(ctx, 2), off_transport_clientHeaders_streamID, off_transport_clientHeaders_hf);
	return 0;
}

SEC("uprobe/newClientStreamWithParams_return")
int client_started(struct go_regs *ctx)
{
	__u64 g = go_goroutine(ctx);
	struct grpc_client_event *ev = bpf_map_lookup_elem(&client_calls, &g);
	if (!ev)
		return 0;
	__u64 stream = go_arg(ctx, 2), err_tab = go_arg(ctx, 3);
	if (err_tab || !stream) {
		ev->end_ns = bpf_ktime_get_ns();
		client_error(ev, err_tab, go_arg(ctx, 4));
		submit(ev, sizeof(*ev));
	} else {
		bpf_map_update_elem(&client_streams, &stream, ev, BPF_ANY);
	}
	bpf_map_delete_elem(&client_calls, &g);
	bpf_map_delete_elem(&calls_outgoing, &g);
	return 0;
}

SEC("uprobe/clientStream_finish")
int client_finish(struct go_regs *ctx)
{
	__u64 stream = go_arg(ctx, 1);
	void *map = &client_streams;
	__u64 key = stream;
	struct grpc_client_event *ev = bpf_map_lookup_elem(&client_streams, &stream);
	if (!ev) {
		key = go_goroutine(ctx); /* failed while being made */
		map = &client_calls;
		ev = bpf_map_lookup_elem(&client_calls, &key);
		if (!ev)
			return 0;
	}
	ev->end_ns = bpf_ktime_get_ns();
	client_error(ev, go_arg(ctx, 2), go_arg(ctx, 3));
	submit(ev, sizeof(*ev));
	bpf_map_delete_elem(map, &key);
	return 0;
}
