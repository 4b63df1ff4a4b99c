package databasesql

import (
	"context"
	"reflect"
	"sync"
	"unsafe"

	"github.com/otel-go-launcher/otel-go-launcher/probes/kit"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// scope is the instrumentation scope of the library's spans and metrics, named after
// this package.
var scope = telemetry.NewScope(reflect.TypeFor[Probe]().PkgPath())

// Library is database/sql for the probe kit.
func Library() kit.Library {
	lib := kit.Library{
		Name:   "database/sql",
		Specs:  Specs,
		Scope:  scope,
		Object: objectSpec,
		// By the call's context first; by the goroutine for a query made without one
		// (DB.Query) in the handler's goroutine.
		Clients: map[string]kit.Lookup{Spec.Name: kit.ByContext | kit.ByGoroutine},
	}
	lib.Load = func(ctx context.Context, t kit.Target, reps kit.Reports, env kit.Env) (kit.Probe, error) {
		return load(ctx, &lib, t, reps, env)
	}
	lib.Check = func(ctx context.Context, env kit.Env) []kit.Finding { return check(&lib) }
	return lib
}

// objectSpec is the embedded BPF object, parsed once.
var objectSpec = sync.OnceValues(loadDatabasesql)

// Probe is the database/sql instrumentation of one app.
type Probe struct {
	*kit.Object
	system string              // db.system.name, from the drivers compiled in
	event  databasesqlSqlEvent // a record cut short, completed (decode runs in one goroutine)
	types  *kit.TypeVariables  // the C program's type_* variables
	// Whether the app links pgx, whose own probe must make no second span for an
	// operation of its database/sql adapter (sql_goroutines.h).
	markGoroutines bool
}

// typeVariables are the C program's type_* variables, by the struct whose pointer
// type each is.
var typeVariables = map[string]string{
	pgxAdapterConnType: "type_stdlib_Conn",
	pqConnType:         "type_pq_conn",
	mysqlConnType:      "type_mysql_mysqlConn",
	tcpConnType:        "type_net_TCPConn",
	tcpAddrType:        "type_net_TCPAddr",
	pgErrorType:        "type_pgconn_PgError",
	pgPrepareErrorType: "type_pgconn_PrepareError",
	pqErrorType:        "type_pq_Error",
	mysqlErrorType:     "type_mysql_MySQLError",
}

var _ kit.Probe = (*Probe)(nil)

func load(ctx context.Context, lib *kit.Library, t kit.Target, reps kit.Reports, env kit.Env) (kit.Probe, error) {
	p := &Probe{system: systemOf(t.Modules), markGoroutines: t.Modules.Version(PgxModule) != ""}
	spec := kit.ObjectSpec{
		Library: lib,
		Uprobes: []kit.Uprobe{
			{Spec: Spec.Name, Symbol: queryDC, Entry: "query_entry", Return: "query_return"},
			{Spec: Spec.Name, Symbol: execDC, Entry: "exec_entry", Return: "exec_return"},
			{Spec: Spec.Name, Symbol: prepareDC, Entry: "prepare_entry", Return: "prepare_return"},
			{Spec: Spec.Name, Symbol: stmtClose, Entry: "stmt_close"},
			{Spec: Spec.Name, Symbol: stmtQuery, Entry: "stmt_query_entry", Return: "stmt_query_return"},
			{Spec: Spec.Name, Symbol: stmtExec, Entry: "stmt_exec_entry", Return: "stmt_exec_return"},
		},
		Enable: map[string]string{Spec.Name: "sql_enabled"},
		Decode: p.decode,
		// Operations waiting for the driver's answer when the app exits.
		InFlight: []kit.InFlight{{Map: "operations", Spec: Spec.Name, Span: p.openOperationSpan}},
	}
	var err error
	if p.Object, err = kit.LoadObject(ctx, t, reps, env, spec); err != nil {
		return nil, err
	}
	p.types = p.TypeVariables(typeVariables)
	return p, nil
}

// Configure also sets the connection types' addresses, where they are known before the
// app runs (it is not position-independent).
func (p *Probe) Configure(reps kit.Reports, inflight kit.Lookup) error {
	vars := p.types.Values()
	if p.markGoroutines {
		vars["sql_mark_goroutines"] = 1
	}
	return p.ConfigureWith(reps, inflight, vars)
}

// decode fills span from an event.
func (p *Probe) decode(raw []byte, span *telemetry.Span) bool {
	if kit.RecordKind(raw) != eventOperation {
		return false
	}
	p.types.SetOnce() // its operations run: the app's exec is done
	ev := kit.RecordPrefixAs(raw, &p.event, int(unsafe.Offsetof(p.event.Query.Text)))
	if ev == nil {
		return false
	}
	p.operationSpan(ev, span)
	return true
}

// openOperationSpan fills span from an operation still waiting for the driver's
// answer: no error known. The map holds the whole record: nothing to complete.
func (p *Probe) openOperationSpan(value []byte, span *telemetry.Span) bool {
	ev := kit.RecordAs[databasesqlSqlEvent](value)
	if ev == nil || ev.Kind != eventOperation {
		return false
	}
	p.operationSpan(ev, span)
	return true
}

// eventOperation is the C program's only event kind.
const eventOperation = 1

// check loads every program: what instrumenting an app will need of this host.
func check(lib *kit.Library) []kit.Finding {
	return kit.CheckFindings(lib, "database/sql: a statement made by Tx.Stmt has no text")
}
