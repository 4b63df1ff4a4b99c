// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/* go-redis v9: a client span per command, and one per pipeline or transaction.
 *
 * Whatever hooks an app adds, a client's hook chain ends in one of three methods of
 * the client's *baseClient, in every v9 release:
 *   process(c, ctx, cmd Cmder) error               a command, its retries included
 *   processPipeline(c, ctx, cmds []Cmder) error      a pipeline
 *   processTxPipeline(c, ctx, cmds []Cmder) error    a transaction (MULTI ... EXEC)
 * Their entry starts a span (the parent by the call's context, else by the goroutine)
 * and each of their RETs ends it: two hits per command or pipeline.
 *
 * Read at the entry: the server address and database index of the client's options
 * (c.opt.Addr, c.opt.DB); for a command, the first of its arguments (a Cmder's
 * baseCmd.args[0], the command's name as a string); for a pipeline, how many commands
 * it holds. The other arguments - keys and values - are never read. At a RET: the
 * error's dynamic type and, for the first bytes of a reply error's text, its prefix
 * (ERR, WRONGTYPE), or the "redis: nil" of a missing key, which is no error.
 *
 * Calls nest: a command on a new connection first runs the connection's set-up
 * commands (HELLO, then a pipeline of SELECT, CLIENT SETINFO...) through the same
 * methods, in the same goroutine. A goroutine's spans in flight are a stack of up to
 * DEPTH_MAX entries, keyed by the goroutine and the depth: an entry takes the lowest
 * free depth, a RET ends the highest one taken, and a nested span is the child of the
 * one below it: the set-up shows under the command that opened the connection. */
#include "common.h"
#include "spans.h"
#include "client.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Field offsets in the app, named after the Go fields (kit.VarName) and set by the
 * loader. */
volatile __u64 off_go_redis_baseClient_opt = OFFSET_NONE; /* *Options */
volatile __u64 off_go_redis_Options_Addr = OFFSET_NONE;   /* string, "host:port" */
volatile __u64 off_go_redis_Options_DB = OFFSET_NONE;     /* int */
volatile __u64 off_go_redis_baseCmd_args = OFFSET_NONE;   /* []interface{} */

/* Set last, once everything else is. */
volatile __u64 redis_enabled = 0;

#define EVENT_OPERATION 1

/* What the span is of. */
#define OP_COMMAND 1
#define OP_PIPELINE 2
#define OP_TRANSACTION 3

#define NAME_MAX 32   /* a command's name; longer ones are not Redis's */
#define ADDR_MAX 128  /* the server's host:port */
#define REPLY_MAX 32  /* the start of an error's text: a reply error's prefix */
#define DEPTH_MAX 4   /* spans in flight in one goroutine, nested */
#define DEPTH_SHIFT 56 /* a goroutine's address fits below */

struct redis_event {
	__u32 kind;
	__u8 op;
	__u8 has_parent;
	__u8 trace_flags; /* the parent's */
	__u8 name_len;
	__u64 start_ns;
	__u64 end_ns;
	struct span_context sc;
	__u8 parent_span_id[SPAN_ID_SIZE];
	__u64 error_type; /* the error's dynamic type; 0 without an error */
	__u64 name_type;  /* the dynamic type of the command's first argument: a string's for a name */
	__s64 db;         /* the database index; -1 unknown */
	__u64 count;      /* commands in a pipeline, as the client passed them */
	__u32 addr_len;
	__u32 reply_len;
	__u8 name[NAME_MAX];
	__u8 reply[REPLY_MAX]; /* the error's text, if it has the layout of a reply error's */
	__u8 addr[ADDR_MAX];   /* last: records carry only the bytes copied */
};

/* Spans in flight, by goroutine and depth. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct redis_event);
} operations SEC(".maps");

/* Zeroes to create map entries from. Never written. */
struct redis_event zero_event;

const struct redis_event *unused_redis_event __attribute__((unused)); /* bpf2go -type */

static __always_inline __u64 slot(__u64 g, __u64 depth)
{
	return g | (depth << DEPTH_SHIFT);
}

/* begin starts a span for goroutine g at the lowest free depth: its IDs; its parent,
 * the span in flight below it (a command that opened a connection, for the
 * connection's set-up commands), else by the call's context (itab and data words) or by
 * g; and the client's server. */
static __always_inline struct redis_event *begin(__u64 g, __u64 ctx_tab, __u64 ctx, __u64 client, __u8 op)
{
	__u64 key = 0;
	int depth;
	for (depth = 0; depth < DEPTH_MAX; depth++) {
		key = slot(g, depth);
		if (!bpf_map_lookup_elem(&operations, &key))
			break;
	}
	if (depth == DEPTH_MAX)
		return 0;
	struct redis_event *ev = new_entry(&operations, &key, &zero_event);
	if (!ev)
		return 0;
	ev->kind = EVENT_OPERATION;
	ev->op = op;
	ev->db = -1;
	ev->start_ns = bpf_ktime_get_ns();
	__u64 outer_key = slot(g, depth > 0 ? depth - 1 : 0);
	struct redis_event *outer = depth > 0 ? bpf_map_lookup_elem(&operations, &outer_key) : 0;
	if (outer) {
		__builtin_memcpy(ev->sc.trace_id, outer->sc.trace_id, TRACE_ID_SIZE);
		__builtin_memcpy(ev->parent_span_id, outer->sc.span_id, SPAN_ID_SIZE);
		ev->has_parent = 1;
		/* The outer span's sampling decision: its parent's, or a root's. */
		ev->trace_flags = outer->has_parent ? outer->trace_flags : sample(outer->sc.trace_id, 0, 0);
		random_bytes(ev->sc.span_id, SPAN_ID_SIZE);
	} else {
		struct span_ref *parent = find_parent(ctx_tab, ctx, 0, g, 1);
		start_client_span(parent, &ev->sc, ev->parent_span_id, &ev->has_parent, &ev->trace_flags);
	}
	if (off_go_redis_baseClient_opt == OFFSET_NONE)
		return ev;
	__u64 opt = read_ptr(client + off_go_redis_baseClient_opt);
	if (!opt)
		return ev;
	if (off_go_redis_Options_Addr != OFFSET_NONE)
		ev->addr_len = read_go_string(ev->addr, ADDR_MAX, opt + off_go_redis_Options_Addr);
	if (off_go_redis_Options_DB != OFFSET_NONE)
		read_user(&ev->db, sizeof(ev->db), opt + off_go_redis_Options_DB);
	return ev;
}

/* end outputs goroutine g's innermost span, with the error it ended with. */
static __always_inline void end(__u64 g, __u64 err_tab, __u64 err_data)
{
	__u64 key = 0;
	struct redis_event *ev = 0;
	for (int depth = DEPTH_MAX - 1; depth >= 0; depth--) {
		key = slot(g, depth);
		ev = bpf_map_lookup_elem(&operations, &key);
		if (ev)
			break;
	}
	if (!ev)
		return;
	ev->end_ns = bpf_ktime_get_ns();
	if (err_tab) {
		ev->error_type = read_ptr(err_tab + 8); /* itab.Type */
		/* A reply error is a string type: its interface's data word points at a
		 * string header. Userspace keeps the text only for that type. */
		ev->reply_len = read_go_string(ev->reply, REPLY_MAX, err_data);
	}
	__u64 size = sizeof(*ev) - ADDR_MAX + ev->addr_len;
	if (size > sizeof(*ev))
		size = sizeof(*ev);
	submit(ev, size);
	bpf_map_delete_elem(&operations, &key);
}

SEC("uprobe/baseClient_process")
int process_entry(struct go_regs *ctx)
{
	if (!redis_enabled)
		return 0;
	__u64 g = go_goroutine(ctx);
	struct redis_event *ev = begin(g, go_arg(ctx, 2), go_arg(ctx, 3), go_arg(ctx, 1), OP_COMMAND);
	if (!ev || off_go_redis_baseCmd_args == OFFSET_NONE)
		return 0;
	/* Every command type embeds baseCmd first: the Cmder's data word points at it. */
	struct go_slice args = {};
	if (read_user(&args, sizeof(args), go_arg(ctx, 5) + off_go_redis_baseCmd_args) != 0 || args.len < 1)
		return 0;
	struct go_iface name = {}; /* interface{}: the type, then the data word */
	if (read_user(&name, sizeof(name), args.ptr) != 0)
		return 0;
	ev->name_type = name.tab;
	ev->name_len = read_go_string(ev->name, NAME_MAX, name.data);
	return 0;
}

/* pipeline_entry starts the span of a pipeline or transaction. */
static __always_inline void pipeline_entry(struct go_regs *ctx, __u8 op)
{
	if (!redis_enabled)
		return;
	__u64 g = go_goroutine(ctx);
	struct redis_event *ev = begin(g, go_arg(ctx, 2), go_arg(ctx, 3), go_arg(ctx, 1), op);
	if (ev)
		ev->count = go_arg(ctx, 5); /* cmds: pointer, length, capacity */
}

SEC("uprobe/baseClient_processPipeline")
int pipeline_start(struct go_regs *ctx)
{
	pipeline_entry(ctx, OP_PIPELINE);
	return 0;
}

SEC("uprobe/baseClient_processTxPipeline")
int transaction_start(struct go_regs *ctx)
{
	pipeline_entry(ctx, OP_TRANSACTION);
	return 0;
}

/* Each function returns an error: the RETs of all three end the innermost span. */
SEC("uprobe/baseClient_return")
int operation_return(struct go_regs *ctx)
{
	end(go_goroutine(ctx), go_arg(ctx, 1), go_arg(ctx, 2));
	return 0;
}
