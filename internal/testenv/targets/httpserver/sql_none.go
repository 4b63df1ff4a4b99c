//go:build nosql

package main

import (
	"net/http"
	"reflect"
)

// Built with -tags nosql, the program has no database/sql: its only client is net/http's
// (the bench measures what a server request costs then).
func addSQLRoute(*http.ServeMux)                                       {}
func sqlOffsets(func(t reflect.Type, prefix string, fields ...string)) {}
