package e2e

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// pgx spans from an HTTP service (internal/testenv/targets/pgxservice) using a private
// PostgreSQL server through pgx's own API: every Exec, Query and QueryRow of a pool, a
// transaction (its BEGIN and COMMIT are Execs too) and a pooled connection, and a
// pool's CopyFrom (named after its table; its rows never read), a CLIENT
// span, the child of the request's server span — from the handler's goroutine, from
// goroutines it starts with its context, and without a context — with the server's
// address and port, the database's name, the statement's text with its literals
// replaced, operation and table; a missing table's SQLSTATE (42P01) as
// db.response.status_code and error.type, status Error; the same pool through pgx's
// database/sql adapter one span per operation: pgx's, database/sql's probe being left
// to it where the adapter is the only driver (two uprobe hits, not four). Nothing of a
// statement's literal in any byte exported, spans or metrics. pgx v5.5.5 (read
// differently) and the newest, plain and stripped.
func TestPgxSpans(t *testing.T) {
	testenv.RequireRoot(t)
	targets := testenv.BuildPgx(t, testenv.PgxBuilds...)
	dsn, _ := startPostgres(t, "shop")
	for _, tg := range targets {
		t.Run(tg.Variant.Name, func(t *testing.T) { pgxSpans(t, tg, dsn) })
	}
}

func pgxSpans(t *testing.T, tg testenv.Target, dsn string) {
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())
	server := [2]any{u.Hostname(), int64(port)}
	recv := testenv.StartReceiver(t)
	recv.KeepBytes()
	addr := freeAddr(t)
	env := append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT="+recv.Endpoint, "OTEL_BSP_SCHEDULE_DELAY=200",
		"OTEL_SERVICE_NAME=pgxservice", "OTEL_RESOURCE_ATTRIBUTES=", "OTEL_TRACES_EXPORTER=", "OTEL_TRACES_SAMPLER=",
		"OTEL_METRICS_EXPORTER=", "OTEL_METRIC_EXPORT_INTERVAL=")
	r := start(t, opts{env: env, stdin: strings.NewReader("")}, launchBin(t), "--", tg.Path, "-addr", addr, "-dsn", dsn)
	firstRequest(t, addr, "/items/first")
	paths := []string{"/query", "/tx", "/conn", "/fail", "/copy", "/secret", "/fanout", "/noctx", "/stdlib", "/batch", "/batch-mixed"}
	for _, path := range paths {
		getOK(t, r, addr, path)
	}
	const items = 20
	for i := 0; i < items; i++ {
		getOK(t, r, addr, fmt.Sprintf("/items/n%d", i))
	}

	// The CREATE TABLE at start, without a parent; then per request.
	want := 1 + 1 + 4 + 1 + 1 + 1 + 1 + 3 + 1 + 2 + 1 + 1 + 2*(1+items)
	servers := 1 + len(paths) + items
	spans := exactSpans(t, recv, want+servers, 30*time.Second, r.stderr)
	byID := map[string]testenv.Span{}
	for _, s := range spans {
		byID[s.SpanID] = s
	}
	type dbSpan struct{ name, text, errType, scope string }
	const pgxScope = "pgx" // the probe's package, last element
	children := map[string][]dbSpan{}
	batchSizes := map[string][]any{} // by the server span's route: db spans under it
	for _, s := range spans {
		if s.Kind != tracepb.Span_SPAN_KIND_CLIENT {
			continue
		}
		if s.Attrs["db.system.name"] != "postgresql" {
			t.Errorf("%s: db.system.name %v", s.Name, s.Attrs["db.system.name"])
		}
		if got := [2]any{s.Attrs["server.address"], s.Attrs["server.port"]}; got != server {
			t.Errorf("%s: server %v, want %v", s.Name, got, server)
		}
		if ns := s.Attrs["db.namespace"]; ns != "shop" {
			t.Errorf("%s: db.namespace %v, want shop", s.Name, ns)
		}
		errType, _ := s.Attrs["error.type"].(string)
		if (errType != "") != (s.StatusCode == tracepb.Status_STATUS_CODE_ERROR) {
			t.Errorf("%s: error.type %q, status %v", s.Name, errType, s.StatusCode)
		}
		if errType != "" {
			if code := s.Attrs["db.response.status_code"]; code != errType || s.StatusMessage != "relation ? does not exist" {
				t.Errorf("%s: db.response.status_code %v, error.type %s, status description %q", s.Name, code, errType, s.StatusMessage)
			}
		}
		route := "(none)"
		if parent, ok := byID[s.ParentSpanID]; ok {
			if parent.Kind != tracepb.Span_SPAN_KIND_SERVER || parent.TraceID != s.TraceID {
				t.Errorf("%s: parent %s (%v)", s.Name, parent.Name, parent.Kind)
			}
			route = parent.Name
		} else if s.ParentSpanID != "" {
			t.Errorf("%s: parent %s is no span exported", s.Name, s.ParentSpanID)
		}
		text, _ := s.Attrs["db.query.text"].(string)
		scope := s.Scope.Name[strings.LastIndex(s.Scope.Name, "/")+1:]
		children[route] = append(children[route], dbSpan{s.Name, text, errType, scope})
		if n, ok := s.Attrs["db.operation.batch.size"]; ok {
			batchSizes[route] = append(batchSizes[route], n)
		}
	}
	if got := fmt.Sprint(batchSizes); got != "map[GET /batch:[3] GET /batch-mixed:[2]]" {
		t.Errorf("db.operation.batch.size by route: %s", got)
	}
	check := func(route string, want ...dbSpan) { t.Helper(); checkChildren(t, route, children[route], want) }
	check("(none)", dbSpan{"CREATE TABLE items", "CREATE TABLE IF NOT EXISTS items (name TEXT, qty INTEGER)", "", pgxScope})
	insert := dbSpan{"INSERT items", "INSERT INTO items (name, qty) VALUES ($1, $2)", "", pgxScope}
	count := dbSpan{"SELECT items", "SELECT count(*) FROM items WHERE name = $1", "", pgxScope}
	all := dbSpan{"SELECT items", "SELECT count(*) FROM items", "", pgxScope}
	check("GET /query", dbSpan{"SELECT items", "SELECT name, qty FROM items WHERE qty > $1", "", pgxScope})
	check("GET /tx", dbSpan{"BEGIN", "begin", "", pgxScope}, insert,
		dbSpan{"UPDATE items", "UPDATE items SET qty = qty + ? WHERE name = $1", "", pgxScope}, dbSpan{"COMMIT", "commit", "", pgxScope})
	check("GET /conn", all)
	check("GET /fail", dbSpan{"SELECT no_such_table", "SELECT * FROM no_such_table", "42P01", pgxScope})
	check("GET /copy", dbSpan{"COPY public.items", "", "", pgxScope})
	check("GET /secret", dbSpan{"INSERT items", "INSERT INTO items (name, qty) VALUES (?, ?)", "", pgxScope})
	check("GET /fanout", all, all, all)
	// SendBatch: one span per batch, named as the conventions name a batch.
	check("GET /batch", dbSpan{"BATCH INSERT items", "INSERT INTO items (name, qty) VALUES (?, ?)", "", pgxScope})
	check("GET /batch-mixed", dbSpan{"BATCH items", "UPDATE items SET qty = qty + ? WHERE name = ?; SELECT count(*) FROM items", "", pgxScope})
	check("GET /noctx", dbSpan{"SELECT items", "SELECT count(*) FROM items WHERE qty > ?", "", pgxScope})
	// Through database/sql, with pgx's adapter its only driver: pgx's spans, the same.
	check("GET /stdlib", insert, count)
	var perItem []dbSpan
	for i := 0; i < 1+items; i++ {
		perItem = append(perItem, insert, count)
	}
	check("GET /items/{name}", perItem...)

	// db.client.operation.duration, flushed at exit: /fail's SELECT under its code.
	r.signal(syscall.SIGTERM)
	r.wait(20 * time.Second)
	failed := false
	for _, h := range recv.Histograms() {
		failed = failed || h.Metric == "db.client.operation.duration" && h.Attrs["db.collection.name"] == "no_such_table" &&
			h.Attrs["error.type"] == "42P01" && h.Attrs["db.response.status_code"] == "42P01" && h.Attrs["db.namespace"] == "shop"
	}
	if !failed {
		t.Errorf("no db.client.operation.duration point for /fail's SELECT no_such_table: %v", recv.Histograms())
	}
	// The secret literal, and the numbers only in literals, in no byte exported.
	exported := recv.ExportedBytes()
	if len(exported) == 0 {
		t.Fatal("no export's bytes kept")
	}
	if bytes.Contains(exported, []byte("s3cr3t")) {
		t.Error("/secret's or /batch's literal or a row /copy copied is in the bytes exported")
	}
	if said := launcherLines(r); said != "" {
		t.Errorf("the launcher said:\n%s", said)
	}
}
