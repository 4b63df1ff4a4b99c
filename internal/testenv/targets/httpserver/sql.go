//go:build !nosql

package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"io"
	"net/http"
	"reflect"
)

// addSQLRoute adds /sql, whose handler queries, executes and prepares through
// database/sql with a driver of its own, so that every build of this program has the
// functions and types the database/sql probe reads.
func addSQLRoute(mux *http.ServeMux) {
	db := sql.OpenDB(connector{})
	mux.HandleFunc("/sql", func(w http.ResponseWriter, r *http.Request) {
		var n int64
		db.QueryRowContext(r.Context(), "SELECT count(*) FROM items").Scan(&n)
		db.ExecContext(r.Context(), "DELETE FROM items")
		if s, err := db.PrepareContext(r.Context(), "SELECT 1"); err == nil {
			s.QueryRowContext(r.Context()).Scan(&n)
			s.ExecContext(r.Context())
			s.Close()
		}
		fmt.Fprintln(w, n)
	})
}

// sqlOffsets adds what reflect says of the database/sql fields the probe reads.
func sqlOffsets(add func(t reflect.Type, prefix string, fields ...string)) {
	if dc, ok := reflect.TypeOf(sql.Conn{}).FieldByName("dc"); ok {
		add(dc.Type.Elem(), "database/sql.driverConn", "ci")
	}
}

// A driver that answers every statement with one row of one 0.
type connector struct{}

func (connector) Connect(context.Context) (driver.Conn, error) { return conn{}, nil }

type conn struct{}
type stmt struct{}
type rows struct{ done bool }

func (c connector) Driver() driver.Driver               { return nil }
func (conn) Prepare(string) (driver.Stmt, error)        { return stmt{}, nil }
func (conn) Close() error                               { return nil }
func (conn) Begin() (driver.Tx, error)                  { return nil, driver.ErrSkip }
func (stmt) Close() error                               { return nil }
func (stmt) NumInput() int                              { return -1 }
func (stmt) Exec([]driver.Value) (driver.Result, error) { return driver.RowsAffected(0), nil }
func (stmt) Query([]driver.Value) (driver.Rows, error)  { return &rows{}, nil }
func (*rows) Columns() []string                         { return []string{"n"} }
func (*rows) Close() error                              { return nil }
func (r *rows) Next(dest []driver.Value) error {
	if r.done {
		return io.EOF
	}
	r.done, dest[0] = true, int64(0)
	return nil
}
