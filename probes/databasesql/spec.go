// Package databasesql instruments database/sql: a client span per operation — a
// query or statement of a DB, Conn or Tx, or an execution of a prepared Stmt —
// whatever the driver, parented by the server span of the request that made it. This
// file declares what the probe needs from a target binary.
package databasesql

import (
	"golang.org/x/mod/semver"

	"github.com/otel-go-launcher/otel-go-launcher/offsets"
)

// Functions the probe attaches to: the same in every Go release supported.
const (
	queryDC   = "database/sql.(*DB).queryDC"
	execDC    = "database/sql.(*DB).execDC"
	prepareDC = "database/sql.(*DB).prepareDC"
	stmtClose = "database/sql.(*Stmt).Close"
	stmtQuery = "database/sql.(*Stmt).QueryContext"
	stmtExec  = "database/sql.(*Stmt).ExecContext"
	specName  = "database/sql"
)

// connDriver is the driver's connection inside database/sql's: its dynamic type says
// which database an operation went to, where an app links several drivers.
var connDriver = offsets.FieldRef{Struct: "database/sql.driverConn", Field: "ci"}

// The way from a driver's connection to its TCP connection, for the server's address:
// pgx's database/sql adapter (*stdlib.Conn → *pgx.Conn → *pgconn.PgConn → net.Conn)
// and lib/pq's (*pq.conn → net.Conn); then the standard library's, as net.h reads it.
var (
	pgxAdapterConn = offsets.FieldRef{Struct: "github.com/jackc/pgx/v5/stdlib.Conn", Field: "conn"}
	pgxConnPgConn  = offsets.FieldRef{Struct: "github.com/jackc/pgx/v5.Conn", Field: "pgConn"}
	pgConnConn     = offsets.FieldRef{Struct: "github.com/jackc/pgx/v5/pgconn.PgConn", Field: "conn"}
	pqConnConn     = offsets.FieldRef{Struct: "github.com/lib/pq.conn", Field: "c"}
	tcpFields      = []offsets.FieldSpec{
		{FieldRef: offsets.FieldRef{Struct: "net.TCPConn", Field: "conn"}, Optional: true},
		{FieldRef: offsets.FieldRef{Struct: "net.conn", Field: "fd"}, Optional: true},
		{FieldRef: offsets.FieldRef{Struct: "net.netFD", Field: "raddr"}, Optional: true},
		{FieldRef: offsets.FieldRef{Struct: "net.TCPAddr", Field: "IP"}, Optional: true},
		{FieldRef: offsets.FieldRef{Struct: "net.TCPAddr", Field: "Port"}, Optional: true},
	}
)

// The database's name (db.namespace), where the driver's connection keeps the
// configuration it connected with: pgx's *pgconn.PgConn → *pgconn.Config, lib/pq's
// conn.cfg (a pq.Config, from v1.11.0; before, a map of options the probe does not
// read), go-sql-driver/mysql's *mysqlConn → *mysql.Config.
var (
	pgConnConfig     = offsets.FieldRef{Struct: "github.com/jackc/pgx/v5/pgconn.PgConn", Field: "config"}
	pgConfigDatabase = offsets.FieldRef{Struct: "github.com/jackc/pgx/v5/pgconn.Config", Field: "Database"}
	pqConnConfig     = offsets.FieldRef{Struct: "github.com/lib/pq.conn", Field: "cfg"}
	pqConfigDatabase = offsets.FieldRef{Struct: "github.com/lib/pq.Config", Field: "Database"}
	mysqlConnConfig  = offsets.FieldRef{Struct: "github.com/go-sql-driver/mysql.mysqlConn", Field: "cfg"}
	mysqlConfigName  = offsets.FieldRef{Struct: "github.com/go-sql-driver/mysql.Config", Field: "DBName"}
)

// PgxModule is pgx v5, whose database/sql adapter the probe reads, and whose own probe
// (probes/pgx) must make no second span for the adapter's operations.
const PgxModule = "github.com/jackc/pgx/v5"

// Where pgx's adapter is the program's only database/sql driver, every operation
// database/sql makes reaches pgx's own probe (probes/pgx) as a (*pgx.Conn).Exec or
// Query with the statement's text - a prepared Stmt's too, from pgx v5.5.0 (before,
// the statement's name) - and that probe makes its span alone: two uprobe hits an
// operation instead of four. A driver is known by its statement type's NumInput
// method, which database/sql calls through driver.Stmt, so the linker keeps it for
// every driver a program can open.
const (
	pgxAdapterNumInput = "github.com/jackc/pgx/v5/stdlib.(*Stmt).NumInput"
	pgxStmtTextSince   = "v5.5.0"
)

// leftToPgx is Spec's LeftTo.
func leftToPgx(b *offsets.Binary) string {
	if v := b.Modules.Version(PgxModule); v == "" || semver.Compare(v, pgxStmtTextSince) < 0 {
		return ""
	}
	drivers, err := b.FunctionsEndingIn(".NumInput")
	if err != nil || len(drivers) != 1 || drivers[0] != pgxAdapterNumInput {
		return ""
	}
	return "its operations are traced by pgx's probe: pgx's adapter (github.com/jackc/pgx/v5/stdlib) is the program's only database/sql driver"
}

// pqConfigSince is the first lib/pq release whose connection keeps a pq.Config.
const pqConfigSince = "v1.11.0"

// pgPrepareErrorSince is the first pgx release that wraps a failed prepare's error in a
// *pgconn.PrepareError; before, the *pgconn.PgError itself reaches database/sql.
const pgPrepareErrorSince = "v5.8.0"

// The drivers' errors, for db.response.status_code and the status description: the
// server's SQLSTATE and message in pgx's *pgconn.PgError (also inside the
// *pgconn.PrepareError a failed prepare returns) and lib/pq's *pq.Error, MySQL's
// error number and message in *mysql.MySQLError.
var (
	pgErrorCode       = offsets.FieldRef{Struct: "github.com/jackc/pgx/v5/pgconn.PgError", Field: "Code"}
	pgErrorMessage    = offsets.FieldRef{Struct: "github.com/jackc/pgx/v5/pgconn.PgError", Field: "Message"}
	pgPrepareErrorErr = offsets.FieldRef{Struct: "github.com/jackc/pgx/v5/pgconn.PrepareError", Field: "err"}
	pqErrorCode       = offsets.FieldRef{Struct: "github.com/lib/pq.Error", Field: "Code"}
	pqErrorMessage    = offsets.FieldRef{Struct: "github.com/lib/pq.Error", Field: "Message"}
	mysqlErrorNumber  = offsets.FieldRef{Struct: "github.com/go-sql-driver/mysql.MySQLError", Field: "Number"}
	mysqlErrorMessage = offsets.FieldRef{Struct: "github.com/go-sql-driver/mysql.MySQLError", Field: "Message"}
)

// Types whose descriptors the C program compares a connection's or an error's dynamic
// type with.
const (
	pgxAdapterConnType = "github.com/jackc/pgx/v5/stdlib.Conn"
	pqConnType         = "github.com/lib/pq.conn"
	mysqlConnType      = "github.com/go-sql-driver/mysql.mysqlConn"
	tcpConnType        = "net.TCPConn"
	tcpAddrType        = "net.TCPAddr"
	pgErrorType        = "github.com/jackc/pgx/v5/pgconn.PgError"
	pgPrepareErrorType = "github.com/jackc/pgx/v5/pgconn.PrepareError"
	pqErrorType        = "github.com/lib/pq.Error"
	mysqlErrorType     = "github.com/go-sql-driver/mysql.MySQLError"
)

// trackerProgram reaches every function the probe attaches to, and so the types it
// reads, with a driver of its own: the offsets tracker builds it with each Go release.
const trackerProgram = `package main

import (
	"database/sql"
	"database/sql/driver"
	"errors"
)

type nodriver struct{}

func (nodriver) Open(string) (driver.Conn, error) { return nil, errors.New("no database") }

func main() {
	sql.Register("tracker", nodriver{})
	db, err := sql.Open("tracker", "")
	if err != nil {
		return
	}
	db.Query("SELECT 1")
	db.Exec("SELECT 1")
	if s, err := db.Prepare("SELECT 1"); err == nil {
		s.Query()
		s.Exec()
		s.Close()
	}
}
`

// Spec: the entry and RETs of queryDC and execDC (two hits per operation); of
// prepareDC (two per prepare) and the entry of Stmt.Close; the entry and RETs of a
// Stmt's QueryContext and ExecContext (two per execution). A program links only what
// it calls: each is optional, and a program with none does not use database/sql.
var Spec = offsets.Spec{
	Name:    specName,
	Module:  "std",
	Package: "database/sql",
	Functions: []offsets.FuncSpec{
		{Symbols: []string{queryDC}, Returns: true, Optional: true},
		{Symbols: []string{execDC}, Returns: true, Optional: true},
		{Symbols: []string{prepareDC}, Returns: true, Optional: true},
		{Symbols: []string{stmtClose}, Optional: true},
		{Symbols: []string{stmtQuery}, Returns: true, Optional: true},
		{Symbols: []string{stmtExec}, Returns: true, Optional: true},
	},
	Fields:  append([]offsets.FieldSpec{{FieldRef: connDriver}}, tcpFields...),
	Program: trackerProgram,
	LeftTo:  leftToPgx,
}

// PgxSpec, PQSpec and MySQLSpec are what the probe reads of three drivers: the
// server's address of their operations (pgx, lib/pq), the database's name, an error's
// code and message. No function: fields of the driver's module, measured with each of
// its releases. A program without the driver does not use them. The fields beyond the
// address are optional: a release without one (lib/pq before v1.11.0 keeps no
// pq.Config) loses its attribute, nothing else.
var (
	PgxSpec = offsets.Spec{
		Name:       "database/sql.pgx",
		Module:     PgxModule,
		MinVersion: "v5.0.0",
		Fields: []offsets.FieldSpec{{FieldRef: pgxAdapterConn}, {FieldRef: pgxConnPgConn}, {FieldRef: pgConnConn},
			{FieldRef: pgConnConfig, Optional: true}, {FieldRef: pgConfigDatabase, Optional: true},
			{FieldRef: pgErrorCode, Optional: true}, {FieldRef: pgErrorMessage, Optional: true},
			{FieldRef: pgPrepareErrorErr, Since: pgPrepareErrorSince, Optional: true}},
		Program: driverProgram("github.com/jackc/pgx/v5/stdlib", "pgx", "postgres://127.0.0.1:1/none"),
	}
	PQSpec = offsets.Spec{
		Name:   "database/sql.pq",
		Module: "github.com/lib/pq",
		Fields: []offsets.FieldSpec{{FieldRef: pqConnConn},
			{FieldRef: pqConnConfig, Since: pqConfigSince, Optional: true},
			{FieldRef: pqConfigDatabase, Since: pqConfigSince, Optional: true},
			{FieldRef: pqErrorCode, Optional: true}, {FieldRef: pqErrorMessage, Optional: true}},
		Program: driverProgram("github.com/lib/pq", "postgres", "postgres://127.0.0.1:1/none"),
	}
	MySQLSpec = offsets.Spec{
		Name:   "database/sql.mysql",
		Module: "github.com/go-sql-driver/mysql",
		Fields: []offsets.FieldSpec{{FieldRef: mysqlConnConfig, Optional: true}, {FieldRef: mysqlConfigName, Optional: true},
			{FieldRef: mysqlErrorNumber, Optional: true}, {FieldRef: mysqlErrorMessage, Optional: true}},
		Program: driverProgram("github.com/go-sql-driver/mysql", "mysql", "root@tcp(127.0.0.1:1)/none"),
	}
)

// driverProgram is a program that opens a connection of the driver pkg registers as
// name, to dsn: the offsets tracker builds it with each of the driver's releases.
func driverProgram(pkg, name, dsn string) string {
	return `package main

import (
	"database/sql"

	_ "` + pkg + `"
)

func main() {
	if db, err := sql.Open("` + name + `", "` + dsn + `"); err == nil {
		db.Ping()
	}
}
`
}

// Specs are this package's probes.
var Specs = []offsets.Spec{Spec, PgxSpec, PQSpec, MySQLSpec}
