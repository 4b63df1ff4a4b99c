// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/* net/http server spans: two uprobe hits per request.
 *
 * Entry of net/http.serverHandler.ServeHTTP(sh, rw ResponseWriter, req *Request): the
 * request is parsed. Read method, path, host, client address, protocol, and the
 * Traceparent, Tracestate and User-Agent headers; choose the span's IDs (joining the
 * incoming trace if any); keep it all per goroutine.
 *
 * Each RET of that function: the handler has run. Read the route pattern ServeMux set
 * on the request and the status the handler wrote, and send the span to userspace. */
#include "common.h"
#include "trace.h"

struct inflight;
#define MAP_SCAN_CTX struct inflight
#include "go_maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Field offsets in the app, set by the loader from its DWARF or the offsets database.
 * Globals rather than constants: the program is loaded (and verified) while the app's
 * binary is still being analysed, and they are set before the uprobes attach. */
volatile __u64 off_req_method = 0;
volatile __u64 off_req_url = 16;
volatile __u64 off_req_proto_major = 40;
volatile __u64 off_req_proto_minor = 48;
volatile __u64 off_req_header = 56;
volatile __u64 off_req_host = 128;
volatile __u64 off_req_remote_addr = 176;
volatile __u64 off_req_pattern = OFFSET_NONE; /* Go 1.23+: Request.Pattern */
volatile __u64 off_req_pat = OFFSET_NONE;     /* Go 1.22: Request.pat (*pattern) */
volatile __u64 off_pattern_str = 0;
volatile __u64 off_url_path = 56;
volatile __u64 off_response_status = 120;
/* Set last: the uprobes may be attached before the offsets are known (the app is held
 * at the start gate meanwhile), and must do nothing until they are. */
volatile __u64 configured = 0;

#define METHOD_MAX 16
#define PATH_MAX 128
#define ROUTE_MAX 128
#define HOST_MAX 64
#define REMOTE_MAX 64
#define UA_MAX 128

struct http_server_event {
	__u64 start_ns;
	__u64 end_ns;
	struct span_context sc;
	__u8 parent_span_id[SPAN_ID_SIZE];
	__u8 trace_flags;
	__u8 has_parent;
	__u8 proto_major;
	__u8 proto_minor;
	__u16 status;
	__u16 method_len;
	__u16 path_len;
	__u16 route_len;
	__u16 host_len;
	__u16 remote_len;
	__u16 ua_len;
	__u16 tracestate_len;
	__u8 method[METHOD_MAX]; /* bytes, not NUL-terminated */
	__u8 path[PATH_MAX];
	__u8 route[ROUTE_MAX];
	__u8 host[HOST_MAX];
	__u8 remote_addr[REMOTE_MAX];
	__u8 user_agent[UA_MAX];
	__u8 tracestate[TRACESTATE_MAX];
};

/* A request between entry and return. */
struct inflight {
	struct http_server_event ev;
	__u64 req;
	__u64 resp;
	char traceparent[TRACEPARENT_LEN + 1];
	__u8 traceparent_len;
	__u8 found; /* headers found so far */
};

#define FOUND_TRACEPARENT 1
#define FOUND_TRACESTATE 2
#define FOUND_USER_AGENT 4
#define FOUND_ALL 7

/* Keyed by goroutine. An entry whose return never came (a handler that panicked) is
 * overwritten when its goroutine serves again. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct inflight);
} inflight SEC(".maps");

/* Too large for the 512-byte BPF stack: built here, then copied into inflight. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct inflight);
} scratch SEC(".maps");

const struct http_server_event *unused_event __attribute__((unused)); /* for bpf2go -type */

static __always_inline int equal(const char *a, const char *b, int n)
{
	for (int i = 0; i < n; i++)
		if (a[i] != b[i])
			return 0;
	return 1;
}

/* map_slot looks at one http.Header entry: canonical keys, first value. */
__noinline int map_slot(__u64 key, __u64 elem, struct inflight *st)
{
	if (!st)
		return 1;
	struct go_string k = {};
	if (read_user(&k, sizeof(k), key) != 0 || (k.len != 11 && k.len != 10))
		return 0;
	char name[11] = {};
	if (read_user(name, k.len == 11 ? 11 : 10, k.ptr) != 0)
		return 0;
	__u8 which = 0;
	if (k.len == 11 && equal(name, "Traceparent", 11))
		which = FOUND_TRACEPARENT;
	else if (k.len == 10 && equal(name, "Tracestate", 10))
		which = FOUND_TRACESTATE;
	else if (k.len == 10 && equal(name, "User-Agent", 10))
		which = FOUND_USER_AGENT;
	if (!which)
		return 0;

	struct go_slice values = {};
	struct go_string v = {};
	if (read_user(&values, sizeof(values), elem) != 0 || values.len < 1 || read_user(&v, sizeof(v), values.ptr) != 0)
		return 0;
	switch (which) {
	case FOUND_TRACEPARENT:
		st->traceparent_len = copy_go_string(st->traceparent, TRACEPARENT_LEN, &v);
		break;
	case FOUND_TRACESTATE:
		st->ev.tracestate_len = copy_go_string(st->ev.tracestate, TRACESTATE_MAX, &v);
		break;
	case FOUND_USER_AGENT:
		st->ev.ua_len = copy_go_string(st->ev.user_agent, UA_MAX, &v);
		break;
	}
	st->found |= which;
	return st->found == FOUND_ALL;
}

/* join_trace takes the trace ID, parent span ID and flags from the request's
 * traceparent. A global function: verified once, on its own. */
__noinline int join_trace(struct inflight *st)
{
	if (!st || st->traceparent_len != TRACEPARENT_LEN)
		return 0;
	return parse_traceparent(st->traceparent, TRACEPARENT_LEN, st->ev.sc.trace_id, st->ev.parent_span_id, &st->ev.trace_flags) == 0;
}

static __always_inline int server_entry(struct go_regs *ctx, const int swiss_maps)
{
	if (!configured)
		return 0;
	__u32 zero = 0;
	struct inflight *st = bpf_map_lookup_elem(&scratch, &zero);
	if (!st)
		return 0;
	__builtin_memset(st, 0, sizeof(*st));
	st->ev.start_ns = bpf_ktime_get_ns();
	st->resp = go_arg(ctx, 3); /* rw's data word: *http.response for HTTP/1 */
	st->req = go_arg(ctx, 4);
	__u64 req = st->req;

	st->ev.method_len = read_go_string(st->ev.method, METHOD_MAX, req + off_req_method);
	st->ev.host_len = read_go_string(st->ev.host, HOST_MAX, req + off_req_host);
	st->ev.remote_len = read_go_string(st->ev.remote_addr, REMOTE_MAX, req + off_req_remote_addr);
	__u64 url = read_ptr(req + off_req_url);
	if (url)
		st->ev.path_len = read_go_string(st->ev.path, PATH_MAX, url + off_url_path);
	st->ev.proto_major = (__u8)read_ptr(req + off_req_proto_major);
	st->ev.proto_minor = (__u8)read_ptr(req + off_req_proto_minor);

	scan_string_map(read_ptr(req + off_req_header), st, swiss_maps);

	if (join_trace(st)) {
		st->ev.has_parent = 1;
	} else {
		random_bytes(st->ev.sc.trace_id, TRACE_ID_SIZE);
		st->ev.tracestate_len = 0; /* tracestate without a valid traceparent is void */
	}
	random_bytes(st->ev.sc.span_id, SPAN_ID_SIZE);

	__u64 g = go_goroutine(ctx);
	bpf_map_update_elem(&inflight, &g, st, BPF_ANY);
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
	struct inflight *st = bpf_map_lookup_elem(&inflight, &g);
	if (!st)
		return 0;
	st->ev.end_ns = bpf_ktime_get_ns();
	__u64 req = st->req;

	/* Only an HTTP/1 ResponseWriter is an *http.response. A handler that wrote no
	 * header gets 200 when ServeHTTP returns. */
	if (st->ev.proto_major == 1) {
		__u64 status = read_ptr(st->resp + off_response_status);
		st->ev.status = status ? (__u16)status : 200;
	}
	if (off_req_pattern != OFFSET_NONE) {
		st->ev.route_len = read_go_string(st->ev.route, ROUTE_MAX, req + off_req_pattern);
	} else if (off_req_pat != OFFSET_NONE) {
		__u64 pat = read_ptr(req + off_req_pat);
		if (pat)
			st->ev.route_len = read_go_string(st->ev.route, ROUTE_MAX, pat + off_pattern_str);
	}
	submit(&st->ev, sizeof(st->ev));
	bpf_map_delete_elem(&inflight, &g);
	return 0;
}
