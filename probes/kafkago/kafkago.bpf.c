// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/* segmentio/kafka-go: a PRODUCER span per (*Writer).WriteMessages call, a CONSUMER span
 * per message (*Reader).FetchMessage returns (ReadMessage calls it: one probe serves
 * both). Two uprobe hits each: a function's entry and its RETs.
 *
 *   WriteMessages(w, ctx, msgs ...Message) error
 *     entry: the parent (by the call's context, else by the goroutine), w.Topic, or the
 *     messages' Topic when w.Topic is empty (the same for all, or none), their count.
 *     RET: the error's dynamic type.
 *   FetchMessage(r, ctx) (Message, error)
 *     entry: the start, the reader and the call's context; the consumer span this
 *     goroutine registered for its previous message (below) is unregistered.
 *     RET: the Message, which does not fit in registers and is returned on the stack
 *     (Go's ABI: 8 bytes above the stack pointer at a RET, as at the entry), and the
 *     error in the first two registers. Read: Topic, Partition, Offset, and the
 *     headers' keys (at most HEADERS_MAX) to find a traceparent, whose value alone is
 *     read. A message's Key and Value are never read.
 *
 * A message with a valid traceparent header joins that trace as the CONSUMER span's
 * child (W3C propagation on); another's span has the call's context's or the
 * goroutine's in-flight span as parent, else starts a trace. The span is then
 * registered as the goroutine's in-flight span (spans.h, by goroutine only), so that
 * the calls the app makes in that goroutine while it handles the message are its
 * children, until the goroutine's next FetchMessage; not in a goroutine that serves a
 * request (it has a span registered already: its calls stay under the request's). */
#include "common.h"
#include "spans.h"
#include "client.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Field offsets in the app, named after the Go fields (kit.VarName) and set by the
 * loader. */
volatile __u64 off_kafka_go_Writer_Topic = OFFSET_NONE;         /* string */
volatile __u64 off_kafka_go_Message_Topic = OFFSET_NONE;        /* string */
volatile __u64 off_kafka_go_Message_Partition = OFFSET_NONE;    /* int */
volatile __u64 off_kafka_go_Message_Offset = OFFSET_NONE;       /* int64 */
volatile __u64 off_kafka_go_Message_Headers = OFFSET_NONE;      /* []Header */
volatile __u64 off_kafka_go_Message_Time = OFFSET_NONE;         /* time.Time, the last field: a Message's size is its offset + 24 */
volatile __u64 off_kafka_go_Reader_config = OFFSET_NONE;        /* ReaderConfig */
volatile __u64 off_kafka_go_ReaderConfig_GroupID = OFFSET_NONE; /* string */
volatile __u64 off_protocol_Header_Key = OFFSET_NONE;           /* string */
volatile __u64 off_protocol_Header_Value = OFFSET_NONE;         /* []byte, the last field */

/* Set last, once everything else is. */
volatile __u64 kafka_enabled = 0;

#define EVENT_PRODUCE 1
#define EVENT_CONSUME 2

#define TOPIC_MAX 256      /* Kafka's topic names: at most 249 bytes */
#define GROUP_MAX 256      /* a consumer group's ID, kept up to this */
#define HEADERS_MAX 8      /* a message's headers looked at for a traceparent */
#define MESSAGES_MAX 65536 /* a produce call's messages compared by topic */
#define TIME_SIZE 24       /* time.Time: wall, ext, loc */
#define SLICE_SIZE 24
#define CHUNK 32           /* bytes of two topics compared at a time */

struct kafka_event {
	__u32 kind;
	__u8 has_parent;
	__u8 trace_flags;    /* the parent's */
	__u8 remote_parent;  /* the parent came with the message (its traceparent header) */
	__u8 topics_differ;  /* a produce call's messages go to several topics, or unknown */
	__u64 start_ns;
	__u64 end_ns;
	struct span_context sc;
	__u8 parent_span_id[SPAN_ID_SIZE];
	__u64 error_type; /* the error's dynamic type; 0 without an error */
	__s64 count;      /* messages in a produce call */
	__s64 partition;  /* a consumed message's; -1 unknown */
	__s64 offset;     /* a consumed message's; -1 unknown */
	__u32 group_len;
	__u32 topic_len;
	__u8 group[GROUP_MAX];
	__u8 topic[TOPIC_MAX]; /* last: records carry only the bytes copied */
};

/* Produce calls in flight, by goroutine (a Writer's call does not nest). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct kafka_event);
} produces SEC(".maps");

/* A goroutine's FetchMessage: the call in flight, then the span of the message it
 * returned, registered until the goroutine's next call; an entry stays between calls
 * only while it holds a registered span. */
struct fetch_state {
	struct kafka_event ev;
	struct span_ref ref; /* what the calls under the consumer span get */
	__u64 reader;
	__u64 ctx_tab, ctx; /* the call's context */
	__u8 active;        /* a call in flight */
	__u8 inflight;      /* what inflight_begin registered for the message's span */
	__u8 _pad[6];
	__u8 traceparent[TRACEPARENT_LEN + 1];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct fetch_state);
} fetches SEC(".maps");

/* Zeroes to create map entries from. Never written. */
struct kafka_event zero_event;
struct fetch_state zero_fetch;

const struct kafka_event *unused_kafka_event __attribute__((unused)); /* bpf2go -type */

/* The size of the record of ev: the topic's unused bytes stay out. */
static __always_inline __u64 record_size(const struct kafka_event *ev)
{
	__u64 size = sizeof(*ev) - TOPIC_MAX + ev->topic_len;
	return size > sizeof(*ev) ? sizeof(*ev) : size;
}

/* A comparison of the produce call's messages' topics with the first's. */
struct topic_walk {
	__u64 msgs;
	__u64 size; /* of a Message */
	struct go_string first;
	__u8 differ;
};

/* A comparison of two strings of the app of the same length, CHUNK bytes a step. */
struct chunk_walk {
	__u64 a, b;
	__s64 len;
	__u8 differ;
};

static long same_chunk(__u32 i, void *arg)
{
	struct chunk_walk *c = arg;
	__s64 at = (__s64)i * CHUNK;
	if (at >= c->len)
		return 1;
	__u64 rest = (__u64)(c->len - at);
	__u32 n = rest < CHUNK ? (__u32)rest : CHUNK;
	n &= 2 * CHUNK - 1; /* the bound, as the verifier sees it */
	if (n > CHUNK || n == 0)
		return 1;
	__u8 x[CHUNK] = {}, y[CHUNK] = {};
	if (bpf_probe_read_user(x, n, (const void *)(c->a + at)) != 0 ||
	    bpf_probe_read_user(y, n, (const void *)(c->b + at)) != 0) {
		c->differ = 1;
		return 1;
	}
	for (int k = 0; k < CHUNK; k++) {
		if (x[k] != y[k]) {
			c->differ = 1;
			return 1;
		}
	}
	return 0;
}

static long topic_step(__u32 i, void *arg)
{
	struct topic_walk *w = arg;
	struct go_string s = {};
	/* Step i compares message i + 1 with the first. */
	if (read_user(&s, sizeof(s), w->msgs + (__u64)(i + 1) * w->size + off_kafka_go_Message_Topic) != 0 ||
	    s.len != w->first.len) {
		w->differ = 1;
		return 1;
	}
	if (s.ptr == w->first.ptr || s.len <= 0)
		return 0;
	if (s.len > TOPIC_MAX) { /* no topic's: not compared */
		w->differ = 1;
		return 1;
	}
	struct chunk_walk c = {.a = s.ptr, .b = w->first.ptr, .len = s.len};
	bpf_loop(TOPIC_MAX / CHUNK, same_chunk, &c, 0);
	if (c.differ) {
		w->differ = 1;
		return 1;
	}
	return 0;
}

/* messages_topic copies into ev the topic of a produce call's n messages at msgs, if
 * they share one; else it marks ev's topics as differing. */
static __always_inline void messages_topic(struct kafka_event *ev, __u64 msgs, __s64 n)
{
	if (off_kafka_go_Message_Topic == OFFSET_NONE || n < 1)
		return;
	struct topic_walk w = {.msgs = msgs};
	if (read_user(&w.first, sizeof(w.first), msgs + off_kafka_go_Message_Topic) != 0)
		return;
	if (n > 1) {
		if (off_kafka_go_Message_Time == OFFSET_NONE || n > MESSAGES_MAX) {
			ev->topics_differ = 1;
			return;
		}
		w.size = off_kafka_go_Message_Time + TIME_SIZE;
		bpf_loop((__u32)n - 1, topic_step, &w, 0);
		if (w.differ) {
			ev->topics_differ = 1;
			return;
		}
	}
	ev->topic_len = copy_go_string(ev->topic, TOPIC_MAX, &w.first);
}

SEC("uprobe/Writer_WriteMessages")
int write_entry(struct go_regs *ctx)
{
	if (!kafka_enabled)
		return 0;
	__u64 g = go_goroutine(ctx);
	struct kafka_event *ev = new_entry(&produces, &g, &zero_event);
	if (!ev)
		return 0;
	ev->kind = EVENT_PRODUCE;
	ev->partition = -1;
	ev->offset = -1;
	ev->start_ns = bpf_ktime_get_ns();
	struct span_ref *parent = find_parent(go_arg(ctx, 2), go_arg(ctx, 3), 0, g, 1);
	start_client_span(parent, &ev->sc, ev->parent_span_id, &ev->has_parent, &ev->trace_flags);
	__u64 msgs = go_arg(ctx, 4);
	ev->count = (__s64)go_arg(ctx, 5);
	if (off_kafka_go_Writer_Topic != OFFSET_NONE)
		ev->topic_len = read_go_string(ev->topic, TOPIC_MAX, go_arg(ctx, 1) + off_kafka_go_Writer_Topic);
	if (ev->topic_len == 0 && msgs)
		messages_topic(ev, msgs, ev->count);
	return 0;
}

SEC("uprobe/Writer_WriteMessages_return")
int write_return(struct go_regs *ctx)
{
	__u64 g = go_goroutine(ctx);
	struct kafka_event *ev = bpf_map_lookup_elem(&produces, &g);
	if (!ev)
		return 0;
	ev->end_ns = bpf_ktime_get_ns();
	__u64 err_tab = go_arg(ctx, 1);
	if (err_tab)
		ev->error_type = read_ptr(err_tab + 8); /* itab.Type */
	submit(ev, record_size(ev));
	bpf_map_delete_elem(&produces, &g);
	return 0;
}

/* unregister ends the registration of goroutine g's consumer span (st->ref), if it is
 * still the one registered: the goroutine may have ended since, and its g serve a
 * request now, whose registration stays. */
static __always_inline void unregister(__u64 g, struct fetch_state *st)
{
	if (!st->inflight)
		return;
	st->inflight = 0;
	__u64 key = g | SPAN_BY_GOROUTINE;
	struct span_ref *ref = bpf_map_lookup_elem(&inflight_contexts, &key);
	if (!ref)
		return;
	for (int i = 0; i < SPAN_ID_SIZE; i++)
		if (ref->sc.span_id[i] != st->ref.sc.span_id[i])
			return;
	bpf_map_delete_elem(&inflight_contexts, &key);
	__u64 *k = bpf_map_lookup_elem(&inflight_goroutines, &g);
	if (k && *k == key)
		bpf_map_delete_elem(&inflight_goroutines, &g);
}

SEC("uprobe/Reader_FetchMessage")
int fetch_entry(struct go_regs *ctx)
{
	if (!kafka_enabled)
		return 0;
	__u64 g = go_goroutine(ctx);
	struct fetch_state *st = bpf_map_lookup_elem(&fetches, &g);
	if (st)
		unregister(g, st);
	st = new_entry(&fetches, &g, &zero_fetch);
	if (!st)
		return 0;
	st->active = 1;
	st->ev.start_ns = bpf_ktime_get_ns();
	st->reader = go_arg(ctx, 1);
	st->ctx_tab = go_arg(ctx, 2);
	st->ctx = go_arg(ctx, 3);
	return 0;
}

/* find_traceparent copies into st the value of the first traceparent header of the
 * message at msg (at most HEADERS_MAX looked at) and returns its length, 0 for none. */
static __always_inline __u32 find_traceparent(struct fetch_state *st, __u64 msg)
{
	if (off_kafka_go_Message_Headers == OFFSET_NONE || off_protocol_Header_Key == OFFSET_NONE ||
	    off_protocol_Header_Value == OFFSET_NONE)
		return 0;
	struct go_slice headers = {};
	if (read_user(&headers, sizeof(headers), msg + off_kafka_go_Message_Headers) != 0 || headers.len <= 0)
		return 0;
	__u64 size = off_protocol_Header_Value + SLICE_SIZE;
	const char want[] = "traceparent";
	for (int i = 0; i < HEADERS_MAX; i++) {
		if (i >= headers.len)
			break;
		__u64 h = headers.ptr + i * size;
		struct go_string key = {};
		if (read_user(&key, sizeof(key), h + off_protocol_Header_Key) != 0)
			return 0;
		if (key.len != sizeof(want) - 1)
			continue;
		char got[sizeof(want) - 1];
		if (read_user(got, sizeof(got), key.ptr) != 0)
			continue;
		int same = 1;
		for (int k = 0; k < sizeof(got); k++)
			if (got[k] != want[k])
				same = 0;
		if (!same)
			continue;
		/* A []byte's first two words are a string's. */
		return read_go_string(st->traceparent, TRACEPARENT_LEN + 1, h + off_protocol_Header_Value);
	}
	return 0;
}

/* read_group copies the consumer group's ID of reader r into ev. */
static __always_inline void read_group(struct kafka_event *ev, __u64 r)
{
	if (!r || off_kafka_go_Reader_config == OFFSET_NONE || off_kafka_go_ReaderConfig_GroupID == OFFSET_NONE)
		return;
	ev->group_len = read_go_string(ev->group, GROUP_MAX, r + off_kafka_go_Reader_config + off_kafka_go_ReaderConfig_GroupID);
}

SEC("uprobe/Reader_FetchMessage_return")
int fetch_return(struct go_regs *ctx)
{
	__u64 g = go_goroutine(ctx);
	struct fetch_state *st = bpf_map_lookup_elem(&fetches, &g);
	if (!st || !st->active) {
		/* A call whose entry the probe did not see (begun before the probes were in
		 * place): its message still gets a span, without a start, a group or the
		 * call's context. */
		if (!kafka_enabled || go_arg(ctx, 1))
			return 0;
		if (st)
			unregister(g, st);
		st = new_entry(&fetches, &g, &zero_fetch);
		if (!st)
			return 0;
	}
	st->active = 0;
	if (go_arg(ctx, 1)) { /* an error: no message */
		bpf_map_delete_elem(&fetches, &g);
		return 0;
	}
	struct kafka_event *ev = &st->ev;
	ev->kind = EVENT_CONSUME;
	ev->end_ns = bpf_ktime_get_ns();
	if (!ev->start_ns)
		ev->start_ns = ev->end_ns;
	ev->partition = -1;
	ev->offset = -1;
	__u64 msg = ctx->sp + 8; /* the Message result, on the stack */
	if (off_kafka_go_Message_Topic != OFFSET_NONE)
		ev->topic_len = read_go_string(ev->topic, TOPIC_MAX, msg + off_kafka_go_Message_Topic);
	if (off_kafka_go_Message_Partition != OFFSET_NONE)
		read_user(&ev->partition, sizeof(ev->partition), msg + off_kafka_go_Message_Partition);
	if (off_kafka_go_Message_Offset != OFFSET_NONE)
		read_user(&ev->offset, sizeof(ev->offset), msg + off_kafka_go_Message_Offset);
	read_group(ev, st->reader);

	struct span_ref *parent = 0;
	__u32 n = trace_context ? find_traceparent(st, msg) : 0;
	if (n && parse_traceparent((const char *)st->traceparent, n, ev->sc.trace_id, ev->parent_span_id,
				   &ev->trace_flags) == 0) {
		ev->has_parent = 1;
		ev->remote_parent = 1;
		random_bytes(ev->sc.span_id, SPAN_ID_SIZE);
	} else {
		parent = find_parent(st->ctx_tab, st->ctx, 0, g, 1);
		start_client_span(parent, &ev->sc, ev->parent_span_id, &ev->has_parent, &ev->trace_flags);
	}
	submit(ev, record_size(ev));

	/* The calls the goroutine makes while it handles the message: the span's children,
	 * unless it serves a request. */
	if (!(inflight_wanted & INFLIGHT_BY_GOROUTINE) || bpf_map_lookup_elem(&inflight_goroutines, &g)) {
		/* Nothing to keep until the next call: the goroutine's entry goes, so that
		 * handlers that read a message each leave none behind. */
		bpf_map_delete_elem(&fetches, &g);
		return 0;
	}
	struct span_ref *ref = &st->ref;
	__builtin_memcpy(&ref->sc, &ev->sc, sizeof(ref->sc));
	ref->flags = sample(ev->sc.trace_id, ev->has_parent, ev->trace_flags);
	ref->tracestate_len = 0;
	if (parent && parent->tracestate_len) {
		ref->tracestate_len = parent->tracestate_len;
		__builtin_memcpy(ref->tracestate, parent->tracestate, TRACESTATE_MAX);
	}
	st->inflight = inflight_begin(g, 0, ref);
	if (!st->inflight)
		bpf_map_delete_elem(&fetches, &g);
	return 0;
}
