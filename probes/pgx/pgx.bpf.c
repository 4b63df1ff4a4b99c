// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/* pgx v5 used natively: a client span per Query, QueryRow and Exec.
 *
 * Every one of them, of a Conn, a pgxpool.Pool, a Tx or a pool's Conn, ends in one of
 * two methods of *pgx.Conn, which take the statement as an argument:
 * (*Conn).Exec(c, ctx, sql, arguments...) and (*Conn).Query(c, ctx, sql, args...)
 * (QueryRow is Query, its error kept for Scan). Their entry starts the span (the parent
 * by the call's context, else by the goroutine), copies the statement's text, and reads
 * the connection's server address and database name through its *pgconn.PgConn; each
 * of their RETs ends it, with the error and, for a *pgconn.PgError (also inside a
 * *pgconn.PrepareError), its SQLSTATE and the start of its message. Two hits per
 * operation. CopyFrom's entry and RETs too, its table's name for the statement. A
 * Query's span ends when Query returns, as database/sql's: the server has
 * answered (the row description, or the error); reading the rows is the app's.
 * SendBatch's entry and RETs too: one span per batch, its size and the first
 * BATCH_TEXTS queued statements' texts; the results, read later by the app, are the
 * app's.
 *
 * Through pgx's database/sql adapter the same methods run inside database/sql's
 * operation, which has its span: a goroutine database/sql marked (sql_goroutines.h)
 * gets none here. */
#include "common.h"
#include "spans.h"
#include "client.h"
#include "net_conn.h"
#include "sql_goroutines.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Field offsets in the app, named after the Go fields (kit.VarName) and set by the
 * loader. */
volatile __u64 off_pgx_Conn_pgConn = OFFSET_NONE;        /* *pgconn.PgConn */
volatile __u64 off_pgconn_PgConn_conn = OFFSET_NONE;     /* net.Conn */
volatile __u64 off_pgconn_PgConn_config = OFFSET_NONE;   /* *pgconn.Config */
volatile __u64 off_pgconn_Config_Database = OFFSET_NONE; /* string */
volatile __u64 off_pgconn_PgError_Code = OFFSET_NONE;    /* string: the SQLSTATE */
volatile __u64 off_pgconn_PgError_Message = OFFSET_NONE; /* string */
volatile __u64 off_pgconn_PrepareError_err = OFFSET_NONE; /* error: the server's *PgError, if it said no */
/* A *pgx.Batch's queue ([]*QueuedQuery) and a queued statement's text (string), from
 * v5.5.3, which exported them: before, a batch's span has neither its size nor texts
 * (their old names differ only in case, which bpf2go's Go names cannot tell apart). */
volatile __u64 off_pgx_Batch_QueuedQueries = OFFSET_NONE;
volatile __u64 off_pgx_QueuedQuery_SQL = OFFSET_NONE;
/* The error types' descriptors in the app; 0 for none. */
volatile __u64 type_pgconn_PgError = 0;      /* *pgconn.PgError */
volatile __u64 type_pgconn_PrepareError = 0; /* *pgconn.PrepareError */

/* Set last, once everything else is. */
volatile __u64 pgx_enabled = 0;

#define EVENT_OPERATION 1

#define QUERY_MAX 1024 /* bytes of a statement's text kept; userspace bounds it further */
#define DB_NAME_MAX 64 /* PostgreSQL's names are at most 63 bytes */
#define CODE_MAX 8     /* a SQLSTATE is 5 */
#define MESSAGE_MAX 128

/* What the span is of. */
#define OP_STATEMENT 1 /* Query or Exec: query holds the statement's text */
#define OP_COPY 2      /* CopyFrom: query holds the table's name, its parts PART_MAX apart */
#define OP_BATCH 3     /* SendBatch: query_len is its size, query its first texts, TEXT_MAX apart */

#define BATCH_TEXTS 4
#define TEXT_MAX (QUERY_MAX / BATCH_TEXTS)

#define PART_MAX 64 /* a part of a table's name: PostgreSQL's are at most 63 bytes */

#define ERROR_SQLSTATE 1 /* as database/sql's: code holds a SQLSTATE */

struct pgx_error {
	__u8 kind;     /* ERROR_SQLSTATE; 0 for an error that is no *PgError */
	__u8 code_len;
	__u16 _pad;
	__u32 message_copied;
	__u64 message_len; /* the message's full length */
	__u8 code[CODE_MAX];
	__u8 message[MESSAGE_MAX];
};

struct pgx_event {
	__u32 kind;
	__u8 has_parent;
	__u8 trace_flags; /* the parent's */
	__u8 op;          /* OP_* */
	__u8 parts;       /* OP_COPY: the table's name's parts copied (schema, table) */
	__u64 start_ns;
	__u64 end_ns;
	struct span_context sc;
	__u8 parent_span_id[SPAN_ID_SIZE];
	__u64 error_type; /* the error's dynamic type; 0 without an error */
	struct tcp_addr server;
	__u32 name_len; /* the database's name; 0 for none */
	__u8 part_len[2]; /* OP_COPY: the parts' lengths, at query and query + PART_MAX */
	__u16 _pad2;
	__u16 text_len[BATCH_TEXTS]; /* OP_BATCH: the texts' lengths copied, at query + i * TEXT_MAX */
	__u8 name[DB_NAME_MAX];
	__u64 query_len; /* the statement's full length */
	__u32 query_copied;
	__u32 _pad3;
	__u8 query[QUERY_MAX];
	struct pgx_error error; /* sent only for a *PgError: after the whole text */
};

/* Operations in flight, by goroutine. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct pgx_event);
} operations SEC(".maps");

/* Zeroes to create map entries from. Never written. */
struct pgx_event zeroes;

const struct pgx_event *unused_pgx_event __attribute__((unused)); /* bpf2go -type */

/* read_conn reads the server's address and the database's name of the *pgx.Conn c. */
static __always_inline void read_conn(struct pgx_event *ev, __u64 c)
{
	if (!c || off_pgx_Conn_pgConn == OFFSET_NONE)
		return;
	__u64 pg = read_ptr(c + off_pgx_Conn_pgConn);
	if (!pg)
		return;
	if (off_pgconn_PgConn_conn != OFFSET_NONE)
		read_tcp_remote(&ev->server, pg + off_pgconn_PgConn_conn);
	if (off_pgconn_PgConn_config == OFFSET_NONE || off_pgconn_Config_Database == OFFSET_NONE)
		return;
	__u64 cfg = read_ptr(pg + off_pgconn_PgConn_config);
	if (!cfg)
		return;
	/* Whole or not at all: a name cut short would be another database's. */
	struct go_string s = {};
	if (read_user(&s, sizeof(s), cfg + off_pgconn_Config_Database) != 0 || s.len <= 0 || s.len > DB_NAME_MAX)
		return;
	ev->name_len = copy_go_string(ev->name, DB_NAME_MAX, &s);
}

/* begin starts the span of an operation of a *pgx.Conn (its receiver, then a context:
 * the arguments of Query, Exec and CopyFrom), unless database/sql has one for the
 * goroutine. */
static __always_inline struct pgx_event *begin(struct go_regs *ctx, __u8 op)
{
	if (!pgx_enabled)
		return 0;
	__u64 g = go_goroutine(ctx);
	if (bpf_map_lookup_elem(&sql_goroutines, &g))
		return 0; /* through database/sql: its span */
	struct pgx_event *ev = new_entry(&operations, &g, &zeroes);
	if (!ev)
		return 0;
	ev->kind = EVENT_OPERATION;
	ev->op = op;
	ev->start_ns = bpf_ktime_get_ns();
	struct span_ref *parent = find_parent(go_arg(ctx, 2), go_arg(ctx, 3), 0, g, 1);
	start_client_span(parent, &ev->sc, ev->parent_span_id, &ev->has_parent, &ev->trace_flags);
	read_conn(ev, go_arg(ctx, 1));
	return ev;
}

/* statement_begin starts the span of a Query or Exec, with its statement's text. */
static __always_inline void statement_begin(struct go_regs *ctx)
{
	struct pgx_event *ev = begin(ctx, OP_STATEMENT);
	if (!ev)
		return;
	struct go_string s = {.ptr = go_arg(ctx, 4), .len = go_arg(ctx, 5)};
	ev->query_len = s.len;
	ev->query_copied = copy_go_string(ev->query, QUERY_MAX, &s);
}

/* read_part copies the i-th string of the table's name (a pgx.Identifier's elements
 * at parts) to query + i * PART_MAX, whole or not at all: a name cut short would be
 * another table's. */
static __always_inline void read_part(struct pgx_event *ev, __u64 parts, __u32 i)
{
	struct go_string s = {};
	if (read_user(&s, sizeof(s), parts + i * sizeof(s)) != 0 || s.len <= 0 || s.len >= PART_MAX)
		return;
	ev->part_len[i & 1] = copy_go_string(ev->query + (i & 1) * PART_MAX, PART_MAX, &s);
}

/* read_error reads a *pgconn.PgError's SQLSTATE and the start of its message; a
 * *pgconn.PrepareError is read through. */
static __always_inline void read_error(struct pgx_error *e, __u64 type, __u64 data)
{
	if (type && type == type_pgconn_PrepareError && off_pgconn_PrepareError_err != OFFSET_NONE) {
		struct go_iface inner = {};
		if (read_user(&inner, sizeof(inner), data + off_pgconn_PrepareError_err) != 0 || !inner.tab)
			return;
		type = read_ptr(inner.tab + 8); /* itab.Type */
		data = inner.data;
	}
	if (!type || !data || type != type_pgconn_PgError || off_pgconn_PgError_Code == OFFSET_NONE)
		return;
	struct go_string s = {};
	if (read_user(&s, sizeof(s), data + off_pgconn_PgError_Code) != 0 || s.len <= 0 || s.len > CODE_MAX)
		return;
	e->code_len = copy_go_string(e->code, CODE_MAX, &s);
	if (!e->code_len)
		return;
	e->kind = ERROR_SQLSTATE;
	if (off_pgconn_PgError_Message == OFFSET_NONE)
		return;
	struct go_string m = {};
	if (read_user(&m, sizeof(m), data + off_pgconn_PgError_Message) != 0 || m.len <= 0)
		return;
	e->message_len = m.len;
	e->message_copied = copy_go_string(e->message, MESSAGE_MAX, &m);
}

/* end outputs the goroutine's span, with the error (an interface's words) it ended with. */
static __always_inline void end(__u64 g, __u64 err_tab, __u64 err_data)
{
	struct pgx_event *ev = bpf_map_lookup_elem(&operations, &g);
	if (!ev)
		return;
	ev->end_ns = bpf_ktime_get_ns();
	if (err_tab) {
		ev->error_type = read_ptr(err_tab + 8); /* itab.Type */
		read_error(&ev->error, ev->error_type, err_data);
	}
	/* Only the text's bytes copied; a *PgError comes after the whole text. */
	__u64 size = __builtin_offsetof(struct pgx_event, query) + ev->query_copied;
	if (ev->error.kind || size > __builtin_offsetof(struct pgx_event, error))
		size = sizeof(*ev);
	submit(ev, size);
	bpf_map_delete_elem(&operations, &g);
}

SEC("uprobe/Conn_Exec")
int exec_entry(struct go_regs *ctx)
{
	statement_begin(ctx);
	return 0;
}

SEC("uprobe/Conn_Exec_return")
int exec_return(struct go_regs *ctx)
{
	end(go_goroutine(ctx), go_arg(ctx, 3), go_arg(ctx, 4)); /* (CommandTag{string}, error) */
	return 0;
}

SEC("uprobe/Conn_Query")
int query_entry(struct go_regs *ctx)
{
	statement_begin(ctx);
	return 0;
}

SEC("uprobe/Conn_Query_return")
int query_return(struct go_regs *ctx)
{
	end(go_goroutine(ctx), go_arg(ctx, 3), go_arg(ctx, 4)); /* (Rows, error) */
	return 0;
}

/* (*Conn).CopyFrom(c, ctx, tableName Identifier, columnNames []string, rowSrc): the
 * table's name, a []string of one part or two (schema, table); a name of more parts
 * is no table's, and gets none. Column names and rows are never read. */
SEC("uprobe/Conn_CopyFrom")
int copy_entry(struct go_regs *ctx)
{
	struct pgx_event *ev = begin(ctx, OP_COPY);
	if (!ev)
		return 0;
	__u64 parts = go_arg(ctx, 4), n = go_arg(ctx, 5);
	if (!parts || n < 1 || n > 2)
		return 0;
	ev->parts = n;
	read_part(ev, parts, 0);
	if (n == 2)
		read_part(ev, parts, 1);
	ev->query_copied = 2 * PART_MAX;
	return 0;
}

/* read_text copies the i-th queued statement's text of a batch's queue (its
 * *QueuedQuery at queue + 8i) to query + i * TEXT_MAX. */
static __always_inline void read_text(struct pgx_event *ev, __u64 queue, __u64 off_sql, __u32 i)
{
	__u64 q = read_ptr(queue + i * 8);
	struct go_string s = {};
	if (!q || read_user(&s, sizeof(s), q + off_sql) != 0 || s.len <= 0)
		return;
	i &= BATCH_TEXTS - 1;
	ev->text_len[i] = copy_go_string(ev->query + i * TEXT_MAX, TEXT_MAX, &s);
}

/* (*Conn).SendBatch(c, ctx, b *Batch): the batch's size, and the texts of its first
 * statements; their arguments are never read. */
SEC("uprobe/Conn_SendBatch")
int batch_entry(struct go_regs *ctx)
{
	struct pgx_event *ev = begin(ctx, OP_BATCH);
	if (!ev)
		return 0;
	__u64 off_queue = off_pgx_Batch_QueuedQueries, off_sql = off_pgx_QueuedQuery_SQL;
	__u64 b = go_arg(ctx, 4);
	struct go_slice queue = {};
	if (!b || off_queue == OFFSET_NONE || read_user(&queue, sizeof(queue), b + off_queue) != 0 || queue.len <= 0)
		return 0;
	ev->query_len = queue.len;
	ev->query_copied = QUERY_MAX;
	if (off_sql == OFFSET_NONE || !queue.ptr)
		return 0;
	for (__u32 i = 0; i < BATCH_TEXTS; i++) {
		if (i >= queue.len)
			break;
		read_text(ev, queue.ptr, off_sql, i);
	}
	return 0;
}

/* SendBatch returns BatchResults, an interface: its error is the app's to read. */
SEC("uprobe/Conn_SendBatch_return")
int batch_return(struct go_regs *ctx)
{
	end(go_goroutine(ctx), 0, 0);
	return 0;
}

SEC("uprobe/Conn_CopyFrom_return")
int copy_return(struct go_regs *ctx)
{
	end(go_goroutine(ctx), go_arg(ctx, 2), go_arg(ctx, 3)); /* (int64, error) */
	return 0;
}
