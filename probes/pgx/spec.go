// Package pgx instruments github.com/jackc/pgx/v5 used natively: a client span per
// Query, QueryRow, Exec and CopyFrom of a Conn, a pgxpool.Pool, a Tx or a pool's Conn, parented
// by the server span of the request that made it. This file declares what the probe
// needs from a target binary.
package pgx

import (
	"github.com/otel-go-launcher/otel-go-launcher/offsets"
	"github.com/otel-go-launcher/otel-go-launcher/probes/databasesql"
)

// Module is the instrumented module, and the oldest release supported.
const (
	Module     = databasesql.PgxModule
	MinVersion = "v5.0.0"
)

// Functions the probe attaches to, in every v5 release: whatever the app calls them
// on, a pool's, a transaction's and a pooled connection's Query, QueryRow and Exec
// delegate to these two methods of the *pgx.Conn that runs them (QueryRow is Query).
const (
	connExec  = "github.com/jackc/pgx/v5.(*Conn).Exec"
	connQuery = "github.com/jackc/pgx/v5.(*Conn).Query"
	// CopyFrom is the pool's, a transaction's and a pooled connection's too.
	connCopyFrom = "github.com/jackc/pgx/v5.(*Conn).CopyFrom"
	// SendBatch is the pool's, a transaction's and a pooled connection's too.
	connSendBatch = "github.com/jackc/pgx/v5.(*Conn).SendBatch"
	specName      = "pgx"
)

// Fields the program reads: the way from a *pgx.Conn to its TCP connection (the
// server's address) and its configuration (the database's name), and a server's error
// (its SQLSTATE and message), also inside the *pgconn.PrepareError a failed prepare
// returns from v5.8.0. The same fields as database/sql's reading of pgx's adapter.
var (
	connPgConn        = offsets.FieldRef{Struct: "github.com/jackc/pgx/v5.Conn", Field: "pgConn"}
	pgConnConn        = offsets.FieldRef{Struct: "github.com/jackc/pgx/v5/pgconn.PgConn", Field: "conn"}
	pgConnConfig      = offsets.FieldRef{Struct: "github.com/jackc/pgx/v5/pgconn.PgConn", Field: "config"}
	configDatabase    = offsets.FieldRef{Struct: "github.com/jackc/pgx/v5/pgconn.Config", Field: "Database"}
	pgErrorCode       = offsets.FieldRef{Struct: "github.com/jackc/pgx/v5/pgconn.PgError", Field: "Code"}
	pgErrorMessage    = offsets.FieldRef{Struct: "github.com/jackc/pgx/v5/pgconn.PgError", Field: "Message"}
	prepareErrorErr   = offsets.FieldRef{Struct: "github.com/jackc/pgx/v5/pgconn.PrepareError", Field: "err"}
	prepareErrorSince = "v5.8.0"
	// A batch's queue and a queued statement's text, as exported from v5.5.3 (before,
	// the same fields in lower case: a C variable of that name would clash with these
	// in bpf2go's Go names, so older batches' spans have neither size nor texts).
	batchQueue        = offsets.FieldRef{Struct: "github.com/jackc/pgx/v5.Batch", Field: "QueuedQueries"}
	queuedText        = offsets.FieldRef{Struct: "github.com/jackc/pgx/v5.QueuedQuery", Field: "SQL"}
	batchExportedFrom = "v5.5.3"
	tcpFields         = []offsets.FieldSpec{
		{FieldRef: offsets.FieldRef{Struct: "net.TCPConn", Field: "conn"}, Optional: true},
		{FieldRef: offsets.FieldRef{Struct: "net.conn", Field: "fd"}, Optional: true},
		{FieldRef: offsets.FieldRef{Struct: "net.netFD", Field: "raddr"}, Optional: true},
		{FieldRef: offsets.FieldRef{Struct: "net.TCPAddr", Field: "IP"}, Optional: true},
		{FieldRef: offsets.FieldRef{Struct: "net.TCPAddr", Field: "Port"}, Optional: true},
	}
)

// Types whose descriptors the C program compares a connection's or an error's dynamic
// type with.
const (
	tcpConnType      = "net.TCPConn"
	tcpAddrType      = "net.TCPAddr"
	pgErrorType      = "github.com/jackc/pgx/v5/pgconn.PgError"
	prepareErrorType = "github.com/jackc/pgx/v5/pgconn.PrepareError"
)

// trackerProgram reaches the functions and types the probe reads: the offsets tracker
// builds it with each pgx release (it never runs).
const trackerProgram = `package main

import (
	"context"

	"github.com/jackc/pgx/v5"
)

func main() {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, "postgres://127.0.0.1:1/none")
	if err != nil {
		return
	}
	conn.Exec(ctx, "SELECT 1")
	if rows, err := conn.Query(ctx, "SELECT 1"); err == nil {
		rows.Close()
	}
	conn.CopyFrom(ctx, pgx.Identifier{"t"}, []string{"c"}, pgx.CopyFromRows([][]any{{1}}))
	b := &pgx.Batch{}
	b.Queue("SELECT 1")
	conn.SendBatch(ctx, b).Close()
}
`

// Spec: the entry and RETs of Exec, Query, CopyFrom and SendBatch, two hits per operation. A program links
// only what it calls: each is optional, and a program with neither does not use pgx.
var Spec = offsets.Spec{
	Name:       specName,
	Module:     Module,
	MinVersion: MinVersion,
	Functions: []offsets.FuncSpec{
		{Symbols: []string{connExec}, Returns: true, Optional: true},
		{Symbols: []string{connQuery}, Returns: true, Optional: true},
		{Symbols: []string{connCopyFrom}, Returns: true, Optional: true},
		{Symbols: []string{connSendBatch}, Returns: true, Optional: true},
	},
	Fields: append([]offsets.FieldSpec{{FieldRef: connPgConn}, {FieldRef: pgConnConn},
		{FieldRef: pgConnConfig, Optional: true}, {FieldRef: configDatabase, Optional: true},
		{FieldRef: pgErrorCode, Optional: true}, {FieldRef: pgErrorMessage, Optional: true},
		{FieldRef: prepareErrorErr, Since: prepareErrorSince, Optional: true},
		{FieldRef: batchQueue, Since: batchExportedFrom, Optional: true}, {FieldRef: queuedText, Since: batchExportedFrom, Optional: true}}, tcpFields...),
	Program: trackerProgram,
}

// Specs are this package's probes.
var Specs = []offsets.Spec{Spec}
