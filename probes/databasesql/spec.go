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
	Fields:  []offsets.FieldSpec{{FieldRef: connDriver}},
	Program: trackerProgram,
}

// Specs are this package's probes.
var Specs = []offsets.Spec{Spec}
