// Package databasesql instruments database/sql: a client span per operation — a
// query or statement of a DB, Conn or Tx, or an execution of a prepared Stmt —
// whatever the driver, parented by the server span of the request that made it. This
// file declares what the probe needs from a target binary.
package databasesql

import "github.com/otel-go-launcher/otel-go-launcher/offsets"

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

// Types whose descriptors the C program compares a connection's dynamic type with.
const (
	pgxAdapterConnType = "github.com/jackc/pgx/v5/stdlib.Conn"
	pqConnType         = "github.com/lib/pq.conn"
	tcpConnType        = "net.TCPConn"
	tcpAddrType        = "net.TCPAddr"
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
}

// PgxSpec and PQSpec are what the probe reads of two drivers, for the server's address
// of their operations: no function, fields of the driver's module, measured with each
// of its releases. A program without the driver does not use them.
var (
	PgxSpec = offsets.Spec{
		Name:       "database/sql.pgx",
		Module:     "github.com/jackc/pgx/v5",
		MinVersion: "v5.0.0",
		Fields:     []offsets.FieldSpec{{FieldRef: pgxAdapterConn}, {FieldRef: pgxConnPgConn}, {FieldRef: pgConnConn}},
		Program:    driverProgram("github.com/jackc/pgx/v5/stdlib", "pgx"),
	}
	PQSpec = offsets.Spec{
		Name:    "database/sql.pq",
		Module:  "github.com/lib/pq",
		Fields:  []offsets.FieldSpec{{FieldRef: pqConnConn}},
		Program: driverProgram("github.com/lib/pq", "postgres"),
	}
)

// driverProgram is a program that opens a connection of the driver pkg registers as
// name: the offsets tracker builds it with each of the driver's releases.
func driverProgram(pkg, name string) string {
	return `package main

import (
	"database/sql"

	_ "` + pkg + `"
)

func main() {
	if db, err := sql.Open("` + name + `", "postgres://127.0.0.1:1/none"); err == nil {
		db.Ping()
	}
}
`
}

// Specs are this package's probes.
var Specs = []offsets.Spec{Spec, PgxSpec, PQSpec}
