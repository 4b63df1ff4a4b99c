// Command dbservice is an HTTP service that uses a database through database/sql, for
// the database/sql probe's tests: each endpoint does one kind of operation inside its
// handler.
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	_ "github.com/go-sql-driver/mysql" // "mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // "pgx"
	_ "github.com/lib/pq"              // "postgres"
	_ "modernc.org/sqlite"             // "sqlite"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	driver := flag.String("driver", "sqlite", "database/sql driver: sqlite, pgx, postgres or mysql")
	dsn := flag.String("dsn", "file::memory:?cache=shared", "data source name")
	flag.Parse()
	db, err := sql.Open(*driver, *dsn)
	if err != nil {
		log.Fatal(err)
	}
	if *driver == "sqlite" {
		db.SetMaxOpenConns(1) // one connection: an in-memory database per connection otherwise
	}
	if _, err := db.Exec("CREATE TABLE IF NOT EXISTS items (name TEXT, qty INTEGER)"); err != nil {
		log.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE IF NOT EXISTS creds (token TEXT)"); err != nil {
		log.Fatal(err)
	}
	fail := func(w http.ResponseWriter, err error) { http.Error(w, err.Error(), http.StatusInternalServerError) }
	// param is a statement's nth parameter, as the driver's database writes it.
	param := func(n int) string {
		if *driver == "mysql" {
			return "?"
		}
		return fmt.Sprintf("$%d", n)
	}
	mux := http.NewServeMux()
	// An insert and a select, with placeholders.
	mux.HandleFunc("GET /items/{name}", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if _, err := db.ExecContext(ctx, "INSERT INTO items (name, qty) VALUES ("+param(1)+", "+param(2)+")", r.PathValue("name"), 1); err != nil {
			fail(w, err)
			return
		}
		var n int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM items WHERE name = "+param(1), r.PathValue("name")).Scan(&n); err != nil {
			fail(w, err)
			return
		}
		fmt.Fprintln(w, n)
	})
	// A transaction: two statements, then commit.
	mux.HandleFunc("GET /tx", func(w http.ResponseWriter, r *http.Request) {
		tx, err := db.BeginTx(r.Context(), nil)
		if err != nil {
			fail(w, err)
			return
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(r.Context(), "INSERT INTO items (name, qty) VALUES ($1, $2)", "tx", 1); err != nil {
			fail(w, err)
			return
		}
		if _, err := tx.ExecContext(r.Context(), "UPDATE items SET qty = qty + 1 WHERE name = $1", "tx"); err != nil {
			fail(w, err)
			return
		}
		if err := tx.Commit(); err != nil {
			fail(w, err)
			return
		}
		fmt.Fprintln(w, "committed")
	})
	// A prepared statement executed twice.
	mux.HandleFunc("GET /prepared", func(w http.ResponseWriter, r *http.Request) {
		stmt, err := db.PrepareContext(r.Context(), "SELECT qty FROM items WHERE name = $1")
		if err != nil {
			fail(w, err)
			return
		}
		defer stmt.Close()
		for _, name := range []string{"a", "b"} {
			rows, err := stmt.QueryContext(r.Context(), name)
			if err != nil {
				fail(w, err)
				return
			}
			rows.Close()
		}
		fmt.Fprintln(w, "prepared")
	})
	// A query of a table that does not exist.
	mux.HandleFunc("GET /fail", func(w http.ResponseWriter, r *http.Request) {
		_, err := db.QueryContext(r.Context(), "SELECT * FROM no_such_table")
		if err == nil {
			fail(w, fmt.Errorf("no error"))
			return
		}
		fmt.Fprintln(w, "failed as expected")
	})
	// A unique key's violation, its key a secret ("Qz7", as /hostile's) that MySQL
	// quotes in its message: the table made, the key deleted, inserted, inserted
	// again.
	mux.HandleFunc("GET /dup", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if _, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS uniq (k VARCHAR(64) PRIMARY KEY)"); err != nil {
			fail(w, err)
			return
		}
		if _, err := db.ExecContext(ctx, "DELETE FROM uniq WHERE k = "+param(1), "xQz7dup"); err != nil {
			fail(w, err)
			return
		}
		for i := 0; i < 2; i++ {
			_, err := db.ExecContext(ctx, "INSERT INTO uniq (k) VALUES ("+param(1)+")", "xQz7dup")
			if i == 0 && err != nil {
				fail(w, err)
				return
			}
			if i == 1 && err == nil {
				fail(w, fmt.Errorf("no error"))
				return
			}
		}
		fmt.Fprintln(w, "failed as expected")
	})
	// A value the column's type refuses, written as a literal the database's message
	// quotes (PostgreSQL's and MySQL's in strict mode).
	mux.HandleFunc("GET /cast", func(w http.ResponseWriter, r *http.Request) {
		if _, err := db.ExecContext(r.Context(), "INSERT INTO items (name, qty) VALUES ('cast', 'xQz7cast')"); err == nil {
			fail(w, fmt.Errorf("no error"))
			return
		}
		fmt.Fprintln(w, "failed as expected")
	})
	// A secret written into the statement as a literal.
	mux.HandleFunc("GET /secret", func(w http.ResponseWriter, r *http.Request) {
		if _, err := db.ExecContext(r.Context(), "INSERT INTO creds (token) VALUES ('s3cr3t-T0ken-42')"); err != nil {
			fail(w, err)
			return
		}
		fmt.Fprintln(w, "stored")
	})
	// A hostile statement (privilege boundary review): a comment where the table's name is read (nested,
	// as PostgreSQL reads them), a string, a line comment. The secrets in them ("Qz7")
	// must not be exported.
	mux.HandleFunc("GET /hostile", func(w http.ResponseWriter, r *http.Request) {
		comment := "/* xQz7comment /* xQz7nested */ xQz7outer */"
		if *driver == "sqlite" { // SQLite's comments do not nest
			comment = "/* xQz7comment */"
		}
		var n int
		q := "SELECT count(*) FROM " + comment + " creds WHERE token <> 'xQz7literal' -- xQz7line"
		if err := db.QueryRowContext(r.Context(), q).Scan(&n); err != nil {
			fail(w, err)
			return
		}
		fmt.Fprintln(w, n)
	})
	// Queries from goroutines the handler starts, with its context.
	mux.HandleFunc("GET /fanout", func(w http.ResponseWriter, r *http.Request) {
		var wg sync.WaitGroup
		for i := 0; i < 3; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var n int
				db.QueryRowContext(r.Context(), "SELECT count(*) FROM items").Scan(&n)
			}()
		}
		wg.Wait()
		fmt.Fprintln(w, "fanned out")
	})
	// A statement of 1 MiB, most of it a literal.
	mux.HandleFunc("GET /big", func(w http.ResponseWriter, r *http.Request) {
		var n int
		big := "SELECT count(*) FROM items WHERE name <> '" + strings.Repeat("x", 1<<20) + "'"
		if err := db.QueryRowContext(r.Context(), big).Scan(&n); err != nil {
			fail(w, err)
			return
		}
		fmt.Fprintln(w, n)
	})
	// A query that lasts while the test takes its server away.
	mux.HandleFunc("GET /sleep", func(w http.ResponseWriter, r *http.Request) {
		if _, err := db.ExecContext(r.Context(), "SELECT pg_sleep(10)"); err != nil {
			http.Error(w, "query failed", http.StatusBadGateway)
			return
		}
		fmt.Fprintln(w, "slept")
	})
	// A query without a context, in the handler's goroutine.
	mux.HandleFunc("GET /noctx", func(w http.ResponseWriter, r *http.Request) {
		rows, err := db.Query("SELECT name FROM items")
		if err != nil {
			fail(w, err)
			return
		}
		rows.Close()
		fmt.Fprintln(w, "no context")
	})
	// One query, and ten, for the benchmark: the difference between the two is what
	// nine queries cost, apart from the request's own cost.
	queries := func(n int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			var count int
			for i := 0; i < n; i++ {
				if err := db.QueryRowContext(r.Context(), "SELECT count(*) FROM items WHERE name = $1", "bench").Scan(&count); err != nil {
					fail(w, err)
					return
				}
			}
			fmt.Fprintln(w, count)
		}
	}
	mux.HandleFunc("GET /query", queries(1))
	mux.HandleFunc("GET /queries", queries(10))
	srv := &http.Server{Addr: *addr, Handler: mux}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Shutdown(context.Background())
	}()
	log.Printf("dbservice: listening on %s (%s)", *addr, *driver)
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
