// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/* database/sql: a client span per operation, whatever the driver.
 *
 * Every Query/QueryRow/Exec of a DB, Conn or Tx (and their Context variants) runs
 * through one of two unexported functions, which take the statement as an argument:
 * (*DB).queryDC(db, ctx, txctx, dc, releaseConn, query, args) and
 * (*DB).execDC(db, ctx, dc, release, query, args). Their entry starts the span (the
 * parent by the call's context, else by the goroutine: a query made with a context not
 * derived from a request's, in the handler's goroutine), copies the statement's text
 * and keeps the state under the goroutine; each of their RETs ends it, with the
 * error's dynamic type. Two hits per operation.
 *
 * A prepared statement's executions, (*Stmt).ExecContext(s, ctx, args) and
 * QueryContext, do not pass there, and a *Stmt's text is a field: rather than read it
 * (one more offset per Go release), the text is kept when the statement is made.
 * (*DB).prepareDC(db, ctx, dc, release, cg, query), which DB, Conn and Tx prepares all
 * use: its entry notes the text's address, each of its RETs files the text under the
 * *Stmt returned (two hits per prepare); the entry of (*Stmt).Close drops it (one).
 * Then each execution: two hits, as above, the text found under its *Stmt. A statement
 * made by Tx.Stmt from another is not prepared here: its spans have no text.
 *
 * Which database: the dynamic type of the driver's connection (driverConn.ci), read
 * at each entry from the *driverConn argument (at prepare for a statement). Which
 * server: for the drivers known (pgx's adapter, lib/pq), the remote address of the
 * TCP connection under the driver's, read there too; and the database's name, from
 * the configuration the driver's connection keeps (pgx, lib/pq, go-sql-driver/mysql).
 *
 * An error: its dynamic type, at each RET; when it is one of the drivers' errors
 * known (pgx's *pgconn.PgError, also inside a *pgconn.PrepareError; lib/pq's
 * *pq.Error; *mysql.MySQLError), its code and the start of its message. Only a
 * failed operation reads more than the error's type word. */
#include "common.h"
#include "spans.h"
#include "client.h"
#include "net_conn.h"
#include "sql_goroutines.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Field offsets in the app, named after the Go fields (kit.VarName) and set by the
 * loader. */
volatile __u64 off_sql_driverConn_ci = OFFSET_NONE; /* the driver's driver.Conn */
volatile __u64 off_stdlib_Conn_conn = OFFSET_NONE;   /* pgx's database/sql adapter: its *pgx.Conn */
volatile __u64 off_pgx_Conn_pgConn = OFFSET_NONE;    /* *pgconn.PgConn */
volatile __u64 off_pgconn_PgConn_conn = OFFSET_NONE; /* net.Conn */
volatile __u64 off_pq_conn_c = OFFSET_NONE;          /* lib/pq's: net.Conn */
/* The database's name: where each driver's connection keeps its configuration. */
volatile __u64 off_pgconn_PgConn_config = OFFSET_NONE;   /* *pgconn.Config */
volatile __u64 off_pgconn_Config_Database = OFFSET_NONE; /* string */
volatile __u64 off_pq_conn_cfg = OFFSET_NONE;            /* pq.Config, in the conn */
volatile __u64 off_pq_Config_Database = OFFSET_NONE;     /* string */
volatile __u64 off_mysql_mysqlConn_cfg = OFFSET_NONE;    /* *mysql.Config */
volatile __u64 off_mysql_Config_DBName = OFFSET_NONE;    /* string */
/* The drivers' errors: a SQLSTATE (string) or MySQL's error number (uint16), and the
 * message (string). */
volatile __u64 off_pgconn_PgError_Code = OFFSET_NONE;
volatile __u64 off_pgconn_PgError_Message = OFFSET_NONE;
volatile __u64 off_pgconn_PrepareError_err = OFFSET_NONE; /* error: the server's *PgError, if it said no */
volatile __u64 off_pq_Error_Code = OFFSET_NONE;
volatile __u64 off_pq_Error_Message = OFFSET_NONE;
volatile __u64 off_mysql_MySQLError_Number = OFFSET_NONE;
volatile __u64 off_mysql_MySQLError_Message = OFFSET_NONE;
/* The drivers' connection and error types' descriptors in the app; 0 for none. */
volatile __u64 type_stdlib_Conn = 0;         /* *stdlib.Conn */
volatile __u64 type_pq_conn = 0;             /* *pq.conn */
volatile __u64 type_mysql_mysqlConn = 0;     /* *mysql.mysqlConn */
volatile __u64 type_pgconn_PgError = 0;      /* *pgconn.PgError */
volatile __u64 type_pgconn_PrepareError = 0; /* *pgconn.PrepareError */
volatile __u64 type_pq_Error = 0;            /* *pq.Error */
volatile __u64 type_mysql_MySQLError = 0;    /* *mysql.MySQLError */

/* Whether to mark the goroutines of operations in sql_goroutines: for an app that links
 * pgx, whose own probe must make no second span for them. */
volatile __u64 sql_mark_goroutines = 0;

/* Set last, once everything else is. */
volatile __u64 sql_enabled = 0;

#define EVENT_OPERATION 1

/* What the span is of. */
#define OP_QUERY 1
#define OP_EXEC 2
#define OP_STMT_QUERY 3
#define OP_STMT_EXEC 4

#define QUERY_MAX 1024 /* bytes of a statement's text kept; userspace bounds it further */
#define DB_NAME_MAX 64     /* a database's name: PostgreSQL's are at most 63 bytes, MySQL's 64 characters */
#define CODE_MAX 8      /* a SQLSTATE is 5 */
#define MESSAGE_MAX 128 /* the start of an error's message */

/* Which driver's error an operation ended with. */
#define ERROR_SQLSTATE 1 /* code holds a SQLSTATE (pgx, lib/pq) */
#define ERROR_NUMBER 2   /* number holds MySQL's error number */

struct sql_text {
	__u64 len; /* the statement's full length */
	__u32 copied;
	__u32 _pad;
	__u8 text[QUERY_MAX];
};

/* Which connection an operation went over. */
struct sql_conn {
	__u64 type; /* the driver connection's dynamic type: which database */
	struct tcp_addr server;
	__u32 name_len; /* the database's name; 0 for none (unknown, or longer than DB_NAME_MAX) */
	__u32 _pad;
	__u8 name[DB_NAME_MAX];
};

/* A driver's error: its code and the start of its message. Last in the event, and
 * sent only when kind is set: an operation that succeeded sends none of it. */
struct sql_error {
	__u8 kind;     /* ERROR_*; 0 for an error of no driver known */
	__u8 code_len; /* a SQLSTATE's bytes (a string: userspace checks it is one) */
	__u16 number;  /* MySQL's error number */
	__u32 message_copied;
	__u64 message_len; /* the message's full length */
	__u8 code[CODE_MAX];
	__u8 message[MESSAGE_MAX];
};

struct sql_event {
	__u32 kind;
	__u8 op;
	__u8 has_parent;
	__u8 trace_flags; /* the parent's */
	__u8 _pad;
	__u64 start_ns;
	__u64 end_ns;
	struct span_context sc;
	__u8 parent_span_id[SPAN_ID_SIZE];
	__u64 error_type; /* the error's dynamic type; 0 without an error */
	struct sql_conn conn; /* which database, and its server */
	struct sql_text query;
	struct sql_error error; /* sent only for a driver's error known: after the whole text */
};

/* What is known of a prepared statement. */
struct sql_statement {
	struct sql_conn conn;
	struct sql_text query;
};

/* Statements being prepared, by goroutine: the text, and the connection. */
struct sql_preparing {
	struct go_string query;
	struct sql_conn conn;
};

/* Operations in flight, by goroutine. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct sql_event);
} operations SEC(".maps");

/* Statements being prepared, by goroutine: the text's address and length. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct sql_preparing);
} preparing SEC(".maps");

/* Prepared statements' texts, by *Stmt. LRU: a statement the app drops without
 * closing it must not fill the map. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 2048);
	__type(key, __u64);
	__type(value, struct sql_statement);
} statements SEC(".maps");

/* Zeroes to create map entries from. Never written. */
union zero_value {
	struct sql_event event;
	struct sql_statement statement;
} zeroes;

const struct sql_event *unused_sql_event __attribute__((unused)); /* bpf2go -type */

/* begin starts a span for the goroutine g: its IDs, its parent by the call's context
 * (its itab and data words) or by g. */
static __always_inline struct sql_event *begin(__u64 g, __u64 ctx_tab, __u64 ctx, __u8 op)
{
	struct sql_event *ev = new_entry(&operations, &g, &zeroes);
	if (!ev)
		return 0;
	ev->kind = EVENT_OPERATION;
	ev->op = op;
	if (sql_mark_goroutines) {
		__u8 mark = 1;
		bpf_map_update_elem(&sql_goroutines, &g, &mark, BPF_ANY);
	}
	ev->start_ns = bpf_ktime_get_ns();
	struct span_ref *parent = find_parent(ctx_tab, ctx, 0, g, 1);
	start_client_span(parent, &ev->sc, ev->parent_span_id, &ev->has_parent, &ev->trace_flags);
	return ev;
}

/* read_name copies the Go string at addr, the database's name, whole or not at all: a
 * name cut short would be another database's. */
static __always_inline void read_name(struct sql_conn *c, __u64 addr)
{
	struct go_string s = {};
	if (read_user(&s, sizeof(s), addr) != 0 || s.len <= 0 || s.len > DB_NAME_MAX)
		return;
	c->name_len = copy_go_string(c->name, DB_NAME_MAX, &s);
}

/* read_namespace reads the database's name from the configuration of the driver's
 * connection conn (a *T of type, as read_conn found it). pg is pgx's *pgconn.PgConn,
 * which read_conn reached already. */
static __always_inline void read_namespace(struct sql_conn *c, __u64 conn, __u64 pg)
{
	if (!conn)
		return;
	if (c->type == type_stdlib_Conn && pg && off_pgconn_PgConn_config != OFFSET_NONE &&
	    off_pgconn_Config_Database != OFFSET_NONE) {
		__u64 cfg = read_ptr(pg + off_pgconn_PgConn_config);
		if (cfg)
			read_name(c, cfg + off_pgconn_Config_Database);
	} else if (c->type == type_pq_conn && off_pq_conn_cfg != OFFSET_NONE && off_pq_Config_Database != OFFSET_NONE) {
		read_name(c, conn + off_pq_conn_cfg + off_pq_Config_Database);
	} else if (c->type == type_mysql_mysqlConn && off_mysql_mysqlConn_cfg != OFFSET_NONE &&
		   off_mysql_Config_DBName != OFFSET_NONE) {
		__u64 cfg = read_ptr(conn + off_mysql_mysqlConn_cfg);
		if (cfg)
			read_name(c, cfg + off_mysql_Config_DBName);
	}
}

/* read_conn reads which connection a *driverConn is: the driver's connection's
 * dynamic type and, for a driver known, its server's address and its database's
 * name. */
static __always_inline void read_conn(struct sql_conn *c, __u64 dc)
{
	if (!dc || off_sql_driverConn_ci == OFFSET_NONE)
		return;
	struct go_iface ci = {};
	if (read_user(&ci, sizeof(ci), dc + off_sql_driverConn_ci) != 0 || !ci.tab)
		return;
	c->type = read_ptr(ci.tab + 8); /* itab.Type */
	if (!c->type)
		return;
	__u64 conn = 0, pg = 0; /* the net.Conn under it; pgx's *pgconn.PgConn */
	if (c->type == type_stdlib_Conn && off_stdlib_Conn_conn != OFFSET_NONE && off_pgx_Conn_pgConn != OFFSET_NONE &&
	    off_pgconn_PgConn_conn != OFFSET_NONE) {
		__u64 pgx = read_ptr(ci.data + off_stdlib_Conn_conn);
		pg = pgx ? read_ptr(pgx + off_pgx_Conn_pgConn) : 0;
		conn = pg ? pg + off_pgconn_PgConn_conn : 0;
	} else if (c->type == type_pq_conn && off_pq_conn_c != OFFSET_NONE) {
		conn = ci.data + off_pq_conn_c;
	}
	if (conn)
		read_tcp_remote(&c->server, conn);
	read_namespace(c, ci.data, pg);
}

/* read_error reads a driver's error known, whose dynamic type is type and data word
 * data: a PostgreSQL driver's SQLSTATE, MySQL's error number, and the start of the
 * message. A *pgconn.PrepareError is read through: the server's error is inside. */
static __always_inline void read_error(struct sql_error *e, __u64 type, __u64 data)
{
	if (type && type == type_pgconn_PrepareError && off_pgconn_PrepareError_err != OFFSET_NONE) {
		struct go_iface inner = {};
		if (read_user(&inner, sizeof(inner), data + off_pgconn_PrepareError_err) != 0 || !inner.tab)
			return;
		type = read_ptr(inner.tab + 8); /* itab.Type */
		data = inner.data;
	}
	if (!type || !data)
		return;
	__u64 code = OFFSET_NONE, message = OFFSET_NONE;
	if (type == type_pgconn_PgError) {
		code = off_pgconn_PgError_Code;
		message = off_pgconn_PgError_Message;
	} else if (type == type_pq_Error) {
		code = off_pq_Error_Code;
		message = off_pq_Error_Message;
	} else if (type == type_mysql_MySQLError && off_mysql_MySQLError_Number != OFFSET_NONE) {
		if (read_user(&e->number, sizeof(e->number), data + off_mysql_MySQLError_Number) != 0 || !e->number)
			return;
		e->kind = ERROR_NUMBER;
		message = off_mysql_MySQLError_Message;
	} else {
		return;
	}
	if (e->kind != ERROR_NUMBER) {
		if (code == OFFSET_NONE)
			return;
		struct go_string s = {};
		if (read_user(&s, sizeof(s), data + code) != 0 || s.len <= 0 || s.len > CODE_MAX)
			return;
		e->code_len = copy_go_string(e->code, CODE_MAX, &s);
		if (!e->code_len)
			return;
		e->kind = ERROR_SQLSTATE;
	}
	if (message == OFFSET_NONE)
		return;
	struct go_string m = {};
	if (read_user(&m, sizeof(m), data + message) != 0 || m.len <= 0)
		return;
	e->message_len = m.len;
	e->message_copied = copy_go_string(e->message, MESSAGE_MAX, &m);
}

/* copy_text copies a statement's text into t. */
static __always_inline void copy_text(struct sql_text *t, __u64 ptr, __u64 len)
{
	struct go_string s = {.ptr = ptr, .len = len};
	t->len = len;
	t->copied = copy_go_string(t->text, QUERY_MAX, &s);
}

/* end outputs the goroutine's span, with the error (an interface's words) it ended with. */
static __always_inline void end(__u64 g, __u64 err_tab, __u64 err_data)
{
	struct sql_event *ev = bpf_map_lookup_elem(&operations, &g);
	if (!ev)
		return;
	ev->end_ns = bpf_ktime_get_ns();
	if (err_tab) {
		ev->error_type = read_ptr(err_tab + 8); /* itab.Type */
		read_error(&ev->error, ev->error_type, err_data);
	}
	/* Only the text's bytes copied: most statements are far shorter than QUERY_MAX,
	 * and the ring buffer then holds that many more spans. A driver's error comes
	 * after the whole text: only a failed operation sends it. */
	__u64 size = __builtin_offsetof(struct sql_event, query.text) + ev->query.copied;
	if (ev->error.kind || size > __builtin_offsetof(struct sql_event, error))
		size = sizeof(*ev);
	submit(ev, size);
	bpf_map_delete_elem(&operations, &g);
	if (sql_mark_goroutines)
		bpf_map_delete_elem(&sql_goroutines, &g);
}

SEC("uprobe/DB_queryDC")
int query_entry(struct go_regs *ctx)
{
	if (!sql_enabled)
		return 0;
	__u64 g = go_goroutine(ctx);
	struct sql_event *ev = begin(g, go_arg(ctx, 2), go_arg(ctx, 3), OP_QUERY);
	if (!ev)
		return 0;
	read_conn(&ev->conn, go_arg(ctx, 6));
	copy_text(&ev->query, go_arg(ctx, 8), go_arg(ctx, 9));
	return 0;
}

SEC("uprobe/DB_queryDC_return")
int query_return(struct go_regs *ctx)
{
	end(go_goroutine(ctx), go_arg(ctx, 2), go_arg(ctx, 3)); /* (*Rows, error) */
	return 0;
}

SEC("uprobe/DB_execDC")
int exec_entry(struct go_regs *ctx)
{
	if (!sql_enabled)
		return 0;
	__u64 g = go_goroutine(ctx);
	struct sql_event *ev = begin(g, go_arg(ctx, 2), go_arg(ctx, 3), OP_EXEC);
	if (!ev)
		return 0;
	read_conn(&ev->conn, go_arg(ctx, 4));
	copy_text(&ev->query, go_arg(ctx, 6), go_arg(ctx, 7));
	return 0;
}

SEC("uprobe/DB_execDC_return")
int exec_return(struct go_regs *ctx)
{
	end(go_goroutine(ctx), go_arg(ctx, 3), go_arg(ctx, 4)); /* (Result, error) */
	return 0;
}

SEC("uprobe/DB_prepareDC")
int prepare_entry(struct go_regs *ctx)
{
	if (!sql_enabled)
		return 0;
	__u64 g = go_goroutine(ctx);
	struct sql_preparing p = {.query = {.ptr = go_arg(ctx, 8), .len = go_arg(ctx, 9)}};
	read_conn(&p.conn, go_arg(ctx, 4));
	bpf_map_update_elem(&preparing, &g, &p, BPF_ANY);
	return 0;
}

SEC("uprobe/DB_prepareDC_return")
int prepare_return(struct go_regs *ctx)
{
	__u64 g = go_goroutine(ctx);
	struct sql_preparing *p = bpf_map_lookup_elem(&preparing, &g);
	if (!p)
		return 0;
	__u64 stmt = go_arg(ctx, 1); /* (*Stmt, error) */
	if (stmt) {
		struct sql_statement *st = new_entry(&statements, &stmt, &zeroes);
		if (st) {
			st->conn = p->conn;
			copy_text(&st->query, p->query.ptr, p->query.len);
		}
	}
	bpf_map_delete_elem(&preparing, &g);
	return 0;
}

SEC("uprobe/Stmt_Close")
int stmt_close(struct go_regs *ctx)
{
	__u64 stmt = go_arg(ctx, 1);
	bpf_map_delete_elem(&statements, &stmt);
	return 0;
}

/* stmt_begin starts the span of an execution of the *Stmt s. */
static __always_inline void stmt_begin(struct go_regs *ctx, __u8 op)
{
	if (!sql_enabled)
		return;
	__u64 g = go_goroutine(ctx), stmt = go_arg(ctx, 1);
	struct sql_event *ev = begin(g, go_arg(ctx, 2), go_arg(ctx, 3), op);
	if (!ev)
		return;
	struct sql_statement *st = bpf_map_lookup_elem(&statements, &stmt);
	if (!st)
		return;
	ev->conn = st->conn;
	bpf_probe_read_kernel(&ev->query, sizeof(st->query), &st->query); /* too large for an inline copy */
}

SEC("uprobe/Stmt_QueryContext")
int stmt_query_entry(struct go_regs *ctx)
{
	stmt_begin(ctx, OP_STMT_QUERY);
	return 0;
}

SEC("uprobe/Stmt_QueryContext_return")
int stmt_query_return(struct go_regs *ctx)
{
	end(go_goroutine(ctx), go_arg(ctx, 2), go_arg(ctx, 3)); /* (*Rows, error) */
	return 0;
}

SEC("uprobe/Stmt_ExecContext")
int stmt_exec_entry(struct go_regs *ctx)
{
	stmt_begin(ctx, OP_STMT_EXEC);
	return 0;
}

SEC("uprobe/Stmt_ExecContext_return")
int stmt_exec_return(struct go_regs *ctx)
{
	end(go_goroutine(ctx), go_arg(ctx, 3), go_arg(ctx, 4)); /* (Result, error) */
	return 0;
}
