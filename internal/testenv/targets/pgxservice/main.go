// Command pgxservice is an HTTP service that uses PostgreSQL through pgx's own API (a
// pgxpool.Pool), for the pgx probe's tests: each endpoint does one kind of operation
// inside its handler. /stdlib uses the same database through pgx's database/sql
// adapter, its only database/sql driver. /ops and /sqlops?n=N make N QueryRows, of the
// pool and through the adapter, for the benchmarks.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	dsn := flag.String("dsn", "", "PostgreSQL connection URL")
	flag.Parse()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, *dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, "CREATE TABLE IF NOT EXISTS items (name TEXT, qty INTEGER)"); err != nil {
		log.Fatal(err)
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	fail := func(w http.ResponseWriter, err error) { http.Error(w, err.Error(), http.StatusInternalServerError) }
	mux := http.NewServeMux()
	// The pool's Exec and QueryRow, with placeholders.
	mux.HandleFunc("GET /items/{name}", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if _, err := pool.Exec(ctx, "INSERT INTO items (name, qty) VALUES ($1, $2)", r.PathValue("name"), 1); err != nil {
			fail(w, err)
			return
		}
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM items WHERE name = $1", r.PathValue("name")).Scan(&n); err != nil {
			fail(w, err)
			return
		}
		fmt.Fprintln(w, n)
	})
	// The pool's Query, its rows read and closed.
	mux.HandleFunc("GET /query", func(w http.ResponseWriter, r *http.Request) {
		rows, err := pool.Query(r.Context(), "SELECT name, qty FROM items WHERE qty > $1", 0)
		if err != nil {
			fail(w, err)
			return
		}
		n := 0
		for rows.Next() {
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			fail(w, err)
			return
		}
		fmt.Fprintln(w, n)
	})
	// A transaction of the pool: two statements, then commit.
	mux.HandleFunc("GET /tx", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		tx, err := pool.Begin(ctx)
		if err != nil {
			fail(w, err)
			return
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, "INSERT INTO items (name, qty) VALUES ($1, $2)", "tx", 1); err != nil {
			fail(w, err)
			return
		}
		if _, err := tx.Exec(ctx, "UPDATE items SET qty = qty + 1 WHERE name = $1", "tx"); err != nil {
			fail(w, err)
			return
		}
		if err := tx.Commit(ctx); err != nil {
			fail(w, err)
			return
		}
		fmt.Fprintln(w, "committed")
	})
	// A pooled connection acquired, queried and released.
	mux.HandleFunc("GET /conn", func(w http.ResponseWriter, r *http.Request) {
		conn, err := pool.Acquire(r.Context())
		if err != nil {
			fail(w, err)
			return
		}
		defer conn.Release()
		var n int
		if err := conn.QueryRow(r.Context(), "SELECT count(*) FROM items").Scan(&n); err != nil {
			fail(w, err)
			return
		}
		fmt.Fprintln(w, n)
	})
	// A query of a table that does not exist: the server's SQLSTATE 42P01.
	mux.HandleFunc("GET /fail", func(w http.ResponseWriter, r *http.Request) {
		rows, err := pool.Query(r.Context(), "SELECT * FROM no_such_table")
		if err == nil {
			rows.Close()
			fail(w, fmt.Errorf("no error"))
			return
		}
		fmt.Fprintln(w, "failed as expected")
	})
	// Rows copied into a table, a secret among them: CopyFrom's rows are never read.
	mux.HandleFunc("GET /copy", func(w http.ResponseWriter, r *http.Request) {
		rows := [][]any{{"copied", 1}, {"s3cr3t-C0py-42", 2}}
		n, err := pool.CopyFrom(r.Context(), pgx.Identifier{"public", "items"}, []string{"name", "qty"}, pgx.CopyFromRows(rows))
		if err != nil {
			fail(w, err)
			return
		}
		fmt.Fprintln(w, n)
	})
	// A secret written into the statement as a literal.
	mux.HandleFunc("GET /secret", func(w http.ResponseWriter, r *http.Request) {
		if _, err := pool.Exec(r.Context(), "INSERT INTO items (name, qty) VALUES ('s3cr3t-T0ken-42', 7)"); err != nil {
			fail(w, err)
			return
		}
		fmt.Fprintln(w, "stored")
	})
	// A batch of three INSERTs (one statement, literals in it) and one of two kinds of
	// statement, sent in one round trip; their results read after.
	sendBatch := func(w http.ResponseWriter, r *http.Request, statements ...string) {
		b := &pgx.Batch{}
		for _, s := range statements {
			b.Queue(s)
		}
		if err := pool.SendBatch(r.Context(), b).Close(); err != nil {
			fail(w, err)
			return
		}
		fmt.Fprintln(w, b.Len())
	}
	mux.HandleFunc("GET /batch", func(w http.ResponseWriter, r *http.Request) {
		insert := "INSERT INTO items (name, qty) VALUES ('s3cr3t-batch', 3)"
		sendBatch(w, r, insert, insert, insert)
	})
	mux.HandleFunc("GET /batch-mixed", func(w http.ResponseWriter, r *http.Request) {
		sendBatch(w, r, "UPDATE items SET qty = qty + 1 WHERE name = 's3cr3t-batch'", "SELECT count(*) FROM items")
	})
	// Queries from goroutines the handler starts, with its context.
	mux.HandleFunc("GET /fanout", func(w http.ResponseWriter, r *http.Request) {
		var wg sync.WaitGroup
		for i := 0; i < 3; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var n int
				pool.QueryRow(r.Context(), "SELECT count(*) FROM items").Scan(&n)
			}()
		}
		wg.Wait()
		fmt.Fprintln(w, "fanned out")
	})
	// A query without the request's context, in the handler's goroutine.
	mux.HandleFunc("GET /noctx", func(w http.ResponseWriter, r *http.Request) {
		var n int
		if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM items WHERE qty > 0").Scan(&n); err != nil {
			fail(w, err)
			return
		}
		fmt.Fprintln(w, n)
	})
	// N QueryRows, natively or through the adapter (the benchmarks' one and ten).
	queryRows := func(w http.ResponseWriter, r *http.Request, row func(ctx context.Context) error) {
		n := 1
		fmt.Sscan(r.URL.Query().Get("n"), &n)
		for range n {
			if err := row(r.Context()); err != nil {
				fail(w, err)
				return
			}
		}
	}
	mux.HandleFunc("GET /ops", func(w http.ResponseWriter, r *http.Request) {
		queryRows(w, r, func(ctx context.Context) error {
			var n int
			return pool.QueryRow(ctx, "SELECT count(*) FROM items WHERE qty > $1", 0).Scan(&n)
		})
	})
	mux.HandleFunc("GET /sqlops", func(w http.ResponseWriter, r *http.Request) {
		queryRows(w, r, func(ctx context.Context) error {
			var n int
			return db.QueryRowContext(ctx, "SELECT count(*) FROM items WHERE qty > $1", 0).Scan(&n)
		})
	})
	// The same pool through pgx's database/sql adapter: one span per operation, pgx's
	// (database/sql's probe is left to pgx's, the adapter being the only driver).
	mux.HandleFunc("GET /stdlib", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if _, err := db.ExecContext(ctx, "INSERT INTO items (name, qty) VALUES ($1, $2)", "stdlib", 1); err != nil {
			fail(w, err)
			return
		}
		var n int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM items WHERE name = $1", "stdlib").Scan(&n); err != nil {
			fail(w, err)
			return
		}
		fmt.Fprintln(w, n)
	})
	srv := &http.Server{Addr: *addr, Handler: mux}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		srv.Shutdown(context.Background())
	}()
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
