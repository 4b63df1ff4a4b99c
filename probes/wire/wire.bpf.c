// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/* The wire: the trace context of the app's client spans goes into its outgoing
 * requests as the kernel sends them, without a write to the app's memory (kernel
 * lockdown forbids bpf_probe_write_user).
 *
 * sockops adds the app's outgoing TCP connections to a sockhash; sk_msg on that
 * sockhash sees every write to them. The libraries' uprobes file what a request is to
 * carry (outgoing.h). A connection whose first write is the HTTP/2 client preface is
 * HTTP/2 from then on; any other, HTTP/1.
 *
 * HTTP/1: a write by a goroutine with a traceparent waiting that begins with the
 * expected request line gets "traceparent: ...\r\n" (and tracestate) after that line.
 *
 * HTTP/2: the program reads the connection frame by frame, and the kernel keeps its
 * place: each run's verdict covers the frames it read (bpf_msg_apply_bytes), across
 * writes, and the program runs again where the next frame begins; a run reads up to
 * H2_FRAMES_PER_RUN frames, inserting where it must, so that a write normally goes out
 * in one piece, as the app made it. A frame header (or
 * the preface) split across writes is kept in the socket's local storage until its
 * other bytes come: the kernel's corking holds bytes back, and on this kernel a corked
 * message was seen to come out corrupted, so it is never used. The last frame of a
 * request's header block (HEADERS or CONTINUATION with END_HEADERS, on a client
 * stream) that has a traceparent filed for its writer goroutine and stream gets it
 * appended, as a literal field without indexing (RFC 7541 6.2.2: neither side's HPACK
 * table changes), before any padding, and the frame's length rewritten. A frame the
 * insertion would make larger than 16384 bytes (the smallest maximum frame size a peer
 * may set), or whose bytes are not all in the write, is left as it is, and counted.
 * The socket's local storage also holds the bytes to insert: writes to one socket are
 * serialized, so no two runs share it.
 *
 * Every run sets the apply bytes: the kernel keeps them in the message between runs
 * over it, and a stale value would let bytes through unread. */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

#include "go_abi.h"
#include "outgoing.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by the loader last: nothing is changed before. */
volatile __u64 wire_enabled = 0;
/* The app's process ID in the launcher's PID namespace, and that namespace (its nsfs
 * device and inode): sockops knows the app's connections from its first, made before
 * any probe of the app ran. Unset (0): by the ID the probes learned (outgoing.h). */
volatile __u64 app_pid = 0;
volatile __u64 pid_ns_dev = 0;
volatile __u64 pid_ns_ino = 0;

/* ---------------------------------------------------------------- counts */

enum wire_count {
	COUNT_HTTP1_INSERTED,
	COUNT_H2_INSERTED,
	COUNT_H2_TOO_LARGE, /* the frame would exceed 16384 bytes: left as it is */
	COUNT_H2_FAILED,    /* the kernel refused to add bytes, or the context was malformed */
	COUNT_H2_LATE,      /* filed more than WAIT_MAX_NS before its write: dropped */
	COUNT_H2_SPLIT,     /* the frame's bytes came in more than one write: left as it is */
	COUNT_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} wire_counts SEC(".maps");

static __always_inline void count(__u32 what)
{
	__u64 *n = bpf_map_lookup_elem(&wire_counts, &what);
	if (n)
		*n += 1;
}

/* ---------------------------------------------------------------- connections */

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

/* in_app reports whether the current process is the app. */
static __always_inline int in_app(void)
{
	if (app_pid) {
		struct bpf_pidns_info ns = {};
		return bpf_get_ns_current_pid_tgid(pid_ns_dev, pid_ns_ino, &ns, sizeof(ns)) == 0 && ns.tgid == app_pid;
	}
	__u32 zero = 0;
	__u32 *tgid = bpf_map_lookup_elem(&app_process, &zero);
	return tgid && *tgid && (bpf_get_current_pid_tgid() >> 32) == *tgid;
}

SEC("sockops")
int app_sockops(struct bpf_sock_ops *ops)
{
	__u64 cookie;
	__u8 one = 1;
	switch (ops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB: /* in the connecting thread */
		if (in_app()) {
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

#define WAIT_MAX_NS (1000 * 1000 * 1000ULL) /* context older than this is dropped */

/* ---------------------------------------------------------------- HTTP/1 */

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
 * come padding and "\r\n". A bpf_loop callback (arg: a pointer to the insertion):
 * verified once for all the bytes. */
static long check_byte(__u32 i, void *arg)
{
	struct insertion *ins = *(struct insertion **)arg;
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

/* take_waiting takes the current goroutine's waiting traceparent, if any, into ins
 * (the socket's, which the last write may have filled). */
static __always_inline int take_waiting(struct insertion *ins)
{
	__u64 g = go_current_goroutine();
	if (!g)
		return 0;
	struct outgoing *w = bpf_map_lookup_elem(&outgoing_http1, &g);
	if (!w)
		return 0;
	int ok = bpf_ktime_get_ns() - w->filed_ns < WAIT_MAX_NS;
	ins->bad = 0;
	ins->tracestate_len = 0;
	ins->tracestate_line_len = 0;
	__builtin_memcpy(ins->traceparent, w->traceparent, TRACEPARENT_LEN);
	ins->method_len = w->method_len;
	__builtin_memcpy(ins->method, w->method, OUTGOING_METHOD_MAX);
	__u16 ts = w->tracestate_len;
	if (ins->method_len == 0 || ins->method_len >= OUTGOING_METHOD_MAX)
		ok = 0;
	else
		((__u8 *)ins->method)[ins->method_len & (OUTGOING_METHOD_MAX - 1)] = ' ';
	if (ts > 0 && ts <= TRACESTATE_MAX) {
		__builtin_memcpy(ins->tracestate_line, "tracestate: ", 12);
		__builtin_memcpy(ins->tracestate_line + 12, w->tracestate, TRACESTATE_MAX);
		ins->tracestate_len = ts;
		ins->tracestate_line_len = (12 + ts + 2 + 7) & ~7;
	}
	bpf_map_delete_elem(&outgoing_http1, &g); /* one write per traceparent */

	bpf_loop(TRACEPARENT_LEN + TRACESTATE_LINE_MAX, check_byte, &ins, 0);
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

/* insert_lines inserts the header lines of ins at offset at of the message. */
__noinline int insert_lines(struct sk_msg_md *msg, __u32 at, struct insertion *ins)
{
	if (!msg || !ins || at > LINE_MAX)
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

/* http1 inserts the traceparent (and tracestate) after the request line, built in
 * ins (the socket's storage: too large for the stack). A global function: verified
 * once, apart from the HTTP/2 path. */
__noinline int http1(struct sk_msg_md *msg, struct insertion *ins)
{
	if (!msg || !ins || !take_waiting(ins))
		return 0;
	__u32 n = msg->size < LINE_MAX ? msg->size : LINE_MAX;
	if (n < 16 || bpf_msg_pull_data(msg, 0, n, 0) != 0)
		return 0;
	int eol = request_line_end(msg, ins);
	if (eol >= 0 && insert_lines(msg, eol + 2, ins))
		count(COUNT_HTTP1_INSERTED);
	return 0;
}

/* ---------------------------------------------------------------- HTTP/2 */

#define H2_PREFACE_LEN 24 /* "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" */
#define H2_FRAME_HEADER_LEN 9
#define H2_MAX_FRAME 16384 /* SETTINGS_MAX_FRAME_SIZE's initial value, the least a peer takes */
#define H2_FRAMES_PER_RUN 12
#define H2_HEADERS 1
#define H2_CONTINUATION 9
#define H2_END_HEADERS 0x4
#define H2_PADDED 0x8

/* The fields, each 0x00 (literal without indexing, literal name), the name's length
 * and name, the value's length (7-bit prefix) and value. */
#define TRACEPARENT_FIELD_LEN (2 + 11 + 1 + TRACEPARENT_LEN)
#define TRACESTATE_FIELD_MAX (2 + 10 + 3 + TRACESTATE_MAX)
#define H2_BLOCK_MAX ((TRACEPARENT_FIELD_LEN + TRACESTATE_FIELD_MAX + 7) & ~7)

#define PROTO_UNKNOWN 0
#define PROTO_HTTP1 1 /* or anything but HTTP/2: TLS, another protocol */
#define PROTO_H2 2

/* A connection's state, in its socket's local storage. */
struct wire_socket {
	__u32 proto;
	__u32 block_len;
	__u32 preface_len; /* of the preface, bytes seen so far */
	__u32 partial_len; /* of a frame header split across writes, bytes seen so far */
	__u8 partial[8];
	/* What to insert, built before the message changes: too large for the stack. */
	union {
		__u8 block[H2_BLOCK_MAX]; /* HTTP/2: the fields */
		struct insertion ins;     /* HTTP/1: the header lines */
	};
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct wire_socket);
} wire_sockets SEC(".maps");

/* A frame header, as read, and where in the message it is. */
struct h2_frame {
	__u32 len;
	__u32 stream_id;
	__u32 off;
	__u8 type;
	__u8 flags;
};

static __always_inline int read_frame_header(struct sk_msg_md *msg, __u32 off, struct h2_frame *f)
{
	if (bpf_msg_pull_data(msg, off, off + H2_FRAME_HEADER_LEN, 0) != 0)
		return 0;
	__u8 *d = (__u8 *)(long)msg->data, *end = (__u8 *)(long)msg->data_end;
	if (d + H2_FRAME_HEADER_LEN > end)
		return 0;
	f->len = (__u32)d[0] << 16 | (__u32)d[1] << 8 | d[2];
	f->type = d[3];
	f->flags = d[4];
	f->stream_id = ((__u32)d[5] & 0x7f) << 24 | (__u32)d[6] << 16 | (__u32)d[7] << 8 | d[8];
	return 1;
}

/* filed_for returns the context filed for the header block stream's frame ends, if
 * any: by the writing goroutine and the stream, or the goroutine's next block. */
static __always_inline struct outgoing *filed_for(__u64 g, __u32 stream_id, struct h2_stream *key)
{
	key->g = g;
	key->stream_id = stream_id;
	struct outgoing *out = bpf_map_lookup_elem(&outgoing_h2, key);
	if (out)
		return out;
	key->stream_id = 0;
	return bpf_map_lookup_elem(&outgoing_h2, key);
}

struct printable {
	__u8 *s;
	__u8 bad;
};

/* printable_byte checks that byte i of a tracestate is printable ASCII. A bpf_loop
 * body: verified once, whatever the length. */
static long printable_byte(__u32 i, void *arg)
{
	struct printable *p = arg;
	if (i >= TRACESTATE_MAX)
		return 1;
	__u8 c = p->s[i];
	if (c < 0x20 || c > 0x7e) {
		p->bad = 1;
		return 1;
	}
	return 0;
}

/* build_block builds the fields to insert from out into s->block; 0 if the traceparent
 * is malformed (a malformed tracestate is left out). A global function: verified once. */
__noinline int build_block(struct wire_socket *s, struct outgoing *out)
{
	if (!s || !out)
		return 0;
	__u8 *b = s->block;
	b[0] = 0;
	b[1] = 11;
	__builtin_memcpy(b + 2, "traceparent", 11);
	b[13] = TRACEPARENT_LEN;
	__builtin_memcpy(b + 14, out->traceparent, TRACEPARENT_LEN);
	for (int i = 0; i < TRACEPARENT_LEN; i++)
		if (!hex_or_dash(b[14 + i]))
			return 0;
	s->block_len = TRACEPARENT_FIELD_LEN;

	__u32 ts = out->tracestate_len;
	if (ts == 0 || ts > TRACESTATE_MAX)
		return 1;
	struct printable p = {.s = out->tracestate};
	if (bpf_loop(ts, printable_byte, &p, 0) < 0 || p.bad)
		return 1;
	__u8 *t = b + TRACEPARENT_FIELD_LEN;
	t[0] = 0;
	t[1] = 10;
	__builtin_memcpy(t + 2, "tracestate", 10);
	__u32 prefix = 1; /* the length: 7-bit prefix, then 7 bits a byte (RFC 7541 5.1) */
	if (ts < 127) {
		t[12] = ts;
	} else if (ts - 127 < 128) {
		t[12] = 127;
		t[13] = ts - 127;
		prefix = 2;
	} else {
		t[12] = 127;
		t[13] = ((ts - 127) & 0x7f) | 0x80;
		t[14] = (ts - 127) >> 7;
		prefix = 3;
	}
	__builtin_memcpy(t + 12 + prefix, out->tracestate, TRACESTATE_MAX);
	s->block_len = TRACEPARENT_FIELD_LEN + 12 + prefix + ts;
	return 1;
}

/* insert_block inserts s->block at offset at of the message, and adds its length to
 * that of the frame at offset base, whose length was len; on any failure the message
 * is left as it was. */
__noinline int insert_block(struct sk_msg_md *msg, struct wire_socket *s, __u32 at, __u32 len, __u32 base)
{
	if (!msg || !s)
		return 0;
	__u32 add = s->block_len;
	if (add == 0 || add > H2_BLOCK_MAX || at < base || at > base + H2_FRAME_HEADER_LEN + H2_MAX_FRAME)
		return 0;
	if (bpf_msg_push_data(msg, at, add, 0) != 0)
		return 0;
	if (bpf_msg_pull_data(msg, at, at + add, 0) != 0)
		goto undo;
	__u8 *p = (__u8 *)(long)msg->data, *end = (__u8 *)(long)msg->data_end;
	if (p + add > end)
		goto undo;
	/* From here every write is inside the add bytes just checked; the checks below
	 * are for the verifier. */
	__u32 c = 0;
	for (; c < H2_BLOCK_MAX / 8; c++) {
		if (c * 8 + 8 > add)
			break;
		if (p + c * 8 + 8 > end)
			goto undo;
		__builtin_memcpy(p + c * 8, &s->block[c * 8], 8);
	}
	for (__u32 i = c * 8; i < c * 8 + 8; i++) {
		if (i >= add || i >= H2_BLOCK_MAX)
			break;
		if (p + i + 1 > end)
			goto undo;
		p[i] = s->block[i];
	}
	/* The frame's new length. */
	if (bpf_msg_pull_data(msg, base, base + 3, 0) != 0)
		goto undo;
	p = (__u8 *)(long)msg->data;
	end = (__u8 *)(long)msg->data_end;
	if (p + 3 > end)
		goto undo;
	len += add;
	p[0] = len >> 16;
	p[1] = len >> 8;
	p[2] = len;
	return 1;
undo:
	bpf_msg_pop_data(msg, at, add, 0);
	return 0;
}

/* h2_block_end handles the frame f, which ends a client stream's header
 * block with a context filed for it (under key): it inserts the context, or leaves the
 * frame as it is, and returns where the frame now ends. A global function: verified
 * once, not in each of the frame walk's iterations. */
__noinline __u32 h2_block_end(struct sk_msg_md *msg, struct wire_socket *s, struct h2_frame *f, struct h2_stream *key,
			      struct outgoing *out)
{
	if (!msg || !s || !f || !key || !out)
		return 0;
	__u32 base = f->off, end = base + H2_FRAME_HEADER_LEN + f->len;
	if (bpf_ktime_get_ns() - out->filed_ns > WAIT_MAX_NS) {
		count(COUNT_H2_LATE);
		goto unchanged;
	}
	if (f->len + TRACEPARENT_FIELD_LEN > H2_MAX_FRAME) {
		count(COUNT_H2_TOO_LARGE);
		goto unchanged;
	}
	if (end > msg->size) { /* the rest comes with a later write */
		count(COUNT_H2_SPLIT);
		goto unchanged;
	}
	__u32 pad = 0;
	if (f->type == H2_HEADERS && (f->flags & H2_PADDED)) {
		if (f->len < 1 || bpf_msg_pull_data(msg, base + H2_FRAME_HEADER_LEN, base + H2_FRAME_HEADER_LEN + 1, 0) != 0)
			goto failed;
		__u8 *d = (__u8 *)(long)msg->data, *dend = (__u8 *)(long)msg->data_end;
		if (d + 1 > dend)
			goto failed;
		pad = d[0];
		if (pad >= f->len)
			goto failed; /* malformed: the peer will say so, not us */
	}
	if (!build_block(s, out))
		goto failed;
	if (f->len + s->block_len > H2_MAX_FRAME)
		s->block_len = TRACEPARENT_FIELD_LEN; /* the traceparent fits without the tracestate */
	bpf_map_delete_elem(&outgoing_h2, key);
	__u32 add = s->block_len;
	if (!insert_block(msg, s, end - pad, f->len, base)) {
		count(COUNT_H2_FAILED);
		return end;
	}
	count(COUNT_H2_INSERTED);
	return end + add;
failed:
	count(COUNT_H2_FAILED);
unchanged:
	bpf_map_delete_elem(&outgoing_h2, key);
	return end;
}

/* split_header completes the frame header the previous write ended in with the first
 * bytes of this one, into f; it returns how many of this message's bytes it took, 0 if
 * the header is still incomplete (they are kept), -1 on failure. */
static __always_inline int split_header(struct sk_msg_md *msg, struct wire_socket *s, struct h2_frame *f)
{
	__u32 have = s->partial_len, size = msg->size;
	if (have == 0 || have >= H2_FRAME_HEADER_LEN)
		return -1;
	__u32 need = H2_FRAME_HEADER_LEN - have;
	__u32 take = size < need ? size : need;
	if (take == 0 || take > 8 || bpf_msg_pull_data(msg, 0, take, 0) != 0)
		return -1;
	__u8 *d = (__u8 *)(long)msg->data, *end = (__u8 *)(long)msg->data_end;
	__u8 h[H2_FRAME_HEADER_LEN] = {};
	for (int i = 0; i < H2_FRAME_HEADER_LEN; i++) {
		if (i < have) {
			h[i] = s->partial[i & 7];
		} else {
			__u32 j = i - have;
			if (j >= take)
				break;
			if (d + j + 1 > end)
				return -1;
			h[i] = d[j];
		}
	}
	if (take < need) { /* still not all of it */
		for (int i = 0; i < 8; i++)
			if (i >= have && i < have + take)
				s->partial[i] = h[i];
		s->partial_len = have + take;
		return 0;
	}
	s->partial_len = 0;
	f->len = (__u32)h[0] << 16 | (__u32)h[1] << 8 | h[2];
	f->type = h[3];
	f->flags = h[4];
	f->stream_id = ((__u32)h[5] & 0x7f) << 24 | (__u32)h[6] << 16 | (__u32)h[7] << 8 | h[8];
	return take;
}

/* keep_partial keeps the message's last bytes, from off, the start of a frame header
 * the next write completes. */
static __always_inline int keep_partial(struct sk_msg_md *msg, struct wire_socket *s, __u32 off)
{
	__u32 n = msg->size - off;
	if (n == 0 || n >= H2_FRAME_HEADER_LEN || bpf_msg_pull_data(msg, off, off + n, 0) != 0)
		return 0;
	__u8 *d = (__u8 *)(long)msg->data, *end = (__u8 *)(long)msg->data_end;
	for (int i = 0; i < 8; i++) {
		if (i >= n)
			break;
		if (d + i + 1 > end)
			return 0;
		s->partial[i] = d[i];
	}
	s->partial_len = n;
	return 1;
}

/* is_block_end reports whether f ends a client stream's header block. */
static __always_inline int is_block_end(struct h2_frame *f)
{
	return (f->type == H2_HEADERS || f->type == H2_CONTINUATION) && (f->flags & H2_END_HEADERS) &&
	       (f->stream_id & 1);
}

/* h2 reads the frames that begin at offset off, up to H2_FRAMES_PER_RUN of them, and
 * sets the verdict's reach to where it stopped reading. */
__noinline int h2(struct sk_msg_md *msg, struct wire_socket *s, __u32 off)
{
	if (!msg || !s)
		return 0;
	__u32 size = msg->size;
	__u64 g = go_current_goroutine();
	struct h2_frame f = {};
	struct h2_stream key = {};
	if (s->partial_len) {
		int took = split_header(msg, s, &f);
		if (took < 0) {
			s->proto = PROTO_HTTP1; /* cannot keep the place: leave the connection alone */
			return 0;
		}
		if (took == 0)
			return 0; /* the whole message was header bytes, kept */
		/* Its length went out with the last write: a context for it cannot go in. */
		if (is_block_end(&f) && g && filed_for(g, f.stream_id, &key)) {
			count(COUNT_H2_SPLIT);
			bpf_map_delete_elem(&outgoing_h2, &key);
		}
		off = took + f.len;
	}
	for (int i = 0; i < H2_FRAMES_PER_RUN; i++) {
		if (off >= size)
			break;
		if (size - off < H2_FRAME_HEADER_LEN) {
			if (!keep_partial(msg, s, off)) {
				s->proto = PROTO_HTTP1;
				return 0;
			}
			off = size;
			break;
		}
		if (!read_frame_header(msg, off, &f)) {
			s->proto = PROTO_HTTP1;
			return 0;
		}
		if (is_block_end(&f) && g) {
			struct outgoing *out = filed_for(g, f.stream_id, &key);
			if (out) { /* the message may grow: its size is read again */
				f.off = off;
				off = h2_block_end(msg, s, &f, &key, out);
				size = msg->size;
				continue;
			}
		}
		off += H2_FRAME_HEADER_LEN + f.len;
	}
	bpf_msg_apply_bytes(msg, off);
	return 0;
}

static const char h2_preface[32] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* preface returns how many bytes of the HTTP/2 client preface the message's first
 * bytes complete, after the seen bytes of an earlier write; -1 if they differ. */
static __always_inline int preface(struct sk_msg_md *msg, __u32 seen)
{
	if (seen >= H2_PREFACE_LEN)
		return -1;
	__u32 want = H2_PREFACE_LEN - seen;
	__u32 n = msg->size < want ? msg->size : want;
	if (n == 0 || bpf_msg_pull_data(msg, 0, n, 0) != 0)
		return -1;
	__u8 *d = (__u8 *)(long)msg->data, *end = (__u8 *)(long)msg->data_end;
	for (int i = 0; i < H2_PREFACE_LEN; i++) {
		if (i >= n)
			break;
		__u32 j = seen + i;
		asm volatile("" : "+r"(j)); /* the clamp below stays: the verifier needs it */
		j &= 31;
		if (d + i + 1 > end || d[i] != (__u8)h2_preface[j])
			return -1;
	}
	return n;
}

SEC("sk_msg")
int inject(struct sk_msg_md *msg)
{
	if (!wire_enabled)
		return SK_PASS;
	bpf_msg_apply_bytes(msg, 0);
	struct bpf_sock *sk = msg->sk;
	if (!sk)
		return SK_PASS;
	struct wire_socket *s = bpf_sk_storage_get(&wire_sockets, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!s)
		return SK_PASS;
	__u32 off = 0;
	if (s->proto == PROTO_UNKNOWN) {
		int n = preface(msg, s->preface_len);
		if (n < 0) {
			s->proto = PROTO_HTTP1;
		} else if (s->preface_len + n < H2_PREFACE_LEN) { /* the rest comes with the next write */
			s->preface_len += n;
			return SK_PASS;
		} else {
			s->proto = PROTO_H2;
			off = n;
		}
	}
	if (s->proto == PROTO_H2)
		h2(msg, s, off);
	else
		http1(msg, &s->ins);
	return SK_PASS;
}
