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
 * expected request line gets "traceparent: ...\r\n" (and tracestate) after that line,
 * unless the app wrote its own: then the head is read as it is written, across writes,
 * and those lines get our values in place (below).
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
 * Fields the app wrote itself get ours in place (below). HTTP/2 is a program of its
 * own, inject_h2, which inject hands the write to (a tail call): each is verified
 * within its budget.
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
#include "hpack.h"

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
	COUNT_HTTP1_REPLACED,   /* the app's traceparent lines that got ours */
	COUNT_HTTP1_TRACESTATE, /* the app's tracestate lines that got ours (or were emptied) */
	COUNT_HTTP1_SPLIT,      /* the app's lines split across writes: left as they were */
	COUNT_HTTP1_MISSED,     /* the app's lines not found in what is read, or not amended */
	COUNT_H2_REPLACED,      /* the app's traceparent fields that got ours */
	COUNT_H2_TRACESTATE,    /* the app's tracestate fields that got ours (or nothing) */
	COUNT_H2_NOT_FOUND,     /* the app's traceparent, not a literal in the block's one frame: left */
	COUNT_H2_UNSAFE,        /* the app's fields whose value would grow in the peer's table: left */
	COUNT_H2_TS_KEPT,       /* the app's tracestate, not ours and its name indexed: left */
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
/* The app's own header lines are looked for in the request's head: up to this many
 * bytes of each write, over up to HEAD_WRITES_MAX writes (net/http writes a head in
 * 4 KiB pieces), HEAD_LINES_MAX lines of ours in one write. */
#define HEAD_READ_MAX 16384
#define HEAD_WRITES_MAX 16
#define HEAD_LINES_MAX 4

/* The header lines to insert, built and checked before anything is changed: only
 * well-formed header lines ever reach the wire, whatever the map held. */
struct insertion {
	__u8 traceparent[TRACEPARENT_LEN];
	__u8 method_len;
	__u64 method[2]; /* "METHOD ", zero-padded: the request line's first bytes */
	__u16 tracestate_line_len; /* 0, or a multiple of 8 */
	__u16 tracestate_len;
	__u8 bad; /* BAD_*: a byte that may not be sent */
	__u8 app; /* OUTGOING_APP_*: lines the app wrote, which get ours in place */
	__u8 tracestate_line[TRACESTATE_LINE_MAX];
};

#define BAD_TRACEPARENT 1
#define BAD_TRACESTATE 2

/* Where reading a request head stands at the end of a write, for the next. */
#define LINE_START 0   /* the next byte begins a line */
#define LINE_OTHER 1   /* inside a line that is none of ours */
#define LINE_PARTIAL 2 /* inside a line whose first bytes (head.partial) may name ours */
#define LINE_SPLIT 3   /* inside a line of ours begun in an earlier write: left as written */
#define LINE_CR 4      /* after the '\r' of the empty line that ends the head */

/* A line of ours the app wrote: its value's bytes in the current write. */
struct line {
	__u32 start;
	__u32 end;
	__u8 kind; /* OUTGOING_APP_* */
	__u8 keep; /* the app's tracestate lines so far say what ours does */
	__u16 src; /* a tracestate line gets ours from this byte on */
};

/* A request head the app wrote trace context lines into, read across its writes. */
struct head {
	__u8 open;        /* it goes on in the next write */
	__u8 writes;      /* writes read so far */
	__u8 state;       /* LINE_* */
	__u8 partial_len; /* bytes in partial */
	__u8 seen;        /* OUTGOING_APP_* lines found (replaced or not) */
	__u8 ts_done;     /* our tracestate went out in an app's line: later lines are emptied */
	__u16 ts_matched; /* bytes of our tracestate the app's lines so far equal, with commas */
	__u8 partial[16];
	__u32 nlines;     /* in lines */
	struct line lines[HEAD_LINES_MAX]; /* found in the current write */
};

/* A connection's HTTP/1 state: what the current request is to carry. */
struct http1 {
	struct insertion ins;
	struct head head;
};

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
	ins->app = w->app;
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

/* our_tracestate is the length of the tracestate we send (0: none). */
static __always_inline __u32 our_tracestate(struct insertion *ins)
{
	__u32 ts = ins->tracestate_line_len ? ins->tracestate_len : 0;
	return ts <= TRACESTATE_MAX ? ts : 0;
}

/* first_byte returns the offset of the first byte equal to c in the message's first
 * LINE_MAX bytes, or -1. It looks at a word at a time: a byte at a time, the verifier
 * would walk 500 iterations, each with its own way out. A global function: verified
 * once, on its own, whatever state its callers are in. */
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

/* insert_lines inserts, at offset at of the message, the traceparent line unless the
 * app wrote one (ours then replaces its value), and the tracestate line unless it
 * wrote one or we have none. */
__noinline int insert_lines(struct sk_msg_md *msg, __u32 at, struct insertion *ins)
{
	if (!msg || !ins || at > LINE_MAX)
		return 0;
	__u32 ts_len = ins->tracestate_line_len;
	if (ts_len > TRACESTATE_LINE_MAX || (ins->app & OUTGOING_APP_TRACESTATE))
		ts_len = 0;
	__u32 tp_len = ins->app & OUTGOING_APP_TRACEPARENT ? 0 : TRACEPARENT_LINE_LEN;
	__u32 add = tp_len + ts_len;
	if (add == 0)
		return 0;
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
	if (tp_len) {
		if (p + TRACEPARENT_LINE_LEN > end)
			return 0;
		__builtin_memcpy(p, "traceparent: ", 13);
		__builtin_memcpy(p + 13, ins->traceparent, TRACEPARENT_LEN);
		p[13 + TRACEPARENT_LEN] = '\r';
		p[14 + TRACEPARENT_LEN] = '\n';
		p += TRACEPARENT_LINE_LEN;
	}
	for (__u32 c = 0; c < TRACESTATE_LINE_MAX / 8; c++) {
		if (c * 8 >= ts_len)
			break;
		__u8 *q = p + c * 8;
		if (q + 8 > end)
			break;
		__builtin_memcpy(q, &ins->tracestate_line[c * 8], 8);
	}
	return tp_len != 0;
}

/* ---- The app's own lines: found in the head as it is written, given ours in place. */

/* Reading a write of a request head, one bpf_loop step at a time. Scalars only: the
 * global functions it is given to may write any of it, as far as the verifier knows. */
struct scan {
	__u32 pos;    /* the next byte to look at */
	__u32 n;      /* bytes of the message read: [0, n) is pulled */
	__u32 size;   /* of the message */
	__u32 vstart; /* of the current line's value, if the line is ours */
	__u8 kind;    /* of the current line: OUTGOING_APP_*, or 0 */
	__u8 stop;    /* SCAN_* */
	__u8 carried; /* h->state is set for the next write */
	__u8 _pad;
};

/* What each step is given: kept on the stack of the function that loops, apart from
 * the scan, so that the verifier keeps knowing msg for the context it is. */
struct scan_loop {
	struct sk_msg_md *msg;
	struct head *h;
	struct scan *sc;
};

#define SCAN_MORE 0    /* the head goes on in the next write */
#define SCAN_END 1     /* the head ended in this write */
#define SCAN_GIVE_UP 2 /* the rest of the head cannot be read: left as written */

/* An offset into what is read, as the verifier sees it: below 32 KiB. The mask is an
 * instruction of its own, so that the bound the verifier checks is on the register
 * used. */
static __always_inline __u64 clamp_off(__u64 v)
{
	asm volatile("%0 &= 0x7fff" : "+r"(v));
	return v;
}

#define WORD(a, b, c, d, e, f, g, h)                                                                               \
	((__u64)(a) | (__u64)(b) << 8 | (__u64)(c) << 16 | (__u64)(d) << 24 | (__u64)(e) << 32 | (__u64)(f) << 40 |  \
	 (__u64)(g) << 48 | (__u64)(h) << 56)

/* name_kind tells a header line's first 12 bytes (as two little-endian words) for
 * "traceparent:" or "tracestate:", in any case. OR-ing 0x20 lowers letters; the only
 * other bytes it could make match are control characters, which are in no field name. */
static __always_inline __u8 name_kind(__u64 a, __u32 b)
{
	a |= 0x2020202020202020ULL;
	b |= 0x20202020;
	if (a == WORD('t', 'r', 'a', 'c', 'e', 'p', 'a', 'r') && b == ('e' | 'n' << 8 | 't' << 16 | ':' << 24))
		return OUTGOING_APP_TRACEPARENT;
	if (a == WORD('t', 'r', 'a', 'c', 'e', 's', 't', 'a') && (b & 0xffffff) == ('t' | 'e' << 8 | ':' << 16))
		return OUTGOING_APP_TRACESTATE;
	return 0;
}

/* begin_value notes that the current line is ours (kind), its name ending at off:
 * its value begins after the optional whitespace there. */
__noinline int begin_value(struct sk_msg_md *msg, struct scan *sc, struct head *h, __u32 kind, __u32 off)
{
	if (!msg || !sc || !h)
		return 0;
	__u8 *data = (__u8 *)(long)msg->data, *end = (__u8 *)(long)msg->data_end;
	sc->kind = kind;
	h->seen |= kind;
	for (int i = 0; i < 4; i++) {
		if (off >= sc->n)
			break;
		__u8 *c = data + clamp_off(off);
		if (c + 1 > end || (*c != ' ' && *c != '\t'))
			break;
		off++;
	}
	sc->vstart = off;
	sc->pos = off;
	return 0;
}

/* line_start looks at the line that begins at offset l: the empty line that ends the
 * head, one of ours, or another. A global function: verified once. */
__noinline int line_start(struct sk_msg_md *msg, struct scan *sc, struct head *h, __u32 l)
{
	if (!msg || !sc || !h)
		return 0;
	__u8 *data = (__u8 *)(long)msg->data, *end = (__u8 *)(long)msg->data_end;
	sc->kind = 0;
	sc->pos = sc->n; /* unless read on below */
	if (l >= sc->size) { /* it begins with the next write */
		h->state = LINE_START;
		sc->carried = 1;
		return 0;
	}
	if (l >= sc->n)
		goto give_up;
	__u8 *p = data + clamp_off(l);
	if (p + 2 > end) {
		if (p + 1 > end)
			goto give_up;
		if (p[0] == '\r') { /* its '\n' comes with the next write */
			h->state = LINE_CR;
			sc->carried = 1;
			return 0;
		}
	} else if (p[0] == '\r') {
		if (p[1] != '\n')
			goto give_up;
		sc->stop = SCAN_END;
		return 0;
	}
	if (l + 12 > sc->size) { /* its name may go on in the next write: keep its first bytes */
		if (sc->n < sc->size)
			goto give_up;
		__u32 have = sc->size - l;
		for (int i = 0; i < 11; i++) {
			if (i >= have)
				break;
			if (p + i + 1 > end)
				goto give_up;
			if (p[i] == '\n') { /* a short line: none of ours; read on from it */
				sc->pos = l;
				return 0;
			}
			h->partial[i] = p[i];
		}
		h->partial_len = have;
		h->state = LINE_PARTIAL;
		sc->carried = 1;
		return 0;
	}
	if (p + 12 > end)
		goto give_up;
	__u8 kind = name_kind(*(__u64 *)p, *(__u32 *)(p + 8));
	if (kind)
		return begin_value(msg, sc, h, kind, l + (kind == OUTGOING_APP_TRACEPARENT ? 12 : 11));
	sc->pos = l;
	return 0;
give_up:
	sc->stop = SCAN_GIVE_UP;
	return 0;
}

/* newline notes that the current line ends at the '\n' at offset k (a line of ours
 * is listed in h->lines), and looks at the next. A global function: verified once. */
__noinline int newline(struct sk_msg_md *msg, struct scan *sc, struct head *h, __u32 k)
{
	if (!msg || !sc || !h)
		return 0;
	if (sc->kind) {
		__u8 *data = (__u8 *)(long)msg->data, *end = (__u8 *)(long)msg->data_end;
		__u32 e = k;
		if (k >= 1) {
			__u8 *q = data + clamp_off(k - 1);
			if (q + 1 <= end && *q == '\r')
				e = k - 1;
		}
		__u32 at = h->nlines;
		if (at < HEAD_LINES_MAX) {
			struct line *line = &h->lines[at & (HEAD_LINES_MAX - 1)];
			line->start = sc->vstart;
			line->end = e;
			line->kind = sc->kind;
			line->keep = 0;
			line->src = 0;
			h->nlines = at + 1;
		} else {
			count(COUNT_HTTP1_MISSED); /* more of ours in one write than are kept: left */
		}
	}
	return line_start(msg, sc, h, k + 1);
}

/* scan_step looks for the next '\n' from sc->pos, a word at a time. A bpf_loop
 * callback: verified once for every step. */
static long scan_step(__u32 i, void *arg)
{
	struct scan_loop *lp = arg;
	struct sk_msg_md *msg = lp->msg;
	struct scan *sc = lp->sc;
	__u8 *data = (__u8 *)(long)msg->data, *end = (__u8 *)(long)msg->data_end;
	__u32 pos = sc->pos;
	if (pos >= sc->n || sc->stop != SCAN_MORE)
		return 1;
	__u8 *p = data + clamp_off(pos);
	__u64 z;
	__u32 avail = 8;
	if (pos + 8 <= sc->n) {
		if (p + 8 > end)
			return 1;
		__u64 x = *(__u64 *)p ^ 0x0a0a0a0a0a0a0a0aULL; /* '\n' bytes become zero */
		z = (x - 0x0101010101010101ULL) & ~x & 0x8080808080808080ULL;
	} else { /* the last bytes, one at a time */
		if (p + 1 > end)
			return 1;
		avail = 1;
		z = *p == '\n' ? 0x80 : 0;
	}
	if (!z) {
		sc->pos = pos + avail;
		return 0;
	}
	__u32 b = 0; /* the lowest flagged byte is the first '\n' */
	if (!(z & 0x80808080ULL)) {
		b += 4;
		z >>= 32;
	}
	if (!(z & 0x8080ULL)) {
		b += 2;
		z >>= 16;
	}
	if (!(z & 0x80ULL))
		b += 1;
	newline(msg, sc, lp->h, pos + b);
	return 0;
}

/* continue_line resumes, at the write's first byte, the line the last write ended in;
 * 0 if the head cannot be read on. A global function: verified once. */
__noinline int continue_line(struct sk_msg_md *msg, struct scan *sc, struct head *h)
{
	if (!msg || !sc || !h)
		return 0;
	__u8 *data = (__u8 *)(long)msg->data, *end = (__u8 *)(long)msg->data_end;
	switch (h->state) {
	case LINE_START:
		line_start(msg, sc, h, 0);
		return 1;
	case LINE_CR:
		if (data + 1 > end || data[0] != '\n')
			return 0;
		sc->stop = SCAN_END;
		sc->pos = sc->n;
		return 1;
	case LINE_SPLIT:
	case LINE_OTHER:
		sc->pos = 0;
		return 1;
	case LINE_PARTIAL:
		break;
	default:
		return 0;
	}
	/* The name's first bytes came last time; the rest are here. */
	__u32 have = h->partial_len;
	if (have == 0 || have > 11)
		return 0;
	if (sc->size < 12 - have) { /* not yet: keep these too */
		for (int i = 0; i < 11; i++) {
			if (i >= sc->size || have + i >= 11)
				break;
			if (data + i + 1 > end)
				return 0;
			if (data[i] == '\n') { /* a short line, ended */
				sc->pos = 0;
				return 1;
			}
			h->partial[(have + i) & 15] = data[i];
		}
		h->partial_len = have + sc->size;
		sc->carried = 1;
		sc->pos = sc->n;
		return 1;
	}
	__u8 name[16] = {};
	for (int i = 0; i < 12; i++) {
		if (i < have) {
			name[i] = h->partial[i];
		} else {
			__u8 *q = data + clamp_off(i - have);
			if (q + 1 > end)
				return 0;
			name[i] = *q;
		}
	}
	__u8 kind = name_kind(*(__u64 *)name, *(__u32 *)(name + 8));
	if (!kind) { /* its end may be here already: read on from the first byte */
		sc->pos = 0;
		return 1;
	}
	__u32 len = kind == OUTGOING_APP_TRACEPARENT ? 12 : 11;
	begin_value(msg, sc, h, kind, have >= len ? 0 : len - have); /* the value is here: it can be replaced */
	return 1;
}

/* scan_head reads the write from offset from (0: a write that continues a head) up
 * to the end of the head or of what it reads, listing the lines of ours in h->lines.
 * A global function: verified once. */
__noinline int scan_head(struct sk_msg_md *msg, struct head *h, __u32 from)
{
	if (!msg || !h)
		return SCAN_GIVE_UP;
	h->nlines = 0;
	struct scan scan = {}, *sc = &scan;
	struct scan_loop loop = {.msg = msg, .h = h, .sc = sc};
	sc->size = msg->size;
	sc->n = sc->size < HEAD_READ_MAX ? sc->size : HEAD_READ_MAX;
	sc->stop = SCAN_MORE;
	if (from) {
		line_start(msg, sc, h, from);
	} else if (!continue_line(msg, sc, h)) {
		return SCAN_GIVE_UP;
	}
	bpf_loop(HEAD_READ_MAX, scan_step, &loop, 0);
	if (sc->stop != SCAN_MORE)
		return sc->stop;
	if (sc->n < sc->size) /* the head goes on past what is read */
		return SCAN_GIVE_UP;
	if (!sc->carried) { /* the write ended inside a line */
		if (sc->kind) { /* of ours: its first bytes went out as they were */
			count(COUNT_HTTP1_SPLIT);
			h->state = LINE_SPLIT;
		} else {
			h->state = LINE_OTHER;
		}
	}
	return SCAN_MORE;
}

/* ---- Giving the app's lines our values. */

/* What a bpf_loop over a value's bytes needs: on the caller's stack, so that the
 * steps know msg for the context it is. */
struct value_op {
	struct sk_msg_md *msg;
	struct http1 *h1;
	__u32 at;      /* the value's offset in the message (compare), 0 after a pull (write) */
	__u32 src;     /* our bytes: from this offset of the tracestate, or the traceparent */
	__u32 src_len; /* how many; then spaces */
	__u8 kind;     /* OUTGOING_APP_* */
	__u8 differ;
};

/* src_byte is byte i of what op writes: ours, then spaces. */
static __always_inline int src_byte(struct value_op *op, __u64 i)
{
	struct http1 *h1 = op->h1;
	if (i >= op->src_len)
		return ' ';
	__u64 j = i;
	if (op->kind != OUTGOING_APP_TRACEPARENT)
		j += 12 + op->src;
	asm volatile("" : "+r"(j)); /* the bound checked is the register used */
	if (op->kind == OUTGOING_APP_TRACEPARENT) {
		if (j >= TRACEPARENT_LEN)
			return -1;
		return h1->ins.traceparent[j];
	}
	if (j >= TRACESTATE_LINE_MAX)
		return -1;
	return h1->ins.tracestate_line[j];
}

/* compare_byte compares byte i of the value at op->at with ours. A bpf_loop callback. */
static long compare_byte(__u32 i, void *arg)
{
	struct value_op *op = arg;
	struct sk_msg_md *msg = op->msg;
	__u8 *data = (__u8 *)(long)msg->data, *end = (__u8 *)(long)msg->data_end;
	__u32 at = op->at + i;
	if (at > HEAD_READ_MAX)
		goto differ;
	__u8 *p = data + at;
	if (p + 1 > end || src_byte(op, i) != *p)
		goto differ;
	return 0;
differ:
	op->differ = 1;
	return 1;
}

/* put_byte writes byte i of the value, at the message's first byte after a pull. A
 * bpf_loop callback. */
static long put_byte(__u32 i, void *arg)
{
	struct value_op *op = arg;
	struct sk_msg_md *msg = op->msg;
	__u8 *data = (__u8 *)(long)msg->data, *end = (__u8 *)(long)msg->data_end;
	if (i > HEAD_READ_MAX)
		return 1;
	__u8 *p = data + i;
	int c = src_byte(op, i);
	if (p + 1 > end || c < 0) {
		op->differ = 1;
		return 1;
	}
	*p = c;
	return 0;
}

/* put_value gives the app's value of line ours (the traceparent, or the tracestate
 * from byte line->src on): in place, padded with spaces (optional whitespace,
 * which parsers drop) if ours is shorter, the line grown if it is longer. 0 if the
 * kernel refused; the value is then as it was. A global function: verified once. */
__noinline int put_value(struct sk_msg_md *msg, struct http1 *h1, struct line *line)
{
	if (!msg || !h1 || !line || line->end < line->start)
		return 0;
	__u32 start = line->start, old = line->end - line->start, kind = line->kind, src = line->src;
	if (old > HEAD_READ_MAX || start > HEAD_READ_MAX)
		return 0;
	struct value_op op = {.msg = msg, .h1 = h1, .kind = kind, .src = src};
	if (kind == OUTGOING_APP_TRACEPARENT) {
		op.src_len = TRACEPARENT_LEN;
	} else {
		__u32 ts = our_tracestate(&h1->ins);
		op.src_len = src < ts ? ts - src : 0;
	}
	__u32 total = old, grow = 0;
	if (op.src_len > old) {
		grow = op.src_len - old;
		if (bpf_msg_push_data(msg, start + old, grow, 0) != 0)
			return 0;
		total = op.src_len;
	}
	if (total == 0)
		return 1;
	if (bpf_msg_pull_data(msg, start, start + total, 0) != 0)
		goto undo;
	bpf_loop(total, put_byte, &op, 0);
	if (!op.differ)
		return 1;
	/* Cannot happen (the bytes were pulled): the line may hold a part of ours. */
undo:
	if (grow)
		bpf_msg_pop_data(msg, start + old, grow, 0);
	return 0;
}

/* decide_tracestate decides what the app's tracestate line gets, in the order the
 * lines come: the lines that, joined with commas, are our tracestate so far are kept;
 * the first that is not gets the rest of ours; any after that, nothing. */
static __always_inline void decide_tracestate(struct sk_msg_md *msg, struct http1 *h1, struct line *line)
{
	struct head *h = &h1->head;
	__u32 ts = our_tracestate(&h1->ins), at = h->ts_matched;
	__u32 len = line->end - line->start;
	if (line->end < line->start)
		len = 0;
	if (!h->ts_done && at < ts && len <= ts - at) {
		struct value_op op = {.msg = msg, .h1 = h1, .at = line->start, .src = at, .src_len = len,
				      .kind = OUTGOING_APP_TRACESTATE};
		if (len)
			bpf_loop(len, compare_byte, &op, 0);
		int comma = at + len == ts;
		if (!comma) {
			__u32 j = 12 + at + len;
			comma = j < TRACESTATE_LINE_MAX && h1->ins.tracestate_line[j] == ',';
		}
		if (len && !op.differ && comma) {
			line->keep = 1;
			h->ts_matched = at + len == ts ? ts : at + len + 1;
			return;
		}
	}
	line->src = h->ts_done ? ts : at;
	h->ts_done = 1;
}

/* apply_lines gives the lines of ours the app wrote in this write our values: decided
 * in their order, written from the last, so that a line that grows moves none still
 * to write. A global function: verified once. */
__noinline int apply_lines(struct sk_msg_md *msg, struct http1 *h1)
{
	if (!msg || !h1)
		return 0;
	struct head *h = &h1->head;
	__u32 n = h->nlines;
	if (n > HEAD_LINES_MAX)
		return 0;
	for (int i = 0; i < HEAD_LINES_MAX; i++) {
		if (i >= n)
			break;
		struct line *line = &h->lines[i];
		if (line->kind == OUTGOING_APP_TRACESTATE)
			decide_tracestate(msg, h1, line);
	}
	for (int i = HEAD_LINES_MAX - 1; i >= 0; i--) {
		if (i >= n)
			continue;
		struct line *line = &h->lines[i];
		if (line->keep || line->end < line->start)
			continue;
		if (put_value(msg, h1, line))
			count(line->kind == OUTGOING_APP_TRACEPARENT ? COUNT_HTTP1_REPLACED : COUNT_HTTP1_TRACESTATE);
		else
			count(COUNT_HTTP1_MISSED);
	}
	h->nlines = 0;
	return 0;
}

/* close_head ends reading a request head: a line of ours the app was known to have
 * written and that was never found is counted. */
static __always_inline void close_head(struct http1 *h1)
{
	struct head *h = &h1->head;
	h->open = 0;
	if (h1->ins.app & ~h->seen & (OUTGOING_APP_TRACEPARENT | OUTGOING_APP_TRACESTATE))
		count(COUNT_HTTP1_MISSED);
}

/* read_head reads (and amends) a write of a request head from offset from (0: a
 * write that continues one). */
static __always_inline void read_head(struct sk_msg_md *msg, struct http1 *h1, __u32 from)
{
	int r = scan_head(msg, &h1->head, from);
	apply_lines(msg, h1);
	if (r != SCAN_MORE)
		close_head(h1);
}

/* http1 inserts the traceparent (and tracestate) after the request line, or gives
 * the app's own lines ours; what it inserts is built in h1 (the socket's storage: too
 * large for the stack). A global function: verified once, apart from the HTTP/2 path. */
__noinline int http1(struct sk_msg_md *msg, struct http1 *h1)
{
	if (!msg || !h1)
		return 0;
	struct insertion *ins = &h1->ins;
	struct head *h = &h1->head;
	__u32 size = msg->size;
	if (h->open) { /* a head the last write did not finish */
		__u32 n = size < HEAD_READ_MAX ? size : HEAD_READ_MAX;
		if (++h->writes > HEAD_WRITES_MAX || n == 0 || bpf_msg_pull_data(msg, 0, n, 0) != 0) {
			close_head(h1);
			return 0;
		}
		read_head(msg, h1, 0);
		return 0;
	}
	if (!take_waiting(ins))
		return 0;
	__u32 n = size < LINE_MAX ? size : LINE_MAX;
	if (ins->app)
		n = size < HEAD_READ_MAX ? size : HEAD_READ_MAX;
	if (n < 16 || bpf_msg_pull_data(msg, 0, n, 0) != 0)
		return 0;
	int eol = request_line_end(msg, ins);
	if (eol < 0)
		return 0;
	if (ins->app) {
		h->open = 1;
		h->writes = 1;
		h->seen = 0;
		h->ts_done = 0;
		h->ts_matched = 0;
		h->state = LINE_START;
		read_head(msg, h1, eol + 2);
	}
	if (insert_lines(msg, eol + 2, ins))
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
#define H2_PRIORITY 0x20

/* The fields, each 0x00 (literal without indexing, literal name), the name's length
 * and name, the value's length (7-bit prefix) and value. */
#define TRACEPARENT_FIELD_LEN (2 + 11 + 1 + TRACEPARENT_LEN)
#define TRACESTATE_FIELD_MAX (2 + 10 + 3 + TRACESTATE_MAX)
#define H2_BLOCK_MAX ((TRACEPARENT_FIELD_LEN + TRACESTATE_FIELD_MAX + 7) & ~7)

#define PROTO_UNKNOWN 0
#define PROTO_HTTP1 1 /* or anything but HTTP/2: TLS, another protocol */
#define PROTO_H2 2

/* ---- The app's own fields: found in the request's header block, given ours in place.
 *
 * A proxy forwards the incoming traceparent (and tracestate); any app may set its own.
 * The block's fields are walked (RFC 7541 6) and the app's are found by their values,
 * as its encoder wrote them: raw, or Huffman-coded (Go's encoder codes every value the
 * code makes shorter, which a traceparent always is) - and by their names where those
 * are literals. An encoder that indexed the name in its dynamic table (Go's, from the
 * connection's second request on) leaves only the value to go by. A field found gets
 * ours as a raw string, the frame's length rewritten. A field the encoder added to its
 * dynamic table (literal with incremental indexing) is added to the peer's too, with
 * our value: the value may not grow, or the peer's table would evict entries the
 * app's encoder still refers to; shorter is safe (the peer then keeps more, and the
 * encoder refers only to what it has). A traceparent keeps its length. An encoder that
 * sends the app's value again refers to the entry - the peer then reads our earlier
 * value: that request, like one whose field is not found, goes as written and is
 * counted. */

#define H2_WALK_MAX 64  /* fields of a block walked */
#define H2_OWN_MAX 4    /* the app's fields found in one block */
#define HUFFMAN_TP_MAX 64

/* What a field of the app's is to get. */
#define OWN_NONE 0
#define OWN_TRACEPARENT 1  /* our traceparent */
#define OWN_TRACESTATE 2   /* our tracestate */
#define OWN_EMPTY 3        /* nothing: a tracestate after the first, or ours is none */
#define OWN_SAME 4         /* it holds our tracestate already */
#define OWN_UNSAFE 5       /* a traceparent whose value would grow in the peer's table: left */
#define OWN_UNSAFE_TS 6    /* a tracestate so */

/* A field the walk found that may be the app's. */
struct own_field {
	__u32 at;    /* its value's string (the length prefix first), from the block's start */
	__u32 len;   /* of that string, the prefix included */
	__u32 data;  /* bytes after the prefix */
	__u8 huffman;
	__u8 indexing; /* literal with incremental indexing */
	__u8 name;     /* NAME_*: what a literal name says */
	__u8 own;      /* OWN_*: what it gets */
};

#define NAME_INDEXED 0 /* in a table: only the value tells */
#define NAME_OTHER 1
#define NAME_TRACEPARENT 2
#define NAME_TRACESTATE 3

/* HTTP/2 state for the app's own fields, in the socket's storage. */
struct h2_own {
	__u8 tp_huffman[HUFFMAN_TP_MAX];  /* the app's traceparent, Huffman-coded */
	__u8 ts_huffman[TRACESTATE_MAX];  /* our tracestate, Huffman-coded */
	__u32 tp_huffman_len;             /* 0: none shorter than the raw value */
	__u32 ts_huffman_len;
	__u32 tp_len;                     /* the app's traceparent's length (raw) */
	__u32 ts_len;                     /* our tracestate's */
	__u32 n;
	__s32 grow;                       /* what the edits add to the frame */
	struct own_field fields[H2_OWN_MAX];
};

/* A connection's state, in its socket's local storage. */
struct wire_socket {
	__u32 proto;
	__u32 block_len;
	__u32 block_tp; /* of block_len, the traceparent's field */
	__u32 ts_changed; /* HTTP/2: a tracestate field the peer's table keeps got ours */
	__u32 preface_len; /* of the preface, bytes seen so far */
	__u32 partial_len; /* of a frame header split across writes, bytes seen so far */
	__u8 partial[8];
	__u32 h2_from; /* where this write's first frame begins (after the preface) */
	__u32 _pad;
	/* What to insert, built before the message changes: too large for the stack. */
	union {
		struct {
			__u8 block[H2_BLOCK_MAX]; /* the fields */
			struct h2_own own;        /* the app's own, found */
		} h2;
		struct http1 h1; /* HTTP/1: the header lines, the head being read */
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

/* build_block builds in s->h2.block, from out, the traceparent field, then (if we
 * have one, well-formed) the tracestate field: what is inserted, and what the app's
 * own fields get; 0 if the traceparent is malformed (a malformed tracestate is left
 * out). A global function: verified once. */
__noinline int build_block(struct wire_socket *s, struct outgoing *out)
{
	if (!s || !out)
		return 0;
	__u8 *b = s->h2.block;
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

/* hpack_int reads the integer with the prefix mask at offset rel of the pulled block
 * (RFC 7541 5.1; up to 2^21): its value, and in the top half where what follows it
 * begins; -1 if the block ends first. A global function: verified once. */
__noinline __s64 hpack_int(struct sk_msg_md *msg, __u32 rel, __u32 mask)
{
	if (!msg)
		return -1;
	__u8 *data = (__u8 *)(long)msg->data, *end = (__u8 *)(long)msg->data_end;
	__u8 *p = data + clamp_off(rel);
	if (p + 1 > end)
		return -1;
	__u32 x = *p & mask;
	rel++;
	if (x < mask)
		return (__s64)x | (__s64)rel << 32;
	for (int k = 0; k < 3; k++) {
		p = data + clamp_off(rel);
		if (p + 1 > end)
			return -1;
		__u8 c = *p;
		rel++;
		x += (__u32)(c & 0x7f) << (7 * k);
		if (!(c & 0x80))
			return (__s64)x | (__s64)rel << 32;
	}
	return -1;
}

/* literal_name tells a field's literal name, nlen bytes at p, raw or Huffman-coded
 * (HTTP/2 field names are lower case). */
static __always_inline __u8 literal_name(__u8 *p, __u8 *end, __u32 nlen, __u8 huffman)
{
	if (p + 8 > end)
		return NAME_OTHER;
	__u64 w = *(__u64 *)p;
	if (huffman) { /* "traceparent", "tracestate" in RFC 7541's code */
		if (nlen == 8 && w == WORD(0x4d, 0x83, 0x21, 0x6b, 0x1d, 0x85, 0xa9, 0x3f))
			return NAME_TRACEPARENT;
		if (nlen == 7 && (w & 0xffffffffffffffULL) == WORD(0x4d, 0x83, 0x21, 0x50, 0x91, 0xa4, 0xbf, 0))
			return NAME_TRACESTATE;
		return NAME_OTHER;
	}
	if (p + 11 > end || (w != WORD('t', 'r', 'a', 'c', 'e', 's', 't', 'a') && w != WORD('t', 'r', 'a', 'c', 'e', 'p', 'a', 'r')))
		return NAME_OTHER;
	if (nlen == 11 && p[7] == 'r' && p[8] == 'e' && p[9] == 'n' && p[10] == 't')
		return NAME_TRACEPARENT;
	if (nlen == 10 && p[7] == 'a' && p[8] == 't' && p[9] == 'e')
		return NAME_TRACESTATE;
	return NAME_OTHER;
}

/* A field representation, as read_field reads it. */
struct field_info {
	__u32 next;   /* where the next begins, from the block's start */
	__u32 at;     /* its value's string (literals) */
	__u32 data;   /* the value's length, as written */
	__u8 literal; /* a literal (with a value); else indexed or a table size update */
	__u8 huffman;
	__u8 indexing;
	__u8 name;    /* NAME_* */
};

/* read_field reads the field representation at offset rel of the pulled block (RFC
 * 7541 6) into fi; 0 if the block ends inside it. A global function: verified once. */
__noinline int read_field(struct sk_msg_md *msg, __u32 rel, struct field_info *fi)
{
	if (!msg || !fi)
		return 0;
	__u8 *data = (__u8 *)(long)msg->data, *end = (__u8 *)(long)msg->data_end;
	__u8 *p = data + clamp_off(rel);
	if (p + 1 > end)
		return 0;
	__u8 b = *p;
	__s64 r;
	fi->literal = 0;
	if (b & 0x80 || (b & 0xe0) == 0x20) { /* indexed; a table size update */
		r = hpack_int(msg, rel, b & 0x80 ? 0x7f : 0x1f);
		fi->next = r >> 32;
		return r >= 0;
	}
	fi->literal = 1;
	fi->indexing = (b & 0xc0) == 0x40;
	r = hpack_int(msg, rel, fi->indexing ? 0x3f : 0x0f);
	if (r < 0)
		return 0;
	__u32 index = (__u32)r;
	rel = r >> 32;
	fi->name = index == 0 || index <= 61 ? NAME_OTHER : NAME_INDEXED; /* the static table has neither */
	if (index == 0) {
		p = data + clamp_off(rel);
		if (p + 1 > end)
			return 0;
		__u8 huffman = *p & 0x80;
		r = hpack_int(msg, rel, 0x7f);
		if (r < 0)
			return 0;
		__u32 nlen = (__u32)r;
		rel = r >> 32;
		fi->name = literal_name(data + clamp_off(rel), end, nlen, huffman);
		rel += nlen;
	}
	fi->at = rel;
	p = data + clamp_off(rel);
	if (p + 1 > end)
		return 0;
	fi->huffman = (*p & 0x80) != 0;
	r = hpack_int(msg, rel, 0x7f);
	if (r < 0)
		return 0;
	fi->data = (__u32)r;
	fi->next = (r >> 32) + fi->data;
	return 1;
}

/* What each step of the walk is given: on the walking function's stack, so that the
 * verifier keeps knowing msg for the context it is. */
struct walk {
	struct sk_msg_md *msg;
	struct h2_own *own;
	__u32 rel;  /* the next field, from the block's start */
	__u32 size; /* of the block */
	__u8 done;  /* 1: at its end; 2: malformed */
};

/* walk_step reads one field and notes it if it may be the app's: a literal name that
 * says so, or an indexed one and a value as long as the app's traceparent or our
 * tracestate. A bpf_loop callback: verified once. */
static long walk_step(__u32 i, void *arg)
{
	struct walk *w = arg;
	struct h2_own *o = w->own;
	if (w->rel >= w->size) {
		w->done = 1;
		return 1;
	}
	struct field_info fi = {};
	if (!read_field(w->msg, w->rel, &fi) || fi.next > w->size) {
		w->done = 2;
		return 1;
	}
	w->rel = fi.next;
	if (!fi.literal)
		return 0;
	int may = fi.name == NAME_TRACEPARENT || fi.name == NAME_TRACESTATE;
	if (fi.name == NAME_INDEXED && fi.data > 0)
		may = fi.huffman ? fi.data == o->tp_huffman_len || fi.data == o->ts_huffman_len
				 : fi.data == o->tp_len || fi.data == o->ts_len;
	__u32 n = o->n;
	if (may && n < H2_OWN_MAX) {
		struct own_field *f = &o->fields[n & (H2_OWN_MAX - 1)];
		f->at = fi.at;
		f->len = fi.next - fi.at;
		f->data = fi.data;
		f->huffman = fi.huffman;
		f->indexing = fi.indexing;
		f->name = fi.name;
		f->own = OWN_NONE;
		o->n = n + 1;
	}
	return 0;
}

/* walk_block walks the header block pulled at the message's start, size bytes, and
 * lists in s's own fields those that may be the app's; 0 if it is malformed. A global
 * function: verified once. */
__noinline int walk_block(struct sk_msg_md *msg, struct h2_own *own, __u32 size)
{
	if (!msg || !own)
		return 0;
	struct walk w = {.msg = msg, .own = own, .size = size};
	own->n = 0;
	bpf_loop(H2_WALK_MAX, walk_step, &w, 0);
	return w.done == 1;
}

/* A Huffman encoding into own (RFC 7541 5.2), a step a byte: a bpf_loop's state. */
struct huffman_op {
	struct h2_own *own;
	struct outgoing *out;
	__u64 acc;  /* its last bits hold those not yet written */
	__u32 bits;
	__u32 n;    /* bytes written */
	__u32 len;  /* of the input */
	__u8 which; /* 0: the app's traceparent; 1: our tracestate */
	__u8 bad;   /* a byte not printable, or the code no shorter than the input */
};

static long huffman_step(__u32 i, void *arg)
{
	struct huffman_op *op = arg;
	__u8 c;
	if (i >= op->len)
		return 1;
	if (op->which) {
		if (i >= TRACESTATE_MAX)
			return 1;
		c = op->out->tracestate[i];
	} else {
		if (i >= TRACEPARENT_LEN + 1)
			return 1;
		c = op->out->app_traceparent[i];
	}
	if (c < HUFFMAN_FIRST || c > HUFFMAN_LAST) {
		op->bad = 1;
		return 1;
	}
	const struct huffman_code *h = &hpack_huffman[c - HUFFMAN_FIRST];
	__u32 bits = op->bits + h->len;
	__u64 acc = op->acc << h->len | h->code;
	for (int k = 0; k < 3; k++) {
		if (bits < 8)
			break;
		__u32 n = op->n;
		if (n >= op->len) { /* no shorter than the input: not the form an encoder takes */
			op->bad = 1;
			return 1;
		}
		__u8 byte = acc >> (bits - 8);
		if (op->which)
			op->own->ts_huffman[n & (TRACESTATE_MAX - 1)] = byte;
		else
			op->own->tp_huffman[n & (HUFFMAN_TP_MAX - 1)] = byte;
		op->n = n + 1;
		bits -= 8;
	}
	op->bits = bits;
	op->acc = acc & ((1ULL << bits) - 1);
	return 0;
}

/* huffman encodes the app's traceparent (which 0) or our tracestate (1) into own, and
 * returns its length: 0 if it has none shorter than the input. A global function:
 * verified once. */
__noinline __u32 huffman(struct h2_own *own, struct outgoing *out, __u32 which)
{
	if (!own || !out)
		return 0;
	struct huffman_op op = {.own = own, .out = out, .which = which};
	op.len = which ? out->tracestate_len : out->app_traceparent_len;
	if (op.len == 0 || op.len > (which ? TRACESTATE_MAX : TRACEPARENT_LEN + 1))
		return 0;
	bpf_loop(op.len, huffman_step, &op, 0);
	if (op.bad)
		return 0;
	if (op.bits) { /* padded with the EOS code's first bits: ones */
		__u32 n = op.n;
		if (n >= op.len)
			return 0;
		__u8 byte = op.acc << (8 - op.bits) | (0xff >> op.bits);
		if (which)
			own->ts_huffman[n & (TRACESTATE_MAX - 1)] = byte;
		else
			own->tp_huffman[n & (HUFFMAN_TP_MAX - 1)] = byte;
		op.n = n + 1;
	}
	return op.n;
}

/* What a field's value is compared with. */
#define REF_TP_RAW 0
#define REF_TP_HUFFMAN 1
#define REF_TS_RAW 2
#define REF_TS_HUFFMAN 3

struct compare_op {
	struct sk_msg_md *msg;
	struct h2_own *own;
	struct outgoing *out;
	__u32 at;  /* the value's first byte, from the block's start */
	__u8 ref;  /* REF_* */
	__u8 differ;
};

static long compare_step(__u32 i, void *arg)
{
	struct compare_op *op = arg;
	struct sk_msg_md *msg = op->msg;
	__u8 *data = (__u8 *)(long)msg->data, *end = (__u8 *)(long)msg->data_end;
	__u8 *p = data + clamp_off(op->at + i);
	__u8 want;
	__u64 k = i;
	asm volatile("" : "+r"(k)); /* the bound checked is the register used */
	if (p + 1 > end || k >= TRACESTATE_MAX)
		goto differ;
	switch (op->ref) {
	case REF_TP_RAW:
		if (k >= TRACEPARENT_LEN + 1)
			goto differ;
		want = op->out->app_traceparent[k];
		break;
	case REF_TP_HUFFMAN:
		if (k >= HUFFMAN_TP_MAX)
			goto differ;
		want = op->own->tp_huffman[k];
		break;
	case REF_TS_RAW:
		want = op->out->tracestate[k];
		break;
	default:
		want = op->own->ts_huffman[k];
		break;
	}
	if (*p == want)
		return 0;
differ:
	op->differ = 1;
	return 1;
}

/* value_is reports whether field f's value, as written, is the reference's. */
static __always_inline int value_is(struct sk_msg_md *msg, struct h2_own *own, struct outgoing *out, struct own_field *f,
				    __u8 ref)
{
	__u32 len = ref == REF_TP_RAW ? own->tp_len : ref == REF_TP_HUFFMAN ? own->tp_huffman_len
						  : ref == REF_TS_RAW ? own->ts_len : own->ts_huffman_len;
	if (len == 0 || f->data != len || f->huffman != (ref == REF_TP_HUFFMAN || ref == REF_TS_HUFFMAN))
		return 0;
	struct compare_op op = {.msg = msg, .own = own, .out = out, .at = f->at + f->len - f->data, .ref = ref};
	bpf_loop(len, compare_step, &op, 0);
	return !op.differ;
}

/* classify decides what field i of those the walk listed gets (OWN_*), in their
 * order: the traceparent the app wrote gets ours; its tracestate too, unless it is
 * ours already; a second tracestate field, nothing. ts_given says whether an earlier
 * field got ours. A global function: verified once. */
__noinline int classify(struct sk_msg_md *msg, struct h2_own *own, struct outgoing *out, __u32 i, __u32 ts_given)
{
	if (!msg || !own || !out || i >= H2_OWN_MAX)
		return OWN_NONE;
	struct own_field *f = &own->fields[i];
	/* The decoded length of the value, where known: a field with incremental indexing
	 * may not get a longer one. */
	__u32 known = f->huffman ? 0 : f->data;
	if (f->name != NAME_TRACESTATE) {
		int app = value_is(msg, own, out, f, f->huffman ? REF_TP_HUFFMAN : REF_TP_RAW);
		if (app)
			known = out->app_traceparent_len;
		if (app || f->name == NAME_TRACEPARENT) {
			if (f->indexing && known < TRACEPARENT_LEN)
				return OWN_UNSAFE;
			return OWN_TRACEPARENT;
		}
	}
	if (value_is(msg, own, out, f, f->huffman ? REF_TS_HUFFMAN : REF_TS_RAW))
		return OWN_SAME;
	if (f->name != NAME_TRACESTATE)
		return OWN_NONE;
	if (ts_given || own->ts_len == 0)
		return OWN_EMPTY; /* decodes to nothing: never longer */
	if (f->huffman && !ts_given)
		known = out->app_tracestate_len; /* the app's first value */
	if (f->indexing && known < own->ts_len)
		return OWN_UNSAFE_TS;
	return OWN_TRACESTATE;
}

/* A string written in place of a value: from the block built for insertion (a
 * traceparent field, then a tracestate field), or the empty string. */
struct put_op {
	struct sk_msg_md *msg;
	struct wire_socket *s;
	__u32 from; /* in s->h2.block; H2_BLOCK_MAX: the empty string */
	__u32 len;  /* bytes to write */
	__u8 bad;
};

/* put_words writes bytes 8i to 8i + 7 (those there are) of what op says, at the
 * message's first byte after a pull: a word at a time, the last bytes one at a time.
 * A bpf_loop callback. */
static long put_words(__u32 i, void *arg)
{
	struct put_op *op = arg;
	struct sk_msg_md *msg = op->msg;
	__u8 *data = (__u8 *)(long)msg->data, *end = (__u8 *)(long)msg->data_end;
	__u64 at = (__u64)i * 8;
	if (at >= op->len)
		return 1;
	__u8 *p = data + clamp_off(at);
	__u64 j = (__u64)op->from + at;
	asm volatile("" : "+r"(j)); /* the bound checked is the register used */
	if (at + 8 <= op->len && j <= H2_BLOCK_MAX - 8) {
		if (p + 8 > end)
			goto bad;
		__builtin_memcpy(p, &op->s->h2.block[j], 8);
		return 0;
	}
	for (int k = 0; k < 8; k++) {
		if (at + k >= op->len)
			break;
		__u64 jk = j + k;
		asm volatile("" : "+r"(jk));
		if (p + k + 1 > end || jk > H2_BLOCK_MAX)
			goto bad;
		p[k] = jk < H2_BLOCK_MAX ? op->s->h2.block[jk] : 0;
	}
	return 0;
bad:
	op->bad = 1;
	return 1;
}

/* put_field gives field i of the block at offset blk its new value string (a raw
 * string: ours, or the empty string); it returns how many bytes the frame grew by
 * (negative: shrank), or H2_PUT_FAILED with the field as it was. A global function:
 * verified once. */
#define H2_PUT_FAILED 0x7fffffff
__noinline __s32 put_field(struct sk_msg_md *msg, struct wire_socket *s, __u32 blk, __u32 i)
{
	if (!msg || !s || i >= H2_OWN_MAX)
		return H2_PUT_FAILED;
	struct own_field *f = &s->h2.own.fields[i];
	__u32 from, len;
	switch (f->own) {
	case OWN_TRACEPARENT: /* the block's first field: 0, 11, "traceparent", then its value's string */
		from = 13;
		len = 1 + TRACEPARENT_LEN;
		break;
	case OWN_TRACESTATE: /* its second: 0, 10, "tracestate", then its value's string */
		from = TRACEPARENT_FIELD_LEN + 12;
		if (s->block_len <= from || s->block_len > H2_BLOCK_MAX)
			return H2_PUT_FAILED;
		len = s->block_len - from;
		break;
	case OWN_EMPTY:
		from = H2_BLOCK_MAX;
		len = 1;
		break;
	default:
		return 0;
	}
	__u32 at = blk + f->at, old = f->len;
	if (old > H2_MAX_FRAME || at > 0xffffff)
		return H2_PUT_FAILED;
	__s32 delta = (__s32)len - (__s32)old;
	if (delta < 0) { /* made writable whole first: the pull below cannot fail after the pop */
		if (bpf_msg_pull_data(msg, at, at + old, 0) != 0 || bpf_msg_pop_data(msg, at + len, old - len, 0) != 0)
			return H2_PUT_FAILED;
	} else if (delta > 0 && bpf_msg_push_data(msg, at + old, delta, 0) != 0) {
		return H2_PUT_FAILED;
	}
	struct put_op op = {.msg = msg, .s = s, .from = from, .len = len};
	if (bpf_msg_pull_data(msg, at, at + len, 0) != 0)
		goto undo;
	bpf_loop((len + 7) / 8, put_words, &op, 0);
	if (!op.bad)
		return delta;
undo: /* after a push (the bytes were there after a pop) */
	if (delta > 0)
		bpf_msg_pop_data(msg, at + old, delta, 0);
	return H2_PUT_FAILED;
}

/* own_fields finds the app's fields in the header block at offset blk (size bytes)
 * and decides what each gets; 0 if the block cannot be read. A global function:
 * verified once. */
__noinline int own_fields(struct sk_msg_md *msg, struct wire_socket *s, struct outgoing *out, __u32 blk, __u32 size)
{
	if (!msg || !s || !out)
		return 0;
	struct h2_own *own = &s->h2.own;
	own->n = 0;
	own->tp_len = 0;
	own->ts_len = 0;
	own->tp_huffman_len = 0;
	own->ts_huffman_len = 0;
	if ((out->app & OUTGOING_APP_TRACEPARENT) && out->app_traceparent_len <= TRACEPARENT_LEN + 1) {
		own->tp_len = out->app_traceparent_len;
		own->tp_huffman_len = huffman(own, out, 0);
	}
	if (s->block_len > TRACEPARENT_FIELD_LEN) /* ours, well-formed: built */
		own->ts_len = out->tracestate_len;
	if ((out->app & OUTGOING_APP_TRACESTATE) && own->ts_len)
		own->ts_huffman_len = huffman(own, out, 1);
	if (size == 0 || size > H2_MAX_FRAME || bpf_msg_pull_data(msg, blk, blk + size, 0) != 0)
		return 0;
	if (!walk_block(msg, own, size))
		return 0;
	__u32 ts_given = 0;
	for (int i = 0; i < H2_OWN_MAX; i++) {
		if (i >= own->n)
			break;
		__u8 what = classify(msg, own, out, i, ts_given);
		own->fields[i].own = what;
		ts_given |= what == OWN_TRACESTATE;
	}
	return 1;
}

/* set_frame_len writes the length of the frame at offset base. */
static __always_inline int set_frame_len(struct sk_msg_md *msg, __u32 base, __u32 len)
{
	if (bpf_msg_pull_data(msg, base, base + 3, 0) != 0)
		return 0;
	__u8 *p = (__u8 *)(long)msg->data, *end = (__u8 *)(long)msg->data_end;
	if (p + 3 > end)
		return 0;
	p[0] = len >> 16;
	p[1] = len >> 8;
	p[2] = len;
	return 1;
}

/* insert_block inserts s->h2.block[from, to) at offset at of the message; on any
 * failure the message is left as it was. */
__noinline int insert_block(struct sk_msg_md *msg, struct wire_socket *s, __u32 at, __u32 from, __u32 to)
{
	if (!msg || !s)
		return 0;
	if (from > TRACEPARENT_FIELD_LEN || to > H2_BLOCK_MAX || to <= from)
		return 0;
	__u32 add = to - from;
	if (bpf_msg_push_data(msg, at, add, 0) != 0)
		return 0;
	struct put_op op = {.msg = msg, .s = s, .from = from, .len = add};
	if (bpf_msg_pull_data(msg, at, at + add, 0) != 0)
		goto undo;
	bpf_loop((add + 7) / 8, put_words, &op, 0); /* the bytes were pulled: it cannot fail */
	if (!op.bad)
		return 1;
undo:
	bpf_msg_pop_data(msg, at, add, 0);
	return 0;
}

/* h2_block_end handles the frame f, which ends a client stream's header block with a
 * context filed for it (under key): it inserts the fields the app did not write, gives
 * those it did ours, or leaves the frame as it is; and returns where the frame now
 * ends. A global function: verified once, not in each of the frame walk's iterations. */
__noinline __u32 h2_block_end(struct sk_msg_md *msg, struct wire_socket *s, struct h2_frame *f, struct h2_stream *key,
			      struct outgoing *out)
{
	if (!msg || !s || !f || !key || !out)
		return 0;
	__u32 base = f->off, end = base + H2_FRAME_HEADER_LEN + f->len;
	__u8 app = out->app;
	struct h2_own *own = &s->h2.own;
	own->n = 0;
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
	__u32 pad = 0, skip = 0;
	if (f->type == H2_HEADERS && (f->flags & H2_PADDED)) {
		if (f->len < 1 || bpf_msg_pull_data(msg, base + H2_FRAME_HEADER_LEN, base + H2_FRAME_HEADER_LEN + 1, 0) != 0)
			goto failed;
		__u8 *d = (__u8 *)(long)msg->data, *dend = (__u8 *)(long)msg->data_end;
		if (d + 1 > dend)
			goto failed;
		pad = d[0];
		if (pad >= f->len)
			goto failed; /* malformed: the peer will say so, not us */
		skip = 1;
	}
	if (f->type == H2_HEADERS && (f->flags & H2_PRIORITY))
		skip += 5;
	if (!build_block(s, out))
		goto failed;
	/* What is inserted: the fields the app did not write. */
	__u32 from = app & OUTGOING_APP_TRACEPARENT ? TRACEPARENT_FIELD_LEN : 0;
	__u32 to = app & OUTGOING_APP_TRACESTATE ? TRACEPARENT_FIELD_LEN : s->block_len;
	if (to < from)
		to = from;
	/* The app's own: in a block of one frame (another's fields may be in the frames
	 * before, which went out already). */
	if (app && f->type == H2_HEADERS && skip + pad <= f->len)
		own_fields(msg, s, out, base + H2_FRAME_HEADER_LEN + skip, f->len - skip - pad);
	__s32 grow = to - from, ts_grow = 0;
	for (int i = 0; i < H2_OWN_MAX; i++) {
		if (i >= own->n)
			break;
		struct own_field *o = &own->fields[i];
		__s32 d = o->own == OWN_TRACEPARENT ? 1 + TRACEPARENT_LEN - (__s32)o->len
			: o->own == OWN_TRACESTATE   ? (__s32)(s->block_len - TRACEPARENT_FIELD_LEN - 12) - (__s32)o->len
			: o->own == OWN_EMPTY        ? 1 - (__s32)o->len
						     : 0;
		grow += d;
		if (o->own == OWN_TRACESTATE || o->own == OWN_EMPTY)
			ts_grow += d;
	}
	if ((__s32)f->len + grow > H2_MAX_FRAME) { /* the traceparent alone, then */
		grow -= ts_grow + (to > TRACEPARENT_FIELD_LEN ? to - TRACEPARENT_FIELD_LEN : 0);
		if (to > TRACEPARENT_FIELD_LEN)
			to = TRACEPARENT_FIELD_LEN;
		if (to < from)
			to = from;
		for (int i = 0; i < H2_OWN_MAX; i++)
			if (i < own->n && (own->fields[i].own == OWN_TRACESTATE || own->fields[i].own == OWN_EMPTY))
				own->fields[i].own = OWN_UNSAFE_TS;
		if ((__s32)f->len + grow > H2_MAX_FRAME) {
			count(COUNT_H2_TOO_LARGE);
			goto unchanged;
		}
	}
	bpf_map_delete_elem(&outgoing_h2, key);
	/* From the block's end back: each change leaves the offsets before it as they were. */
	__s32 done = 0;
	if (to > from) {
		if (insert_block(msg, s, end - pad, from, to)) {
			done += to - from;
			if (from == 0)
				count(COUNT_H2_INSERTED);
		} else {
			count(COUNT_H2_FAILED);
		}
	}
	__u8 tp = 0, ts = 0;
	for (int i = H2_OWN_MAX - 1; i >= 0; i--) {
		if (i >= own->n)
			continue;
		__u8 what = own->fields[i].own;
		tp |= what == OWN_TRACEPARENT || what == OWN_UNSAFE;
		ts |= what == OWN_TRACESTATE || what == OWN_EMPTY || what == OWN_SAME || what == OWN_UNSAFE_TS;
		if (what == OWN_UNSAFE || what == OWN_UNSAFE_TS) {
			count(COUNT_H2_UNSAFE);
			continue;
		}
		if (what != OWN_TRACEPARENT && what != OWN_TRACESTATE && what != OWN_EMPTY)
			continue;
		__s32 d = put_field(msg, s, base + H2_FRAME_HEADER_LEN + skip, i);
		if (d == H2_PUT_FAILED) {
			count(COUNT_H2_FAILED);
			continue;
		}
		done += d;
		count(what == OWN_TRACEPARENT ? COUNT_H2_REPLACED : COUNT_H2_TRACESTATE);
		if (what != OWN_TRACEPARENT && own->fields[i].indexing)
			s->ts_changed = 1;
	}
	if ((app & OUTGOING_APP_TRACEPARENT) && !tp)
		count(COUNT_H2_NOT_FOUND);
	/* A tracestate not found is the app's as it wrote it, or, sent as an index, the
	 * value the peer's table holds for it: ours, if the app's was (a proxy forwarding
	 * its caller's) and no field the table keeps got a value of ours. */
	if ((app & OUTGOING_APP_TRACESTATE) && !ts && (!(app & OUTGOING_APP_TRACESTATE_OURS) || s->ts_changed))
		count(COUNT_H2_TS_KEPT);
	if (done && !set_frame_len(msg, base, f->len + done))
		count(COUNT_H2_FAILED); /* cannot happen: the bytes were read */
	return end + done;
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

/* The programs inject hands a write to: loaded apart, put here by the loader. */
#define WIRE_H2 0
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} wire_programs SEC(".maps");

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
	if (s->proto == PROTO_H2) {
		s->h2_from = off;
		bpf_tail_call(msg, &wire_programs, WIRE_H2);
		/* Not loaded: the frames cannot be followed; leave the connection alone. */
		s->proto = PROTO_HTTP1;
		return SK_PASS;
	}
	http1(msg, &s->h1);
	return SK_PASS;
}

/* HTTP/2, a program of its own (inject's tail call): each is verified within its
 * budget. */
SEC("sk_msg")
int inject_h2(struct sk_msg_md *msg)
{
	struct bpf_sock *sk = msg->sk;
	if (!sk)
		return SK_PASS;
	struct wire_socket *s = bpf_sk_storage_get(&wire_sockets, sk, 0, 0);
	if (s && s->proto == PROTO_H2)
		h2(msg, s, s->h2_from);
	return SK_PASS;
}
