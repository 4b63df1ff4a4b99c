/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The W3C tracestate of an incoming request, checked once, where it comes in (the server
 * probes): what the server span, the in-flight spans and the wire carry from then on is
 * well-formed, or nothing.
 *
 * The header's fields are combined into one list, as RFC 9110 5.3 combines a field's
 * lines (joined with commas). Then, per W3C Trace Context:
 *  - a malformed list is dropped whole: a member that is not key=value (a key as
 *    level 1 writes it, which OpenTelemetry's TraceState accepts: [a-z][a-z0-9_*-/]
 *    up to 256, or tenant@system, [a-z0-9][a-z0-9_*-/]{0,240}@[a-z][a-z0-9_*-/]{0,13};
 *    a value of 1 to 256 printable characters but ',' and '=', not ending in a space),
 *    more than 32 members, a key twice (told by a 64-bit hash of each key);
 *  - optional whitespace and empty members are left out: what is kept is "k=v,k=v";
 *  - a list longer than TRACESTATE_MAX loses whole members, never part of one: those
 *    over 128 characters first, then from the end.
 * A value over TRACESTATE_READ_MAX bytes (combined), or in more than
 * TRACESTATE_FIELDS fields, is dropped: the work per request stays bounded.
 *
 * The caller fills a tracestate_scratch's fields with the string headers of the
 * header's values, then calls tracestate_take with where the kept value goes. Cost:
 * one pass over the bytes, a second (up to what it keeps) for a list that must be
 * cut: a bpf_loop step for each run of up to 8 key or value characters, tested at
 * once, and for each byte between them. Nothing without a tracestate. */
#pragma once

#include "trace.h"
#include "go_types.h"

#define TRACESTATE_READ_MAX 4096 /* combined bytes looked at */
#define TRACESTATE_FIELDS 8      /* header fields combined */
#define TRACESTATE_MEMBERS 32
#define TRACESTATE_SMALL 128 /* members longer go first when the list must be cut */
#define TRACESTATE_KEY_MAX 256
#define TRACESTATE_VALUE_MAX 256
#define TRACESTATE_CHUNK 64 /* bytes read from the app at a time */

/* What tracestate_take works with. Its fields are the input; the rest is its own. */
struct tracestate_scratch {
	struct go_string field[TRACESTATE_FIELDS]; /* the header fields' values, in order */
	__u32 fields; /* how many there are (more than TRACESTATE_FIELDS: too many) */

	/* Where the walk is: field fi, at offset fo of its flen bytes at fptr; chunk holds
	 * its bytes from chunk_at on. */
	__u32 fi, fo, flen, chunk_at, chunk_len;
	__u64 fptr;

	/* The member being read. */
	__u8 state;     /* TS_* */
	__u8 key_first; /* its key's first character */
	__u8 sys_first; /* the first after its '@' */
	__u8 tab;       /* a tab in its value: then only whitespace may follow */
	__u16 key_len;
	__u16 at; /* the '@''s index + 1; 0 without one */
	__u32 val_len;  /* its value's bytes so far, trailing whitespace included */
	__u32 val_trim; /* up to the last that is not whitespace */
	__u32 w;        /* where its next byte goes in the output */
	__u8 writing;   /* it goes in the output */
	__u8 pass;      /* 1: all members; 2: those of small_mask */
	__u8 bad;
	__u8 small_closed; /* pass 1: a member of 128 or fewer did not fit */
	__u64 hash;

	/* The members read. */
	__u32 members;
	__u32 total;      /* their length, as "k=v,k=v" */
	__u32 out_len;    /* what the output holds */
	__u32 small_len;  /* pass 1: the longest prefix of the short members that fits... */
	__u32 small_mask; /* ...and which they are (bit i: member i); pass 2 keeps them */
	__u32 _pad;
	__u64 key_hash[TRACESTATE_MEMBERS];
	__u8 chunk[TRACESTATE_CHUNK];
};

#define TS_LEAD 0  /* before a member: whitespace, commas */
#define TS_KEY 1
#define TS_VALUE 2

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static __always_inline int ts_lower(__u8 c)
{
	return c >= 'a' && c <= 'z';
}

static __always_inline int ts_digit(__u8 c)
{
	return c >= '0' && c <= '9';
}

static __always_inline int ts_key_char(__u8 c)
{
	return ts_lower(c) || ts_digit(c) || c == '_' || c == '-' || c == '*' || c == '/' || c == '@';
}

/* ts_key_ok checks the key just read, as level 1 (and OpenTelemetry) write one. */
static __always_inline int ts_key_ok(struct tracestate_scratch *s)
{
	if (!s->at)
		return ts_lower(s->key_first);
	__u32 tenant = s->at - 1, system = s->key_len - s->at;
	return tenant >= 1 && tenant <= 241 && (ts_lower(s->key_first) || ts_digit(s->key_first)) && system >= 1 &&
	       system <= 14 && ts_lower(s->sys_first);
}

/* ts_put writes the member's next byte, if it is written and fits. */
static __always_inline void ts_put(struct tracestate_scratch *s, __u8 *out, __u8 c)
{
	__u32 w = s->w;
	if (s->writing && w < TRACESTATE_MAX)
		out[w] = c;
	s->w = w + 1;
}

static __always_inline void ts_member_begin(struct tracestate_scratch *s, __u8 *out, __u8 c)
{
	__u32 i = s->members;
	if (s->pass == 1)
		s->writing = s->total <= TRACESTATE_MAX; /* all before it fit */
	else
		s->writing = i < TRACESTATE_MEMBERS && ((s->small_mask >> (i & 31)) & 1);
	__u32 at = s->out_len;
	if (s->writing && at > 0 && at < TRACESTATE_MAX)
		out[at] = ',';
	s->w = at > 0 ? at + 1 : 0;
	s->state = TS_KEY;
	s->key_first = c;
	s->sys_first = 0;
	s->tab = 0;
	s->key_len = 0;
	s->at = 0;
	s->val_len = 0;
	s->val_trim = 0;
	s->hash = FNV_OFFSET;
}

/* ts_seen reports whether a member before the last read had its key (its hash), and
 * keeps that one's. A global function: verified once, not in every state that reaches
 * a member's end. */
__noinline int ts_seen(struct tracestate_scratch *s)
{
	if (!s)
		return 1;
	__u32 i = s->members;
	__u64 h = s->hash;
	for (int j = 0; j < TRACESTATE_MEMBERS; j++) {
		if (j >= i)
			break;
		if (s->key_hash[j] == h)
			return 1;
	}
	s->key_hash[i & (TRACESTATE_MEMBERS - 1)] = h;
	return 0;
}

/* ts_member_end ends the member at its comma; 1 if the list is malformed. */
static __always_inline int ts_member_end(struct tracestate_scratch *s)
{
	if (s->val_trim == 0)
		return 1;
	__u32 i = s->members;
	if (i >= TRACESTATE_MEMBERS || ts_seen(s))
		return 1;
	s->members = i + 1;
	__u32 len = s->key_len + 1 + s->val_trim;
	s->total += (i ? 1 : 0) + len;
	if (s->pass == 1) {
		if (s->total <= TRACESTATE_MAX)
			s->out_len = s->total;
		if (len <= TRACESTATE_SMALL && !s->small_closed) {
			__u32 with = s->small_len + (s->small_len ? 1 : 0) + len;
			if (with <= TRACESTATE_MAX) {
				s->small_len = with;
				s->small_mask |= 1U << (i & 31);
			} else {
				s->small_closed = 1; /* cut from here to the end */
			}
		}
	} else if (s->writing) {
		s->out_len += (s->out_len ? 1 : 0) + len;
		if (i >= 31 || !(s->small_mask >> (i + 1)))
			s->fi = s->fields; /* the last it keeps: pass 1 checked the rest */
	}
	s->state = TS_LEAD;
	return 0;
}

/* ts_byte takes the combined list's next byte; 1 if the list is malformed. A global
 * function: verified once, not in every state a step can be in. */
__noinline int ts_byte(struct tracestate_scratch *s, __u8 (*outp)[TRACESTATE_MAX], __u8 c)
{
	if (!s || !outp)
		return 1;
	__u8 *out = *outp;
	switch (s->state) {
	case TS_LEAD:
		if (c == ' ' || c == '\t' || c == ',')
			return 0; /* whitespace around members, empty members */
		if (!ts_key_char(c) || c == '@')
			return 1;
		ts_member_begin(s, out, c);
		/* fall through: c is the key's first byte */
	case TS_KEY:
		if (c == '=') {
			if (!ts_key_ok(s))
				return 1;
			s->state = TS_VALUE;
			ts_put(s, out, c);
			return 0;
		}
		if (!ts_key_char(c) || s->key_len >= TRACESTATE_KEY_MAX)
			return 1;
		if (c == '@') {
			if (s->at)
				return 1;
			s->at = s->key_len + 1;
		} else if (s->at && s->key_len == s->at) {
			s->sys_first = c;
		}
		s->key_len++;
		s->hash = (s->hash ^ c) * FNV_PRIME;
		ts_put(s, out, c);
		return 0;
	case TS_VALUE:
		if (c == ',')
			return ts_member_end(s);
		if (c == ' ' || c == '\t') {
			s->tab |= c == '\t';
		} else {
			if (c < 0x21 || c > 0x7e || c == '=' || s->tab || s->val_len >= TRACESTATE_VALUE_MAX)
				return 1;
			s->val_trim = s->val_len + 1;
		}
		s->val_len++;
		ts_put(s, out, c);
		return 0;
	}
	return 1;
}

/* ts_field starts the walk's field fi (the caller checked their lengths). */
static __always_inline void ts_field(struct tracestate_scratch *s, __u32 fi)
{
	s->fi = fi;
	s->fo = 0;
	s->chunk_at = 0;
	s->chunk_len = 0;
	s->flen = 0;
	s->fptr = 0;
	if (fi < s->fields && fi < TRACESTATE_FIELDS) {
		asm volatile("" : "+r"(fi)); /* the compiler would drop the mask the verifier needs */
		const struct go_string *f = &s->field[fi & (TRACESTATE_FIELDS - 1)];
		s->flen = f->len;
		s->fptr = f->ptr;
	}
}

struct ts_walk_ctx {
	struct tracestate_scratch *s;
	__u8 *out;
};

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* ts_load8 and ts_store8 move 8 bytes at any alignment in one instruction, which
 * BPF's targets (x86-64, arm64) do; the compiler would use eight. */
static __always_inline __u64 ts_load8(const __u8 *p)
{
	__u64 x;
	asm volatile("%0 = *(u64 *)(%1 + 0)" : "=r"(x) : "r"(p));
	return x;
}

static __always_inline void ts_store8(__u8 *p, __u64 x)
{
	asm volatile("*(u64 *)(%0 + 0) = %1" : : "r"(p), "r"(x) : "memory");
}

/* Tests of the 8 bytes of a word at once, as strlen does: each sets the high bit of
 * the bytes it finds. ts_in and ts_is are exact for bytes under 0x80; the tests in
 * ts_value_run may also flag a byte above one they find (a borrow, a carry), so only
 * their lowest flag is sure, which is all ts_run looks at. */
static __always_inline __u64 ts_in(__u64 x, __u8 lo, __u8 hi)
{
	return ((x | HIGHS) - lo * ONES) & ((hi | 0x80) * ONES - (x & ~HIGHS)) & HIGHS;
}

static __always_inline __u64 ts_is(__u64 x, __u8 c)
{
	__u64 y = x ^ (c * ONES);
	return ~(((y & ~HIGHS) + ~HIGHS) | y) & HIGHS;
}

/* ts_run is how many of x's bytes, from the first, come before the first flagged in
 * f: 0 to 8. */
static __always_inline __u32 ts_run(__u64 f)
{
	if (!f)
		return 8;
	f &= -f;
	__u32 n = 0;
	if (!(f & 0x80808080ULL)) {
		n += 4;
		f >>= 32;
	}
	if (!(f & 0x8080ULL)) {
		n += 2;
		f >>= 16;
	}
	if (!(f & 0x80ULL))
		n += 1;
	return n;
}

/* ts_key_run: how many of x's bytes, from the first, are key characters but '@'. */
static __always_inline __u32 ts_key_run(__u64 x)
{
	__u64 ok = ts_in(x, 'a', 'z') | ts_in(x, '0', '9') | ts_is(x, '_') | ts_is(x, '-') | ts_is(x, '*') | ts_is(x, '/');
	return ts_run((~ok | x) & HIGHS); /* not one of them, or not ASCII */
}

/* ts_value_run: how many are value characters that need no more look: not
 * whitespace, ',' or '=', nor outside 0x21-0x7e. */
static __always_inline __u32 ts_value_run(__u64 x)
{
	__u64 below = (x - 0x21 * ONES) & ~x; /* under 0x21 */
	__u64 above = (x + ONES) | x;         /* over 0x7e */
	__u64 comma = x ^ (',' * ONES), eq = x ^ ('=' * ONES);
	comma = (comma - ONES) & ~comma;
	eq = (eq - ONES) & ~eq;
	return ts_run((below | above | comma | eq) & HIGHS);
}

/* ts_step feeds the combined list's next bytes: a run of key or value characters
 * that need no look of their own, 8 at a time (most of a list), then the byte that
 * ends the run; or the comma that ends each field. Nonzero: stop (the end, or a
 * malformed list). */
__noinline int ts_step(struct tracestate_scratch *s, __u8 (*outp)[TRACESTATE_MAX])
{
	if (!s || !outp)
		return 1;
	__u8 *out = *outp;
	if (s->fi >= s->fields)
		return 1; /* all read */
	__u8 c = ',';
	if (s->fo >= s->flen) {
		ts_field(s, s->fi + 1);
		goto byte;
	}
	/* A word from the chunk: re-read from here when the chunk has fewer than 8 bytes
	 * left of a field that has more, or the word would cross its end. */
	__u32 k = s->fo - s->chunk_at, have = s->chunk_len > k ? s->chunk_len - k : 0;
	if (have < 8 && (have < s->flen - s->fo || k > TRACESTATE_CHUNK - 8)) {
		__u64 n = (__u64)s->flen - s->fo; /* 64 bits: the size register is then what was clamped */
		if (n > TRACESTATE_CHUNK)
			n = TRACESTATE_CHUNK;
		if (bpf_probe_read_user(s->chunk, n, (const void *)(s->fptr + s->fo)) != 0)
			goto bad;
		s->chunk_at = s->fo;
		s->chunk_len = n;
		k = 0;
		have = n;
	}
	__u64 at = k;
	asm volatile("" : "+r"(at)); /* the bound checked is the register used */
	if (at > TRACESTATE_CHUNK - 8 || have == 0)
		goto bad; /* cannot be */
	if (have > 8)
		have = 8;
	__u64 x = ts_load8(&s->chunk[at]); /* bytes from have on are not the field's */

	/* The run: keys and values in words. A key's words are the same wherever it is
	 * (they start after its first byte or its '@', and end at its '='): its hash
	 * mixes them as they come, and a duplicate hashes the same. */
	__u32 n = 0;
	if (s->state == TS_KEY && !(s->at && s->key_len == s->at)) {
		n = ts_key_run(x);
		if (n > have)
			n = have;
		if (s->key_len + n > TRACESTATE_KEY_MAX) /* the byte past it says no */
			n = 0;
		if (n) {
			__u64 mask = n >= 8 ? ~0ULL : (1ULL << (8 * n)) - 1;
			s->hash = (s->hash ^ (x & mask)) * FNV_PRIME;
			s->key_len += n;
		}
	} else if (s->state == TS_VALUE && !s->tab) {
		n = ts_value_run(x);
		if (n > have)
			n = have;
		if (s->val_len + n > TRACESTATE_VALUE_MAX) /* spaces may have taken it past */
			n = 0;
		if (n) {
			s->val_len += n;
			s->val_trim = s->val_len;
		}
	}
	if (n) {
		__u64 w = s->w;
		asm volatile("" : "+r"(w)); /* the bound checked is the register used */
		if (s->writing && w <= TRACESTATE_MAX - 8) {
			ts_store8(&out[w], x); /* the bytes after the run are written again */
		} else if (s->writing) { /* near the output's end */
			for (int j = 0; j < 8; j++)
				if (j < n && w + j < TRACESTATE_MAX)
					out[w + j] = x >> (8 * j);
		}
		s->w = w + n;
		s->fo += n;
		if (n >= have)
			return 0;
	}
	/* The byte that ends the run, or one that needs a look of its own. */
	c = x >> (8 * (n & 7));
	s->fo++;
byte:
	if (!ts_byte(s, (__u8(*)[TRACESTATE_MAX])out, c))
		return 0;
bad:
	s->bad = 1;
	return 1;
}

/* ts_loop_step is the bpf_loop body: it only calls ts_step, a global function, which
 * the verifier then walks once, whatever the states the loop is in. */
static long ts_loop_step(__u32 i, void *arg)
{
	struct ts_walk_ctx *wk = arg;
	return ts_step(wk->s, (__u8(*)[TRACESTATE_MAX])wk->out) ? 1 : 0;
}

/* ts_walk walks the combined list once (pass 1: all members; 2: those of small_mask).
 * A global function: its loop body is verified once for both passes. */
__noinline int ts_walk(struct tracestate_scratch *s, __u8 (*out)[TRACESTATE_MAX], __u32 steps, __u8 pass)
{
	if (!s || !out)
		return 0;
	struct ts_walk_ctx wk = {.s = s, .out = *out};
	s->pass = pass;
	s->state = TS_LEAD;
	s->bad = 0;
	s->members = 0;
	s->total = 0;
	s->out_len = 0;
	ts_field(s, 0);
	bpf_loop(steps, ts_loop_step, &wk, 0);
	return 0;
}

/* tracestate_of_values makes the fields s works on the elements of values, an
 * http.Header's []string for the key (each a header line). */
static __always_inline void tracestate_of_values(struct tracestate_scratch *s, const struct go_slice *values)
{
	__s64 n = values->len;
	s->fields = 0;
	if (n < 1)
		return;
	if (n > TRACESTATE_FIELDS) {
		s->fields = TRACESTATE_FIELDS + 1; /* too many: dropped */
		return;
	}
	__u32 size = (__u32)n * sizeof(struct go_string);
	asm volatile("" : "+r"(size)); /* keep the clamp next to the read */
	if (size > sizeof(s->field))
		return;
	if (bpf_probe_read_user(s->field, size, (const void *)values->ptr) == 0)
		s->fields = n;
}

/* tracestate_take checks and combines the tracestate fields s holds, writes what is
 * kept of them to out, and returns its length: 0 for nothing (none, malformed, too
 * long to look at). A global function: verified once. */
__noinline int tracestate_take(struct tracestate_scratch *s, __u8 (*out)[TRACESTATE_MAX])
{
	if (!s || !out)
		return 0;
	__u32 n = s->fields;
	if (n == 0 || n > TRACESTATE_FIELDS)
		return 0;
	__u32 bytes = 0;
	for (int i = 0; i < TRACESTATE_FIELDS; i++) {
		if (i >= n)
			break;
		__s64 len = s->field[i].len;
		if (len < 0 || len > TRACESTATE_READ_MAX)
			return 0;
		bytes += len;
	}
	if (bytes > TRACESTATE_READ_MAX)
		return 0;
	s->small_len = 0;
	s->small_mask = 0;
	s->small_closed = 0;
	/* Steps enough: each takes a byte at least, or a field's end (its comma). */
	ts_walk(s, out, bytes + n, 1);
	if (s->bad || s->state != TS_LEAD || s->fi < s->fields)
		return 0;
	if (s->total <= TRACESTATE_MAX)
		return s->total;
	/* Too long: keep the longest run of short members from the start that fits. */
	if (!s->small_mask)
		return 0;
	ts_walk(s, out, bytes + n, 2);
	if (s->bad || s->state != TS_LEAD || s->fi < s->fields || s->out_len != s->small_len)
		return 0;
	return s->out_len;
}
