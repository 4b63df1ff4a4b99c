// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/* The OpenTelemetry API's global tracer, bridged by reading: a span of ours for each
 * span an app without an SDK starts through go.opentelemetry.io/otel.
 *
 * With no SDK set, the API's global tracer starts every span in
 * (*global.tracer).newSpan(t, ctx, autoSpan *bool, name, opts []SpanStartOption),
 * kept out of line for probes, which returns (ctx, span): span a nonRecordingSpan
 * VALUE in a trace.Span interface, ctx a *context.valueCtx holding it. The value has
 * no identity of its own but the data word of the interface that holds it: that is the
 * span's key here (and the data word of the valueCtx's val, another allocation, an
 * alias for trace.SpanFromContext(ctx) callers).
 *
 *   newSpan's entry  starts our span: its name, the tracer's scope (a TRACER record the
 *                    first time a tracer is seen), its kind and attributes from the
 *                    options, its parent by the context, up its parents (spans.h).
 *   newSpan's RETs   key it by the span returned, and register it for the context
 *                    returned in inflight_contexts: API spans and every probe's client
 *                    spans started from that context (or one derived from it) are its
 *                    children. A START record.
 *   the span's methods, reached through the trace.Span interface: the compiler's
 *                    pointer-receiver wrappers (*nonRecordingSpan).M, whose first
 *                    argument is the interface's data word: SetAttributes, SetStatus,
 *                    SetName, RecordError, AddEvent, AddLink - one record each - and End, which
 *                    unregisters the context and outputs END. Any goroutine.
 *
 * Userspace assembles the span from its records (probes/otelapi), by key. Nothing is
 * written to the app: autoSpan (the flag another agent writes to switch the API to its
 * SDK) is only read, and a span it switched is not ours.
 *
 * Options are told apart by what they are: WithAttributes is an attributeOption (a
 * []attribute.KeyValue), WithTimestamp a timestampOption, by their type descriptors;
 * WithSpanKind, WithInstrumentationVersion, WithSchemaURL and WithLinks are closures
 * (spanOptionFunc, tracerOptionFunc), by their code's address - each call site that
 * inlined them has its own copy, all of which the loader finds by name. Both go in
 * option_addrs. */
#include "common.h"
#include "spans.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Field offsets in the app (kit.VarName), set by the loader. */
volatile __u64 off_global_tracer_name = OFFSET_NONE;      /* string */
volatile __u64 off_global_tracer_opts = OFFSET_NONE;      /* []trace.TracerOption */
volatile __u64 off_attribute_KeyValue_Value = OFFSET_NONE; /* attribute.Value; Key is first */
volatile __u64 off_attribute_Value_vtype = OFFSET_NONE;   /* attribute.Type (int) */
volatile __u64 off_attribute_Value_numeric = OFFSET_NONE; /* uint64: bool, int64, float64 bits */
volatile __u64 off_attribute_Value_stringly = OFFSET_NONE; /* string */
volatile __u64 off_attribute_Value_slice = OFFSET_NONE;   /* any: the last field, sizing a KeyValue */
/* A trace.Link (WithLinks): its SpanContext's IDs and flags, and its Attributes, the
 * last field, sizing a Link; measured by the probe (selfMeasured). */
volatile __u64 link_sc_off = OFFSET_NONE;
volatile __u64 link_attrs_off = OFFSET_NONE;
volatile __u64 sc_traceid_off = OFFSET_NONE; /* [16]byte */
volatile __u64 sc_spanid_off = OFFSET_NONE;  /* [8]byte */
volatile __u64 sc_flags_off = OFFSET_NONE;   /* byte */
volatile __u64 sc_remote_off = OFFSET_NONE;  /* bool */
/* Standard library fields, which the probe measures itself (selfMeasured). */
volatile __u64 valuectx_val_off = OFFSET_NONE;  /* context.valueCtx.val (any): the span, for the alias */
volatile __u64 errorstring_s_off = OFFSET_NONE; /* errors.errorString.s (string) */
volatile __u64 wraperror_msg_off = OFFSET_NONE; /* fmt.wrapError.msg (string) */
/* Type descriptors, by their link addresses in the binary; 0 for none. */
volatile __u64 type_context_valueCtx = 0; /* *context.valueCtx */
volatile __u64 type_errors_errorString = 0; /* *errors.errorString */
volatile __u64 type_fmt_wrapError = 0;      /* *fmt.wrapError */

/* Where the app is loaded: a position-independent app's addresses are its link
 * addresses plus a bias known only once it runs - after the gate, perhaps after its
 * first spans. So the programs learn it themselves, from where newSpan's entry probe
 * fired (its link address, new_span_link, is the loader's), page-aligned as a load
 * bias is: every address they compare (types, option closures) is taken back to a
 * link address. 0 for an app at fixed addresses. */
volatile __u64 new_span_link = 0;
__u64 app_bias = 0;

static __always_inline __u64 go_ip(const struct go_regs *r)
{
#if defined(__TARGET_ARCH_x86)
	return r->ip;
#else
	return r->pc;
#endif
}

/* Where AddLink's probe sits: 1 after its frame's set-up (offsets.FramedEntryOffset),
 * where the stack is a word lower, its BP pushed; 0 at its first instruction. */
volatile __u64 add_link_framed = 0;

/* Set last, once everything else is. */
volatile __u64 otelapi_enabled = 0;

/* Record kinds. */
#define EVENT_TRACER 1 /* key: the tracer; text: its name; attrs[0..1]: version, schema URL */
#define EVENT_START 2
#define EVENT_ATTRIBUTES 3
#define EVENT_STATUS 4 /* code; text: the description */
#define EVENT_NAME 5   /* text: the new name */
#define EVENT_ERROR 6  /* error_type; text: the message, for the error types read */
#define EVENT_EVENT 7  /* text: the event's name; attrs: its attributes */
#define EVENT_END 8
#define EVENT_LINK 9   /* links[0]: the link's span context; attrs: its attributes */

/* What an address in option_addrs is. */
#define OPT_ATTRIBUTES 1 /* an attributeOption's type */
#define OPT_TIMESTAMP 2  /* a timestampOption's type */
#define OPT_KIND 3       /* WithSpanKind's closure: the kind, an int, at +8 */
#define OPT_VERSION 4    /* WithInstrumentationVersion's closure: a string at +8 */
#define OPT_SCHEMA 5     /* WithSchemaURL's closure: a string at +8 */
#define OPT_NEW_ROOT 6   /* WithNewRoot's closure */
#define OPT_LINKS 7      /* WithLinks' closure: a []trace.Link at +8 */

/* Bounds: attributes per record (the first ones), a key's and a string's bytes, a
 * name's; options read per call. */
#define ATTRS_MAX 16
#define KEY_MAX 64
#define VALUE_MAX 128
#define TEXT_MAX 128
#define OPTIONS_MAX 8
#define LINKS_MAX 4 /* links read of a span's start (their attributes are not) */

/* attribute.Type values read (their numbers in every release); SLICE and MAP (of
 * Values, from v1.41.0) are sent with their type only. */
#define TYPE_BOOL 1
#define TYPE_INT64 2
#define TYPE_FLOAT64 3
#define TYPE_STRING 4
#define TYPE_BOOLSLICE 5
#define TYPE_INT64SLICE 6
#define TYPE_FLOAT64SLICE 7
#define TYPE_STRINGSLICE 8
#define TYPE_BYTESLICE 9 /* in stringly, as a string */

/* A string slice's elements: the first STRINGS_MAX, each in a STRING_SLOT-byte slot of
 * value, cut there, its length in numeric's bytes. */
#define STRINGS_MAX 4
#define STRING_SLOT (VALUE_MAX / STRINGS_MAX)

struct api_attr {
	__u8 type;      /* attribute.Type */
	__u8 key_len;   /* copied; 0: the key was longer than KEY_MAX, the attribute dropped */
	__u16 value_len; /* a string's bytes copied; a slice's: bytes of value used, or
	                  * a string slice's elements */
	__u32 value_full; /* a string's length; a slice's elements */
	__u64 numeric;  /* a string slice's: each element's bytes copied, one a byte */
	__u8 key[KEY_MAX];
	__u8 value[VALUE_MAX];
};

struct api_link {
	__u8 trace_id[TRACE_ID_SIZE];
	__u8 span_id[SPAN_ID_SIZE];
	__u8 flags;
	__u8 remote;
	__u8 _pad[6];
};

/* One record of any kind: sent up to attrs[attrs_read]. */
struct api_event {
	__u32 kind;
	__u8 span_kind; /* START: trace.SpanKind from the options; 0: unspecified */
	__u8 has_parent;
	__u8 flags;     /* the parent's W3C flags */
	__u8 attrs_read; /* attributes in attrs */
	__u64 key;      /* the span (its data word); TRACER: the tracer */
	__u64 ctx;      /* START: the context registered, 0 for none */
	__u64 alias;    /* START: the span's other data word, 0 for none */
	__u64 tracer;   /* START */
	__u64 time_ns;  /* CLOCK_MONOTONIC */
	__u64 error_type; /* ERROR: the error's dynamic type, its link address */
	/* A WithTimestamp option's time.Time (START, EVENT, END): its wall and ext words,
	 * which userspace reads as package time does; has_time says there was one. */
	__u64 time_wall;
	__s64 time_ext;
	__u32 has_time;
	__u32 new_root; /* START: WithNewRoot - no parent, whatever the context */
	__u32 links_read; /* START: links in links */
	__u32 links_total;
	__u32 code;     /* STATUS: codes.Code */
	__u32 attrs_total; /* attributes the call had */
	__u32 text_len; /* copied */
	__u32 text_full;
	struct span_context sc;
	__u8 parent_span_id[SPAN_ID_SIZE];
	struct api_link links[LINKS_MAX];
	__u8 text[TEXT_MAX];
	struct api_attr attrs[ATTRS_MAX];
};

/* A span of ours, by its key. Bounded: a span never ended leaves, the least recently
 * used first; userspace counts them. */
struct api_span {
	__u64 ctx;   /* the context registered in inflight_contexts, 0 for none */
	__u64 alias;
	struct span_context sc;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct api_span);
} api_spans SEC(".maps");

/* The span's other data word -> its key. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} api_aliases SEC(".maps");

/* What newSpan's entry leaves its RET, by goroutine: the span's reference for its
 * context (its IDs, the parent's tracestate). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct span_ref);
} starting SEC(".maps");

/* Each goroutine's record in the making: too large for the stack. Goroutines are
 * reused by the runtime, and the map is an LRU: bounded without a delete per call. A
 * record built at newSpan's entry waits there for its RET, in the same goroutine. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct api_event);
} records SEC(".maps");

/* Tracers whose TRACER record went out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u8);
} tracers_seen SEC(".maps");

/* Option types and closures' code (OPT_*), by their link address: the loader's. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u64);
	__type(value, __u32);
} option_addrs SEC(".maps");

struct api_event zero_event;
struct span_ref zero_ref;

const struct api_event *unused_api_event __attribute__((unused)); /* bpf2go -type */
const struct api_attr *unused_api_attr __attribute__((unused));
const struct api_link *unused_api_link __attribute__((unused));

static __always_inline struct api_event *record_for(__u64 g)
{
	struct api_event *ev = bpf_map_lookup_elem(&records, &g);
	if (ev)
		return ev;
	return new_entry(&records, &g, &zero_event);
}

static __always_inline void send(struct api_event *ev)
{
	__u32 n = ev->attrs_read;
	if (n > ATTRS_MAX)
		n = ATTRS_MAX;
	submit(ev, __builtin_offsetof(struct api_event, attrs) + n * sizeof(struct api_attr));
}

/* read_slice reads the slice of a slice attribute: an interface holding an array
 * [N]T, its length its type's size (abi.Type.Size_, first) over T's. A global
 * function: verified once, not once per attribute read_attrs' loop reads. */
__noinline int read_slice(struct api_attr *a, __u64 v, __u32 vtype)
{
	struct go_iface arr = {};
	if (!a || read_user(&arr, sizeof(arr), v + off_attribute_Value_slice) != 0 || !arr.tab || !arr.data)
		return 0;
	__u64 size = read_ptr(arr.tab);
	__u64 elem = vtype == TYPE_BOOLSLICE ? 1 : vtype == TYPE_STRINGSLICE ? 16 : 8;
	__u64 n = size / elem;
	a->value_full = n > 0xffffffff ? 0xffffffff : n;
	if (vtype != TYPE_STRINGSLICE) {
		__u64 bytes = size < VALUE_MAX ? size : VALUE_MAX;
		if (elem == 8)
			bytes &= ~7ULL; /* whole elements */
		asm volatile("" : "+r"(bytes));
		if (bytes == 0 || bytes > VALUE_MAX)
			return 0;
		if (bpf_probe_read_user(a->value, bytes, (void *)arr.data) == 0)
			a->value_len = bytes;
		return 0;
	}
	for (int i = 0; i < STRINGS_MAX; i++) {
		if (i >= n)
			break;
		struct go_string s = {};
		if (read_user(&s, sizeof(s), arr.data + i * 16) != 0)
			break;
		((__u8 *)&a->numeric)[i] = copy_go_string(a->value + i * STRING_SLOT, STRING_SLOT, &s);
		a->value_len = i + 1;
	}
	return 0;
}

/* read_attr reads the attribute.KeyValue at kv into a. */
static __always_inline int read_attr(struct api_attr *a, __u64 kv)
{
	struct go_string key = {};
	if (read_user(&key, sizeof(key), kv) != 0 || key.len <= 0 || key.len > KEY_MAX)
		return 0;
	a->key_len = copy_go_string(a->key, KEY_MAX, &key);
	__u64 v = kv + off_attribute_KeyValue_Value;
	__u64 vtype = read_ptr(v + off_attribute_Value_vtype);
	a->type = vtype;
	a->value_len = 0;
	a->value_full = 0;
	a->numeric = read_ptr(v + off_attribute_Value_numeric);
	if (vtype == TYPE_STRING || vtype == TYPE_BYTESLICE) {
		struct go_string s = {};
		if (read_user(&s, sizeof(s), v + off_attribute_Value_stringly) == 0 && s.len > 0) {
			a->value_full = s.len;
			a->value_len = copy_go_string(a->value, VALUE_MAX, &s);
		}
	} else if (vtype >= TYPE_BOOLSLICE && vtype <= TYPE_STRINGSLICE) {
		a->numeric = 0;
		read_slice(a, v, vtype);
	}
	return a->key_len > 0;
}

/* read_attrs appends the attributes of the []attribute.KeyValue (ptr, n) to ev. A
 * global function: verified once, not once per option a caller's loop reads. */
__noinline int read_attrs(struct api_event *ev, __u64 ptr, __s64 n)
{
	if (!ev || off_attribute_KeyValue_Value == OFFSET_NONE || off_attribute_Value_vtype == OFFSET_NONE ||
	    off_attribute_Value_numeric == OFFSET_NONE || off_attribute_Value_stringly == OFFSET_NONE ||
	    off_attribute_Value_slice == OFFSET_NONE || !ptr || n <= 0)
		return 0;
	/* A KeyValue's size: its Value's last field, an interface, ends it. */
	__u64 size = off_attribute_KeyValue_Value + off_attribute_Value_slice + 16;
	ev->attrs_total += n;
	for (int i = 0; i < ATTRS_MAX; i++) {
		if (i >= n)
			break;
		__u32 at = ev->attrs_read;
		if (at >= ATTRS_MAX)
			break;
		if (read_attr(&ev->attrs[at], ptr + i * size))
			ev->attrs_read = at + 1;
	}
	return 0;
}

/* begin_record is the goroutine's record, reset for a call of kind on span key. */
static __always_inline struct api_event *begin_record(__u64 g, __u32 kind, __u64 key)
{
	struct api_event *ev = record_for(g);
	if (!ev)
		return 0;
	ev->kind = kind;
	ev->key = key;
	ev->attrs_read = 0;
	ev->attrs_total = 0;
	ev->text_len = 0;
	ev->text_full = 0;
	ev->has_time = 0;
	ev->new_root = 0;
	ev->links_read = 0;
	ev->links_total = 0;
	ev->time_ns = bpf_ktime_get_ns();
	return ev;
}

static __always_inline void set_text(struct api_event *ev, __u64 ptr, __s64 len)
{
	struct go_string s = {.ptr = ptr, .len = len};
	ev->text_full = len > 0 ? len : 0;
	ev->text_len = copy_go_string(ev->text, TEXT_MAX, &s);
}

/* closure_string copies the string a closure captured (at +8) into a. */
static __always_inline void closure_string(struct api_attr *a, __u64 fn)
{
	struct go_string s = {};
	if (read_user(&s, sizeof(s), fn + 8) != 0)
		return;
	a->value_full = s.len > 0 ? s.len : 0;
	a->value_len = copy_go_string(a->value, VALUE_MAX, &s);
}

/* tracer_record outputs the tracer t's scope the first time it is seen: its name,
 * and its version and schema URL from its options, in attrs[0] and attrs[1]. */
static __always_inline void tracer_record(__u64 g, __u64 t)
{
	if (!t || bpf_map_lookup_elem(&tracers_seen, &t))
		return;
	struct api_event *ev = begin_record(g, EVENT_TRACER, t);
	if (!ev)
		return;
	__u8 one = 1;
	bpf_map_update_elem(&tracers_seen, &t, &one, BPF_ANY);
	if (off_global_tracer_name != OFFSET_NONE) {
		struct go_string s = {};
		if (read_user(&s, sizeof(s), t + off_global_tracer_name) == 0)
			set_text(ev, s.ptr, s.len);
	}
	ev->attrs[0].value_len = 0;
	ev->attrs[1].value_len = 0;
	ev->attrs_read = 2;
	struct go_slice opts = {};
	if (off_global_tracer_opts != OFFSET_NONE && read_user(&opts, sizeof(opts), t + off_global_tracer_opts) == 0 && opts.ptr) {
		for (int i = 0; i < OPTIONS_MAX; i++) {
			if (i >= opts.len)
				break;
			struct go_iface o = {};
			if (read_user(&o, sizeof(o), opts.ptr + i * sizeof(o)) != 0 || !o.data)
				continue;
			__u64 fn = read_ptr(o.data) - app_bias;
			__u32 *what = bpf_map_lookup_elem(&option_addrs, &fn);
			if (!what)
				continue;
			if (*what == OPT_VERSION)
				closure_string(&ev->attrs[0], o.data);
			else if (*what == OPT_SCHEMA)
				closure_string(&ev->attrs[1], o.data);
		}
	}
	send(ev);
}

/* read_link reads the trace.SpanContext at sc into l. */
static __always_inline int read_link(struct api_link *l, __u64 sc)
{
	if (read_user(l->trace_id, TRACE_ID_SIZE, sc + sc_traceid_off) != 0 ||
	    read_user(l->span_id, SPAN_ID_SIZE, sc + sc_spanid_off) != 0)
		return 0;
	l->flags = 0;
	l->remote = 0;
	if (sc_flags_off != OFFSET_NONE)
		read_user(&l->flags, 1, sc + sc_flags_off);
	if (sc_remote_off != OFFSET_NONE)
		read_user(&l->remote, 1, sc + sc_remote_off);
	return 1;
}

/* read_links reads the first LINKS_MAX links of a []trace.Link (ptr, n): their span
 * contexts. A global function: verified once. */
__noinline int read_links(struct api_event *ev, __u64 ptr, __s64 n)
{
	if (!ev || !ptr || n <= 0 || link_sc_off == OFFSET_NONE || link_attrs_off == OFFSET_NONE ||
	    sc_traceid_off == OFFSET_NONE || sc_spanid_off == OFFSET_NONE)
		return 0;
	__u64 size = link_attrs_off + 24; /* a slice, its last field */
	ev->links_total += n;
	for (int i = 0; i < LINKS_MAX; i++) {
		if (i >= n)
			break;
		__u32 at = ev->links_read;
		if (at >= LINKS_MAX)
			break;
		if (read_link(&ev->links[at], ptr + i * size + link_sc_off))
			ev->links_read = at + 1;
	}
	return 0;
}

/* start_options reads a span's start options (or an event's, or End's): its kind,
 * its attributes, its timestamp. */
static __always_inline void start_options(struct api_event *ev, __u64 ptr, __s64 n)
{
	if (!ptr)
		return;
	for (int i = 0; i < OPTIONS_MAX; i++) {
		if (i >= n)
			break;
		struct go_iface o = {};
		if (read_user(&o, sizeof(o), ptr + i * sizeof(o)) != 0 || !o.tab || !o.data)
			continue;
		__u64 type = read_ptr(o.tab + 8) - app_bias; /* itab.Type */
		__u32 *what = bpf_map_lookup_elem(&option_addrs, &type);
		if (what && *what == OPT_ATTRIBUTES) {
			struct go_slice kvs = {};
			if (read_user(&kvs, sizeof(kvs), o.data) == 0)
				read_attrs(ev, kvs.ptr, kvs.len);
			continue;
		}
		if (what && *what == OPT_TIMESTAMP) {
			/* time.Time{wall uint64, ext int64, loc}: its first two words. */
			__u64 words[2] = {};
			if (read_user(words, sizeof(words), o.data) == 0) {
				ev->time_wall = words[0];
				ev->time_ext = words[1];
				ev->has_time = 1;
			}
			continue;
		}
		__u64 fn = read_ptr(o.data) - app_bias;
		what = bpf_map_lookup_elem(&option_addrs, &fn);
		if (what && *what == OPT_KIND)
			ev->span_kind = read_ptr(o.data + 8);
		else if (what && *what == OPT_NEW_ROOT)
			ev->new_root = 1;
		else if (what && *what == OPT_LINKS) {
			struct go_slice links = {};
			if (read_user(&links, sizeof(links), o.data + 8) == 0)
				read_links(ev, links.ptr, links.len);
		}
	}
}

/* (*tracer).newSpan(t, ctx, autoSpan *bool, name string, opts []SpanStartOption) */
SEC("uprobe/tracer_newSpan")
int new_span_entry(struct go_regs *ctx)
{
	if (!otelapi_enabled)
		return 0;
	__u64 g = go_goroutine(ctx);
	__u8 auto_span = 0;
	if (read_user(&auto_span, sizeof(auto_span), go_arg(ctx, 4)) == 0 && auto_span)
		return 0; /* another agent's SDK takes it */
	if (new_span_link)
		app_bias = (go_ip(ctx) - new_span_link) & ~0xfffULL;
	__u64 t = go_arg(ctx, 1);
	tracer_record(g, t);
	struct span_ref *ref = new_entry(&starting, &g, &zero_ref);
	if (!ref)
		return 0;
	struct api_event *ev = begin_record(g, EVENT_START, 0);
	if (!ev)
		return 0;
	ev->tracer = t;
	ev->span_kind = 0;
	ev->ctx = 0;
	ev->alias = 0;
	set_text(ev, go_arg(ctx, 5), go_arg(ctx, 6));
	start_options(ev, go_arg(ctx, 7), go_arg(ctx, 8));

	/* Its parent: by the context alone - a span the app starts from
	 * context.Background() is a root, as the SDK makes it; with WithNewRoot, none. */
	struct span_ref *parent = 0;
	if (!ev->new_root)
		parent = find_parent(go_arg(ctx, 2), go_arg(ctx, 3), 0, g, 0);
	ev->has_parent = 0;
	ev->flags = 0;
	if (parent) {
		__builtin_memcpy(ev->sc.trace_id, parent->sc.trace_id, TRACE_ID_SIZE);
		__builtin_memcpy(ev->parent_span_id, parent->sc.span_id, SPAN_ID_SIZE);
		ev->has_parent = 1;
		ev->flags = parent->flags;
		ref->flags = parent->flags;
		ref->tracestate_len = parent->tracestate_len;
		__builtin_memcpy(ref->tracestate, parent->tracestate, TRACESTATE_MAX);
	} else {
		random_bytes(ev->sc.trace_id, TRACE_ID_SIZE);
		ref->flags = sample(ev->sc.trace_id, 0, 0);
		ref->tracestate_len = 0;
	}
	random_bytes(ev->sc.span_id, SPAN_ID_SIZE);
	ref->sc = ev->sc;
	return 0;
}

/* newSpan returns (ctx context.Context, span trace.Span): four words. */
SEC("uprobe/tracer_newSpan_return")
int new_span_return(struct go_regs *ctx)
{
	__u64 g = go_goroutine(ctx);
	struct api_event *ev = bpf_map_lookup_elem(&records, &g);
	struct span_ref *ref = bpf_map_lookup_elem(&starting, &g);
	if (!ev || !ref || ev->kind != EVENT_START || ev->key)
		return 0; /* not ours: autoSpan's, or its entry found no room */
	__u64 ctx_tab = go_arg(ctx, 1), ctx_data = go_arg(ctx, 2), span = go_arg(ctx, 4);
	if (!span)
		return 0;
	ev->key = span;
	struct api_span s = {.sc = ev->sc};
	/* The context returned: registered for its children, unless the map is full
	 * (they then find the nearest span registered above it). */
	if (ctx_data && bpf_map_update_elem(&inflight_contexts, &ctx_data, ref, BPF_ANY) == 0)
		s.ctx = ctx_data;
	ev->ctx = s.ctx;
	/* The span in the context, reached by trace.SpanFromContext: an alias. */
	if (ctx_data && valuectx_val_off != OFFSET_NONE &&
	    (!type_context_valueCtx || read_ptr(ctx_tab + 8) - app_bias == type_context_valueCtx)) {
		__u64 alias = read_ptr(ctx_data + valuectx_val_off + 8);
		if (alias && alias != span && bpf_map_update_elem(&api_aliases, &alias, &span, BPF_ANY) == 0)
			s.alias = alias;
	}
	ev->alias = s.alias;
	bpf_map_update_elem(&api_spans, &span, &s, BPF_ANY);
	send(ev);
	ev->kind = 0; /* used */
	bpf_map_delete_elem(&starting, &g);
	return 0;
}

/* span_key is the key of the span a method was called on (its receiver: the data
 * word of the trace.Span interface), 0 if it is none of ours. */
static __always_inline __u64 span_key(__u64 data)
{
	if (!otelapi_enabled || !data)
		return 0;
	if (bpf_map_lookup_elem(&api_spans, &data))
		return data;
	__u64 *key = bpf_map_lookup_elem(&api_aliases, &data);
	if (!key)
		return 0;
	/* An alias left by a span evicted never ended may name a key the app's memory
	 * now gives another span: it counts only if that span has it as its alias. */
	__u64 k = *key;
	struct api_span *s = bpf_map_lookup_elem(&api_spans, &k);
	return s && s->alias == data ? k : 0;
}

/* (*nonRecordingSpan).SetAttributes(s, kv ...attribute.KeyValue) */
SEC("uprobe/nonRecordingSpan_SetAttributes")
int set_attributes(struct go_regs *ctx)
{
	__u64 key = span_key(go_arg(ctx, 1));
	if (!key)
		return 0;
	struct api_event *ev = begin_record(go_goroutine(ctx), EVENT_ATTRIBUTES, key);
	if (!ev)
		return 0;
	read_attrs(ev, go_arg(ctx, 2), go_arg(ctx, 3));
	send(ev);
	return 0;
}

/* (*nonRecordingSpan).SetStatus(s, code codes.Code, description string) */
SEC("uprobe/nonRecordingSpan_SetStatus")
int set_status(struct go_regs *ctx)
{
	__u64 key = span_key(go_arg(ctx, 1));
	if (!key)
		return 0;
	struct api_event *ev = begin_record(go_goroutine(ctx), EVENT_STATUS, key);
	if (!ev)
		return 0;
	ev->code = go_arg(ctx, 2);
	set_text(ev, go_arg(ctx, 3), go_arg(ctx, 4));
	send(ev);
	return 0;
}

/* (*nonRecordingSpan).SetName(s, name string) */
SEC("uprobe/nonRecordingSpan_SetName")
int set_name(struct go_regs *ctx)
{
	__u64 key = span_key(go_arg(ctx, 1));
	if (!key)
		return 0;
	struct api_event *ev = begin_record(go_goroutine(ctx), EVENT_NAME, key);
	if (!ev)
		return 0;
	set_text(ev, go_arg(ctx, 2), go_arg(ctx, 3));
	send(ev);
	return 0;
}

/* (*nonRecordingSpan).RecordError(s, err error, opts ...EventOption): the error's
 * dynamic type, and its message for the types whose message is a string field. */
SEC("uprobe/nonRecordingSpan_RecordError")
int record_error(struct go_regs *ctx)
{
	__u64 key = span_key(go_arg(ctx, 1));
	__u64 tab = go_arg(ctx, 2), data = go_arg(ctx, 3);
	if (!key || !tab)
		return 0; /* RecordError(nil) records nothing */
	struct api_event *ev = begin_record(go_goroutine(ctx), EVENT_ERROR, key);
	if (!ev)
		return 0;
	__u64 type = read_ptr(tab + 8);
	__u64 link = type - app_bias;
	ev->error_type = link; /* userspace names it from the binary */
	__u64 off = OFFSET_NONE;
	if (type && link == type_errors_errorString)
		off = errorstring_s_off;
	else if (type && link == type_fmt_wrapError)
		off = wraperror_msg_off;
	struct go_string s = {};
	if (off != OFFSET_NONE && data && read_user(&s, sizeof(s), data + off) == 0)
		set_text(ev, s.ptr, s.len);
	send(ev);
	return 0;
}

/* (*nonRecordingSpan).AddEvent(s, name string, opts ...EventOption): its name, and
 * its attributes (WithAttributes). */
SEC("uprobe/nonRecordingSpan_AddEvent")
int add_event(struct go_regs *ctx)
{
	__u64 key = span_key(go_arg(ctx, 1));
	if (!key)
		return 0;
	struct api_event *ev = begin_record(go_goroutine(ctx), EVENT_EVENT, key);
	if (!ev)
		return 0;
	set_text(ev, go_arg(ctx, 2), go_arg(ctx, 3));
	start_options(ev, go_arg(ctx, 4), go_arg(ctx, 5));
	send(ev);
	return 0;
}

/* (*nonRecordingSpan).AddLink(s, link trace.Link): the Link, holding arrays (its IDs),
 * is passed on the stack; its span context and attributes. */
SEC("uprobe/nonRecordingSpan_AddLink")
int add_link(struct go_regs *ctx)
{
	__u64 key = span_key(go_arg(ctx, 1));
	if (!key || link_sc_off == OFFSET_NONE || link_attrs_off == OFFSET_NONE || sc_traceid_off == OFFSET_NONE ||
	    sc_spanid_off == OFFSET_NONE)
		return 0;
	struct api_event *ev = begin_record(go_goroutine(ctx), EVENT_LINK, key);
	if (!ev)
		return 0;
	__u64 link = go_stack_args(ctx) + (add_link_framed ? 8 : 0);
	ev->links_total = 1;
	if (read_link(&ev->links[0], link + link_sc_off))
		ev->links_read = 1;
	struct go_slice attrs = {};
	if (read_user(&attrs, sizeof(attrs), link + link_attrs_off) == 0)
		read_attrs(ev, attrs.ptr, attrs.len);
	send(ev);
	return 0;
}

/* (*nonRecordingSpan).End(s, opts ...SpanEndOption): the span ends, in any goroutine;
 * its context is unregistered, if it still holds this span. */
SEC("uprobe/nonRecordingSpan_End")
int span_end(struct go_regs *ctx)
{
	__u64 key = span_key(go_arg(ctx, 1));
	if (!key)
		return 0;
	struct api_span *s = bpf_map_lookup_elem(&api_spans, &key);
	if (!s)
		return 0;
	if (s->ctx) {
		struct span_ref *ref = bpf_map_lookup_elem(&inflight_contexts, &s->ctx);
		__u64 theirs = 0, ours = 0;
		if (ref) {
			__builtin_memcpy(&theirs, ref->sc.span_id, SPAN_ID_SIZE);
			__builtin_memcpy(&ours, s->sc.span_id, SPAN_ID_SIZE);
		}
		if (ref && theirs == ours)
			bpf_map_delete_elem(&inflight_contexts, &s->ctx);
	}
	if (s->alias)
		bpf_map_delete_elem(&api_aliases, &s->alias);
	bpf_map_delete_elem(&api_spans, &key);
	struct api_event *ev = begin_record(go_goroutine(ctx), EVENT_END, key);
	if (!ev)
		return 0;
	start_options(ev, go_arg(ctx, 2), go_arg(ctx, 3)); /* WithTimestamp */
	ev->attrs_read = 0; /* End takes no attributes */
	send(ev);
	return 0;
}
