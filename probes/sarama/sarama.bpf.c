// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/* IBM/sarama: a PRODUCER span per SyncProducer send, or per AsyncProducer message in
 * a program without a SyncProducer, and a CONSUMER span per message a partition
 * consumer receives.
 *
 * Producing. A send's entry starts the span (its parent by the call's context, in the
 * releases whose sends take one, else by the goroutine: the request's server span) and
 * each of its RETs ends it: two hits per SendMessage or SendMessages call, whatever
 * the number of messages.
 *   SendMessageContext(sp, ctx, msg) (partition int32, offset int64, err error)
 *   SendMessage(sp, msg)             the same, in releases without the above
 *   SendMessagesContext(sp, ctx, msgs []*ProducerMessage) error
 *   SendMessages(sp, msgs)           the same, in releases without the above
 * Read at the entry: the message's topic; for a batch, its length, the first message's
 * topic, and whether the next BATCH_CHECK messages' topics are the same. At a RET: the
 * error's dynamic type, else a single message's partition and offset, which the
 * function returns.
 *
 * An AsyncProducer's message: in a program that has no SyncProducer send (the loader
 * attaches these only then: a SyncProducer's messages go the same way, and would cost
 * its sends more hits), its span starts at the entry of
 *   (*topicProducer).partitionMessage(tp, msg)   once per message, retries excepted
 * and ends at the entry of the function that returns its batch's result:
 *   (*asyncProducer).returnSuccesses(p, batch []*ProducerMessage)
 *   (*asyncProducer).returnErrors(p, batch, err error)
 * At most two hits per message (one, and one per batch). They run in sarama's own
 * goroutines: the span has no parent, and starts a trace.
 *
 * Consuming. A partition consumer's goroutine turns each fetch response into the
 * messages it hands to the app's channel in parseResponse(child, response)
 * ([]*ConsumerMessage, error). Its entry notes the time; each of its RETs outputs a
 * span per message returned (at most MESSAGES_MAX), timed as the response's parse: two
 * hits per fetch response. Read per message: its offset and its headers' keys (the
 * first HEADERS_MAX), and, for a "traceparent" key, the value; the topic and partition
 * once, from the first message (a response's messages are of one partition). A
 * message's key and value are never read. A message whose traceparent is valid is
 * the span's parent (remote); without one the span starts a trace. */
#include "common.h"
#include "spans.h"
#include "client.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Field offsets in the app, named after the Go fields (kit.VarName) and set by the
 * loader. */
volatile __u64 off_sarama_ProducerMessage_Topic = OFFSET_NONE;     /* string */
volatile __u64 off_sarama_ProducerMessage_Partition = OFFSET_NONE; /* int32, set by the producer */
volatile __u64 off_sarama_ProducerMessage_Offset = OFFSET_NONE;    /* int64, set by the producer */
volatile __u64 off_sarama_ConsumerMessage_Headers = OFFSET_NONE;   /* []*RecordHeader */
volatile __u64 off_sarama_ConsumerMessage_Topic = OFFSET_NONE;     /* string */
volatile __u64 off_sarama_ConsumerMessage_Partition = OFFSET_NONE; /* int32 */
volatile __u64 off_sarama_ConsumerMessage_Offset = OFFSET_NONE;    /* int64 */
volatile __u64 off_sarama_RecordHeader_Key = OFFSET_NONE;          /* []byte */
volatile __u64 off_sarama_RecordHeader_Value = OFFSET_NONE;        /* []byte */

/* Whether the send functions probed take a context (SendMessageContext,
 * SendMessagesContext): set by the loader from the symbols the binary has. */
volatile __u64 send_message_ctx = 0;
volatile __u64 send_messages_ctx = 0;

/* Set last, once everything else is. */
volatile __u64 producer_enabled = 0;
volatile __u64 async_enabled = 0;
volatile __u64 consumer_enabled = 0;

#define EVENT_SEND 1
#define EVENT_RECEIVE 2
#define EVENT_ASYNC_SEND 3 /* a send_event */

#define TOPIC_MAX 256      /* Kafka's topic names have at most 249 characters */
#define BATCH_CHECK 64     /* a batch's messages whose topic is compared with the first's */
#define HEADERS_MAX 8      /* a consumed message's headers looked at for a traceparent */
#define MESSAGES_MAX 4096  /* spans output for one fetch response */
#define TRACEPARENT_KEY_LEN 11

struct send_event {
	__u32 kind;
	__u8 has_parent;
	__u8 trace_flags; /* the parent's */
	__u8 mixed;       /* a batch's messages are not all of the first's topic */
	__u8 batch;       /* SendMessages: count is the batch's length */
	__u64 start_ns;
	__u64 end_ns;
	struct span_context sc;
	__u8 parent_span_id[SPAN_ID_SIZE];
	__u64 error_type; /* the error's dynamic type; 0 without an error */
	__u64 count;      /* messages sent */
	__s64 offset;     /* a single message's, -1 unknown */
	__s32 partition;  /* a single message's, -1 unknown */
	__u32 topic_len;
	__u8 topic[TOPIC_MAX]; /* last: records carry only the bytes copied */
};

struct receive_event {
	__u32 kind;
	__u8 has_parent; /* the message carried a valid traceparent */
	__u8 trace_flags;
	__u8 _pad[2];
	__u64 start_ns;
	__u64 end_ns;
	struct span_context sc;
	__u8 parent_span_id[SPAN_ID_SIZE];
	__s64 offset;
	__s32 partition;
	__u32 topic_len;
	__u8 topic[TOPIC_MAX]; /* last: records carry only the bytes copied */
};

/* Sends in flight, by goroutine: a send blocks its goroutine until it is done. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct send_event);
} sends SEC(".maps");

/* Fetch responses being parsed, by goroutine: when the parse began. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, __u64);
} fetches SEC(".maps");

/* The record being built for a fetch response's messages, by goroutine: too large
 * for the BPF stack. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct receive_event);
} receives SEC(".maps");

/* AsyncProducer messages in flight, by the message's address, from their partitioning
 * to their result. An LRU map: a message whose failure goes through returnError, which
 * the compiler inlines into its callers (nowhere to probe), never ends, and is evicted
 * by newer ones; so is the oldest of more than ASYNC_MAX messages in flight. */
#define ASYNC_MAX 4096
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, ASYNC_MAX);
	__type(key, __u64);
	__type(value, struct send_event);
} async_sends SEC(".maps");

/* Zeroes to create map entries from. Never written. */
struct send_event zero_send;
struct receive_event zero_receive;

const struct send_event *unused_send_event __attribute__((unused));       /* bpf2go -type */
const struct receive_event *unused_receive_event __attribute__((unused)); /* bpf2go -type */

/* send_begin starts goroutine g's send span: its parent by the call's context (itab
 * and data words; 0 for none) or by g. */
static __always_inline struct send_event *send_begin(__u64 g, __u64 ctx_tab, __u64 ctx)
{
	struct send_event *ev = new_entry(&sends, &g, &zero_send);
	if (!ev)
		return 0;
	ev->kind = EVENT_SEND;
	ev->offset = -1;
	ev->partition = -1;
	ev->start_ns = bpf_ktime_get_ns();
	struct span_ref *parent = find_parent(ctx_tab, ctx, 0, g, 1);
	start_client_span(parent, &ev->sc, ev->parent_span_id, &ev->has_parent, &ev->trace_flags);
	return ev;
}

/* send_end outputs goroutine g's send span, with the error it ended with. */
static __always_inline struct send_event *send_end(__u64 g, __u64 err_tab)
{
	struct send_event *ev = bpf_map_lookup_elem(&sends, &g);
	if (!ev)
		return 0;
	ev->end_ns = bpf_ktime_get_ns();
	if (err_tab)
		ev->error_type = read_ptr(err_tab + 8); /* itab.Type */
	return ev;
}

static __always_inline void send_submit(__u64 g, struct send_event *ev)
{
	__u64 size = sizeof(*ev) - TOPIC_MAX + ev->topic_len;
	if (size > sizeof(*ev))
		size = sizeof(*ev);
	submit(ev, size);
	bpf_map_delete_elem(&sends, &g);
}

/* send_args are a send's arguments after the receiver: a context's two words (0 for
 * none), then the message pointer, or the batch's array and length. Each register is
 * read on its own (the barriers): a context read at an offset chosen at run time is
 * refused by the verifier. */
struct send_args {
	__u64 ctx_tab, ctx, a, n;
};

static __always_inline void read_send_args(struct go_regs *ctx, int with_ctx, struct send_args *s)
{
	__u64 r2 = go_arg(ctx, 2), r3 = go_arg(ctx, 3), r4 = go_arg(ctx, 4), r5 = go_arg(ctx, 5);
	asm volatile("" : "+r"(r2), "+r"(r3), "+r"(r4), "+r"(r5));
	if (with_ctx) {
		s->ctx_tab = r2;
		s->ctx = r3;
		s->a = r4;
		s->n = r5;
	} else {
		s->ctx_tab = 0;
		s->ctx = 0;
		s->a = r2;
		s->n = r3;
	}
}

/* read_topic reads the topic string header of the ProducerMessage at msg. */
static __always_inline int read_topic(struct go_string *s, __u64 msg)
{
	if (!msg || off_sarama_ProducerMessage_Topic == OFFSET_NONE)
		return -1;
	return read_user(s, sizeof(*s), msg + off_sarama_ProducerMessage_Topic);
}

SEC("uprobe/syncProducer_SendMessage")
int send_message_entry(struct go_regs *ctx)
{
	if (!producer_enabled)
		return 0;
	__u64 g = go_goroutine(ctx);
	struct send_args a;
	read_send_args(ctx, send_message_ctx != 0, &a);
	struct send_event *ev = send_begin(g, a.ctx_tab, a.ctx);
	if (!ev)
		return 0;
	ev->count = 1;
	struct go_string topic = {};
	if (read_topic(&topic, a.a) == 0)
		ev->topic_len = copy_go_string(ev->topic, TOPIC_MAX, &topic);
	return 0;
}

/* SendMessage returns the message's partition and offset, -1 and -1 with an error. */
SEC("uprobe/syncProducer_SendMessage_return")
int send_message_return(struct go_regs *ctx)
{
	__u64 g = go_goroutine(ctx);
	__u64 err_tab = go_arg(ctx, 3);
	struct send_event *ev = send_end(g, err_tab);
	if (!ev)
		return 0;
	if (!err_tab) {
		ev->partition = (__s32)go_arg(ctx, 1);
		ev->offset = (__s64)go_arg(ctx, 2);
	}
	send_submit(g, ev);
	return 0;
}

/* What the batch check's loop steps see: scalars only. */
struct batch_check {
	__u64 msgs;  /* the slice's array of *ProducerMessage */
	__u64 n;     /* messages to compare with the first */
	struct go_string first;
	__u8 mixed;
};

/* same_bytes reports whether the n bytes at a and b in the app are the same, a word at
 * a time; n is at most TOPIC_MAX. A global function: verified once, not in every path
 * of the batch loop's step. */
__noinline int same_bytes(__u64 a, __u64 b, __u64 n)
{
	for (int i = 0; i < TOPIC_MAX / 8; i++) {
		__u64 at = (__u64)i * 8;
		if (at >= n)
			break;
		__u64 left = n - at;
		__u32 k = left < 8 ? (__u32)left : 8;
		asm volatile("" : "+r"(k));
		if (k < 1 || k > 8)
			return 0;
		__u64 x = 0, y = 0;
		if (bpf_probe_read_user(&x, k, (const void *)(a + at)) != 0 ||
		    bpf_probe_read_user(&y, k, (const void *)(b + at)) != 0 || x != y)
			return 0;
	}
	return 1;
}

/* batch_step compares the topic of message i + 1 with the first message's; it stops
 * the loop at the first that differs. */
static long batch_step(__u32 i, void *arg)
{
	struct batch_check *c = arg;
	if (i + 1 >= c->n)
		return 1;
	struct go_string t = {};
	if (read_topic(&t, read_ptr(c->msgs + (__u64)(i + 1) * 8)) != 0)
		return 1;
	if (t.len == c->first.len && t.ptr == c->first.ptr)
		return 0;
	if (t.len != c->first.len || t.len > TOPIC_MAX || !same_bytes(t.ptr, c->first.ptr, t.len)) {
		c->mixed = 1;
		return 1;
	}
	return 0;
}

SEC("uprobe/syncProducer_SendMessages")
int send_messages_entry(struct go_regs *ctx)
{
	if (!producer_enabled)
		return 0;
	__u64 g = go_goroutine(ctx);
	struct send_args a;
	read_send_args(ctx, send_messages_ctx != 0, &a);
	struct send_event *ev = send_begin(g, a.ctx_tab, a.ctx);
	if (!ev)
		return 0;
	__u64 msgs = a.a;
	__s64 n = (__s64)a.n;
	ev->batch = 1;
	ev->count = n > 0 ? n : 0;
	if (n <= 0)
		return 0;
	struct batch_check c = {.msgs = msgs, .n = n < BATCH_CHECK ? n : BATCH_CHECK};
	if (read_topic(&c.first, read_ptr(msgs)) != 0)
		return 0;
	ev->topic_len = copy_go_string(ev->topic, TOPIC_MAX, &c.first);
	if (c.n > 1)
		bpf_loop(BATCH_CHECK, batch_step, &c, 0);
	ev->mixed = c.mixed;
	return 0;
}

SEC("uprobe/syncProducer_SendMessages_return")
int send_messages_return(struct go_regs *ctx)
{
	__u64 g = go_goroutine(ctx);
	struct send_event *ev = send_end(g, go_arg(ctx, 1));
	if (ev)
		send_submit(g, ev);
	return 0;
}

SEC("uprobe/partitionConsumer_parseResponse")
int parse_response_entry(struct go_regs *ctx)
{
	if (!consumer_enabled)
		return 0;
	__u64 g = go_goroutine(ctx);
	__u64 now = bpf_ktime_get_ns();
	bpf_map_update_elem(&fetches, &g, &now, BPF_ANY);
	return 0;
}

/* What the message loop's steps see: scalars only; the record is looked up by g. */
struct receive_loop {
	__u64 g;
	__u64 msgs; /* the slice's array of *ConsumerMessage */
	__u64 n;
};

/* traceparent_value finds the header "traceparent" among the first HEADERS_MAX of the
 * headers h (a []*RecordHeader) and returns its value's slice header in v. */
static __always_inline int traceparent_value(struct go_slice *v, const struct go_slice *h)
{
	/* "traceparent", as two little-endian words. */
	const __u64 key0 = 0x7261706563617274ULL; /* "tracepar" */
	const __u64 key1 = 0x746e65ULL;           /* "ent" */
	for (int j = 0; j < HEADERS_MAX; j++) {
		if (j >= h->len)
			break;
		__u64 hdr = read_ptr(h->ptr + (__u64)j * 8);
		struct go_slice key = {};
		if (!hdr || read_user(&key, sizeof(key), hdr + off_sarama_RecordHeader_Key) != 0 ||
		    key.len != TRACEPARENT_KEY_LEN)
			continue;
		__u64 w[2] = {};
		if (bpf_probe_read_user(w, TRACEPARENT_KEY_LEN, (const void *)key.ptr) != 0)
			continue;
		if (w[0] != key0 || w[1] != key1)
			continue;
		return read_user(v, sizeof(*v), hdr + off_sarama_RecordHeader_Value);
	}
	return -1;
}

/* receive_step outputs the span of message i. */
static long receive_step(__u32 i, void *arg)
{
	struct receive_loop *l = arg;
	if (i >= l->n)
		return 1;
	struct receive_event *ev = bpf_map_lookup_elem(&receives, &l->g);
	if (!ev)
		return 1;
	__u64 m = read_ptr(l->msgs + (__u64)i * 8);
	if (!m)
		return 0;
	ev->offset = -1;
	read_user(&ev->offset, sizeof(ev->offset), m + off_sarama_ConsumerMessage_Offset);
	ev->has_parent = 0;
	ev->trace_flags = 0;
	struct go_slice headers = {}, value = {};
	if (trace_context && off_sarama_ConsumerMessage_Headers != OFFSET_NONE &&
	    off_sarama_RecordHeader_Key != OFFSET_NONE && off_sarama_RecordHeader_Value != OFFSET_NONE &&
	    read_user(&headers, sizeof(headers), m + off_sarama_ConsumerMessage_Headers) == 0 &&
	    traceparent_value(&value, &headers) == 0 && value.len >= TRACEPARENT_LEN) {
		/* The first TRACEPARENT_LEN + 1 bytes: parse_traceparent tells a version 00
		 * value from a longer one by the byte after. */
		char tp[TRACEPARENT_LEN + 1] = {};
		__u32 len = value.len > TRACEPARENT_LEN ? TRACEPARENT_LEN + 1 : TRACEPARENT_LEN;
		if (bpf_probe_read_user(tp, len, (const void *)value.ptr) == 0 &&
		    parse_traceparent(tp, value.len, ev->sc.trace_id, ev->parent_span_id, &ev->trace_flags) == 0)
			ev->has_parent = 1;
	}
	if (!ev->has_parent)
		random_bytes(ev->sc.trace_id, TRACE_ID_SIZE);
	random_bytes(ev->sc.span_id, SPAN_ID_SIZE);
	__u64 size = sizeof(*ev) - TOPIC_MAX + ev->topic_len;
	if (size > sizeof(*ev))
		size = sizeof(*ev);
	submit(ev, size);
	return 0;
}

/* parseResponse returns the messages (array, length, capacity) and an error. */
SEC("uprobe/partitionConsumer_parseResponse_return")
int parse_response_return(struct go_regs *ctx)
{
	__u64 g = go_goroutine(ctx);
	__u64 *start = bpf_map_lookup_elem(&fetches, &g);
	if (!start)
		return 0;
	__u64 start_ns = *start;
	bpf_map_delete_elem(&fetches, &g);
	__u64 msgs = go_arg(ctx, 1);
	__s64 n = (__s64)go_arg(ctx, 2);
	if (n <= 0 || !msgs || off_sarama_ConsumerMessage_Offset == OFFSET_NONE)
		return 0;
	struct receive_event *ev = new_entry(&receives, &g, &zero_receive);
	if (!ev)
		return 0;
	ev->kind = EVENT_RECEIVE;
	ev->start_ns = start_ns;
	ev->end_ns = bpf_ktime_get_ns();
	ev->partition = -1;
	__u64 first = read_ptr(msgs);
	if (off_sarama_ConsumerMessage_Topic != OFFSET_NONE)
		ev->topic_len = read_go_string(ev->topic, TOPIC_MAX, first + off_sarama_ConsumerMessage_Topic);
	if (off_sarama_ConsumerMessage_Partition != OFFSET_NONE)
		read_user(&ev->partition, sizeof(ev->partition), first + off_sarama_ConsumerMessage_Partition);
	struct receive_loop l = {.g = g, .msgs = msgs, .n = n < MESSAGES_MAX ? n : MESSAGES_MAX};
	bpf_loop(MESSAGES_MAX, receive_step, &l, 0);
	bpf_map_delete_elem(&receives, &g);
	return 0;
}

SEC("uprobe/topicProducer_partitionMessage")
int partition_message_entry(struct go_regs *ctx)
{
	if (!async_enabled)
		return 0;
	__u64 msg = go_arg(ctx, 2);
	if (!msg)
		return 0;
	struct send_event *ev = new_entry(&async_sends, &msg, &zero_send);
	if (!ev)
		return 0;
	ev->kind = EVENT_ASYNC_SEND;
	ev->count = 1;
	ev->offset = -1;
	ev->partition = -1;
	ev->start_ns = bpf_ktime_get_ns();
	start_client_span(0, &ev->sc, ev->parent_span_id, &ev->has_parent, &ev->trace_flags);
	struct go_string topic = {};
	if (read_topic(&topic, msg) == 0)
		ev->topic_len = copy_go_string(ev->topic, TOPIC_MAX, &topic);
	return 0;
}

/* What the batch result loop's steps see: scalars only. */
struct async_result {
	__u64 msgs; /* the batch's array of *ProducerMessage */
	__u64 n;
	__u64 err_type; /* the error's dynamic type; 0 for successes */
	__u64 now;
};

/* async_end_step outputs the span of the batch's message i, if it has one. */
static long async_end_step(__u32 i, void *arg)
{
	struct async_result *r = arg;
	if (i >= r->n)
		return 1;
	__u64 msg = read_ptr(r->msgs + (__u64)i * 8);
	struct send_event *ev = msg ? bpf_map_lookup_elem(&async_sends, &msg) : 0;
	if (!ev)
		return 0;
	ev->end_ns = r->now;
	ev->error_type = r->err_type;
	if (!r->err_type) {
		if (off_sarama_ProducerMessage_Partition != OFFSET_NONE)
			read_user(&ev->partition, sizeof(ev->partition), msg + off_sarama_ProducerMessage_Partition);
		if (off_sarama_ProducerMessage_Offset != OFFSET_NONE)
			read_user(&ev->offset, sizeof(ev->offset), msg + off_sarama_ProducerMessage_Offset);
	}
	__u64 size = sizeof(*ev) - TOPIC_MAX + ev->topic_len;
	if (size > sizeof(*ev))
		size = sizeof(*ev);
	submit(ev, size);
	bpf_map_delete_elem(&async_sends, &msg);
	return 0;
}

static __always_inline void async_results(__u64 msgs, __s64 n, __u64 err_tab)
{
	if (!async_enabled || !msgs || n <= 0)
		return;
	struct async_result r = {.msgs = msgs, .n = n < MESSAGES_MAX ? n : MESSAGES_MAX, .now = bpf_ktime_get_ns()};
	if (err_tab)
		r.err_type = read_ptr(err_tab + 8); /* itab.Type */
	bpf_loop(MESSAGES_MAX, async_end_step, &r, 0);
}

SEC("uprobe/asyncProducer_returnSuccesses")
int return_successes_entry(struct go_regs *ctx)
{
	async_results(go_arg(ctx, 2), (__s64)go_arg(ctx, 3), 0);
	return 0;
}

/* returnErrors(p, batch, err): the batch's three words, then the error's two. */
SEC("uprobe/asyncProducer_returnErrors")
int return_errors_entry(struct go_regs *ctx)
{
	async_results(go_arg(ctx, 2), (__s64)go_arg(ctx, 3), go_arg(ctx, 5));
	return 0;
}
