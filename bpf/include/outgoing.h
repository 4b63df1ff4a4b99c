/* What goes on the wire: the trace context the app's client spans are to send, filed
 * by the libraries' uprobes, read by the socket programs (probes/wire), which insert it
 * into the request as it is written. Maps shared by every object of one app
 * (kit.SharedMaps), like spans.h's. */
#ifndef __OUTGOING_H
#define __OUTGOING_H

#include "trace.h"

#define OUTGOING_METHOD_MAX 16

/* What the request already holds, as the app wrote it (outgoing.app): the wire gives
 * those headers ours in place instead of adding a second of each. */
#define OUTGOING_APP_TRACEPARENT 1
#define OUTGOING_APP_TRACESTATE 2
#define OUTGOING_APP_TRACESTATE_OURS 4 /* its one value is ours (the parent's, forwarded) */

/* A traceparent (and tracestate) on its way to the wire. */
struct outgoing {
	__u8 traceparent[TRACEPARENT_LEN + 1];
	__u8 method_len; /* HTTP/1: the request line begins "METHOD " */
	__u8 app;        /* OUTGOING_APP_*: headers the app wrote itself (forwarded or its own) */
	__u16 tracestate_len;
	__u8 method[OUTGOING_METHOD_MAX];
	__u8 tracestate[TRACESTATE_MAX];
	__u64 filed_ns;
	/* The app's own (app), as it wrote them: HTTP/2's encoder may have coded them, and
	 * the wire finds its fields by their values. */
	__u8 app_traceparent[TRACEPARENT_LEN + 1]; /* the first value's first bytes */
	__u8 app_traceparent_len;                  /* its length, up to 255 */
	__u16 app_tracestate_len;                  /* the first value's length */
	__u8 _pad[4];
	__u64 app_tracestate; /* the one value's address in the app, for the HTTP/2 writer's probe to compare (0: none) */
};

/* HTTP/1: by the goroutine whose next write to a socket is the request. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, struct outgoing);
} outgoing_http1 SEC(".maps");

/* HTTP/2: by the goroutine that writes the request's header block and its stream ID;
 * stream 0 stands for "the next header block this goroutine writes", for writers that
 * learn the ID only as they write (net/http's writes a block and flushes it at once,
 * under the connection's write lock). */
struct h2_stream {
	__u64 g;
	__u32 stream_id;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct h2_stream);
	__type(value, struct outgoing);
} outgoing_h2 SEC(".maps");

/* The app's process ID as the kernel knows it (the launcher may sit in a PID namespace
 * of its own): learned from the uprobes, which only the app hits; the socket programs
 * take only the connections it makes. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} app_process SEC(".maps");

static __always_inline void learn_app_process(void)
{
	__u32 zero = 0;
	__u32 *tgid = bpf_map_lookup_elem(&app_process, &zero);
	if (tgid && !*tgid)
		*tgid = bpf_get_current_pid_tgid() >> 32;
}

/* fill_outgoing fills out with the traceparent naming the span sc, and the tracestate
 * (the parent's) if there is one. */
static __always_inline void fill_outgoing(struct outgoing *out, const struct span_context *sc, __u8 flags,
					  const __u8 *tracestate, __u16 tracestate_len)
{
	format_traceparent(out->traceparent, sc->trace_id, sc->span_id, flags);
	if (tracestate && tracestate_len) {
		out->tracestate_len = tracestate_len;
		__builtin_memcpy(out->tracestate, tracestate, TRACESTATE_MAX);
	}
	out->filed_ns = bpf_ktime_get_ns();
}

/* A comparison of a value in the app's memory with out's tracestate, 8 bytes a step. */
struct ours_compare {
	struct outgoing *out;
	__u64 ptr;
	__u32 len;
	__u8 differ;
};

static long ours_step(__u32 i, void *arg)
{
	struct ours_compare *c = arg;
	__u64 at = (__u64)i * 8;
	if (at >= c->len || at > TRACESTATE_MAX - 8)
		return 1;
	__u64 mine = 0, theirs = 0;
	__u32 n = c->len - at < 8 ? c->len - at : 8;
	if (bpf_probe_read_user(&theirs, n & 15, (void *)(c->ptr + at)) != 0) {
		c->differ = 1;
		return 1;
	}
	__builtin_memcpy(&mine, &c->out->tracestate[at], 8);
	if (n < 8)
		mine &= (1ULL << (n * 8)) - 1;
	if (mine != theirs) {
		c->differ = 1;
		return 1;
	}
	return 0;
}

/* tracestate_is_ours reports whether the app's tracestate value (len bytes at ptr, in
 * its memory) is out's: a proxy forwarding the caller's tracestate, which our span's
 * parent kept as it came. Then the wire need not find it: it is ours, in whatever form
 * an HTTP/2 encoder sent it. */
static __always_inline int tracestate_is_ours(struct outgoing *out, __u64 ptr, __u64 len)
{
	if (len == 0 || len != out->tracestate_len || len > TRACESTATE_MAX)
		return 0;
	struct ours_compare c = {.out = out, .ptr = ptr, .len = len};
	bpf_loop((len + 7) / 8, ours_step, &c, 0);
	return !c.differ;
}

#endif
