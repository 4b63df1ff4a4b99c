package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// database/sql spans from an HTTP service (internal/testenv/targets/dbservice) on
// SQLite (modernc.org/sqlite, a driver in pure Go) and on a private PostgreSQL server
// through pgx's and lib/pq's drivers: every operation a CLIENT span, the child of the
// request's server span — from the handler's goroutine, from goroutines it starts with
// its context, and without a context — with the server's address and port (the
// PostgreSQL drivers' TCP connection's; none for SQLite), the statement's text (its literals replaced:
// a secret written into a statement never leaves; a 1 MiB statement bounded), operation
// and table, an error's type; one span per operation over 100 requests in a row; a
// hostile statement's secrets (in a comment where the table's name is read, nested
// comments, a string, a line comment) nowhere in the spans nor in the duration metric,
// flushed at exit. Plain
// and stripped builds. The one binary links the three drivers: each span's database is
// read from its connection.
func TestDatabaseSQLSpans(t *testing.T) {
	testenv.RequireRoot(t)
	targets := testenv.BuildTargets(t, "dbservice", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain, testenv.Stripped})
	pg, _ := startPostgres(t)
	type database struct{ driver, dsn, system, errType string }
	for _, tg := range targets {
		for _, db := range []database{
			{"sqlite", "", "sqlite", "*sqlite.Error"},
			{"pgx", pg, "postgresql", "*pgconn.PrepareError"},
			{"postgres", pg, "postgresql", "*pq.Error"},
		} {
			t.Run(tg.Variant.Name+"/"+db.driver, func(t *testing.T) {
				if db.dsn == "" {
					db.dsn = "file:" + filepath.Join(t.TempDir(), "db.sqlite")
				}
				databaseSQLSpans(t, tg, db.driver, db.dsn, db.system, db.errType)
			})
		}
	}
}

func databaseSQLSpans(t *testing.T, tg testenv.Target, driver, dsn, system, errorType string) {
	var server any // server.address and server.port: a PostgreSQL DSN's host and port
	if u, err := url.Parse(dsn); err == nil && u.Scheme == "postgres" {
		port, _ := strconv.Atoi(u.Port())
		server = [2]any{u.Hostname(), int64(port)}
	}
	recv := testenv.StartReceiver(t)
	addr := freeAddr(t)
	env := append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT="+recv.Endpoint, "OTEL_BSP_SCHEDULE_DELAY=200",
		"OTEL_SERVICE_NAME=dbservice", "OTEL_RESOURCE_ATTRIBUTES=", "OTEL_TRACES_EXPORTER=", "OTEL_TRACES_SAMPLER=",
		"OTEL_METRICS_EXPORTER=", "OTEL_METRIC_EXPORT_INTERVAL=")
	r := start(t, opts{env: env, stdin: strings.NewReader("")}, launchBin(t), "--require-instrumentation", "--", tg.Path,
		"-addr", addr, "-driver", driver, "-dsn", dsn)
	get := func(path string) { t.Helper(); getOK(t, r, addr, path) }
	firstRequest(t, addr, "/items/first")
	for _, path := range []string{"/tx", "/prepared", "/fail", "/secret", "/fanout", "/noctx", "/big", "/hostile"} {
		get(path)
	}
	for i := 0; i < 100; i++ {
		get(fmt.Sprintf("/items/n%d", i))
	}

	// The two CREATE TABLEs at start, without a parent; then per request.
	want := 2 + 2 + 2 + 2 + 1 + 1 + 3 + 1 + 1 + 1 + 2*100
	servers := 1 + 8 + 100
	spans, ok := recv.WaitFor(30*time.Second, func(s []testenv.Span) bool { return len(s) >= want+servers })
	if !ok {
		t.Fatalf("%d spans, want %d: %s\n%s", len(spans), want+servers, spanList(spans), r.stderr)
	}
	time.Sleep(500 * time.Millisecond) // and no more
	spans = recv.Spans()
	if len(spans) != want+servers {
		t.Fatalf("%d spans, want %d: %s", len(spans), want+servers, spanList(spans))
	}
	byID := map[string]testenv.Span{}
	for _, s := range spans {
		byID[s.SpanID] = s
		if said := fmt.Sprint(s.Name, s.Attrs, s.Resource, s.StatusMessage); strings.Contains(said, hostileSecret) {
			t.Errorf("a secret of /hostile's statement was exported: %s %v", s.Name, s.Attrs)
		}
	}
	type dbSpan struct{ name, text, errType string }
	children := map[string][]dbSpan{} // by the server span's route: db spans under it
	for _, s := range spans {
		if s.Kind != tracepb.Span_SPAN_KIND_CLIENT {
			continue
		}
		if s.Attrs["db.system.name"] != system {
			t.Errorf("%s: db.system.name %v", s.Name, s.Attrs["db.system.name"])
		}
		if got := [2]any{s.Attrs["server.address"], s.Attrs["server.port"]}; server == nil && got != [2]any{nil, nil} || server != nil && got != server {
			t.Errorf("%s: server %v, want %v", s.Name, got, server)
		}
		for _, v := range s.Attrs {
			if strings.Contains(fmt.Sprint(v), "s3cr3t") {
				t.Errorf("a secret literal was exported: %s %v", s.Name, s.Attrs)
			}
		}
		errType, _ := s.Attrs["error.type"].(string)
		if (errType != "") != (s.StatusCode == tracepb.Status_STATUS_CODE_ERROR) {
			t.Errorf("%s: error.type %q, status %v", s.Name, errType, s.StatusCode)
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
		children[route] = append(children[route], dbSpan{s.Name, text, errType})
	}
	check := func(route string, want ...dbSpan) { t.Helper(); checkChildren(t, route, children[route], want) }
	check("(none)",
		dbSpan{"CREATE TABLE items", "CREATE TABLE IF NOT EXISTS items (name TEXT, qty INTEGER)", ""},
		dbSpan{"CREATE TABLE creds", "CREATE TABLE IF NOT EXISTS creds (token TEXT)", ""})
	insert := dbSpan{"INSERT items", "INSERT INTO items (name, qty) VALUES ($1, $2)", ""}
	count := dbSpan{"SELECT items", "SELECT count(*) FROM items WHERE name = $1", ""}
	check("GET /tx", insert, dbSpan{"UPDATE items", "UPDATE items SET qty = qty + ? WHERE name = $1", ""})
	prepared := dbSpan{"SELECT items", "SELECT qty FROM items WHERE name = $1", ""}
	check("GET /prepared", prepared, prepared)
	check("GET /fail", dbSpan{"SELECT no_such_table", "SELECT * FROM no_such_table", errorType})
	check("GET /secret", dbSpan{"INSERT creds", "INSERT INTO creds (token) VALUES (?)", ""})
	all := dbSpan{"SELECT items", "SELECT count(*) FROM items", ""}
	check("GET /fanout", all, all, all)
	check("GET /noctx", dbSpan{"SELECT items", "SELECT name FROM items", ""})
	check("GET /big", dbSpan{"SELECT items", "SELECT count(*) FROM items WHERE name <> ?", ""})
	check("GET /hostile", dbSpan{"SELECT creds", "SELECT count(*) FROM  creds WHERE token <> ? ", ""})
	// /items/{name}: 101 requests, an insert and a count each.
	var items []dbSpan
	for i := 0; i < 101; i++ {
		items = append(items, insert, count)
	}
	if got := children["GET /items/{name}"]; len(got) != len(items) {
		t.Errorf("GET /items/{name}: %d database spans, want %d", len(got), len(items))
	}
	// db.client.operation.duration, flushed at exit: /hostile's SELECT counted under its
	// table, no secret in any point.
	r.signal(syscall.SIGTERM)
	r.wait(20 * time.Second)
	hostile := false
	for _, h := range recv.Histograms() {
		if said := fmt.Sprint(h.Metric, h.Attrs); strings.Contains(said, hostileSecret) {
			t.Errorf("a secret of /hostile's statement was exported in %s: %v", h.Metric, h.Attrs)
		}
		hostile = hostile || h.Metric == "db.client.operation.duration" && h.Attrs["db.collection.name"] == "creds" &&
			h.Attrs["db.operation.name"] == "SELECT" && h.Attrs["db.system.name"] == system
	}
	if !hostile {
		t.Errorf("no db.client.operation.duration point for /hostile's SELECT creds: %v", recv.Histograms())
	}
	if said := launcherLines(r); said != "" {
		t.Errorf("the launcher said:\n%s", said)
	}
}

// hostileSecret is in every secret of dbservice's /hostile statement.
const hostileSecret = "Qz7"

// startPostgres runs a private PostgreSQL server (Debian's postgresql: initdb into a
// temporary directory as an unprivileged user, a free port on the loopback, its socket
// in that directory), stopped at the test's end or by stop (an immediate shutdown, its
// connections cut), and returns its DSN.
func startPostgres(t *testing.T) (dsn string, stop func()) {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	testenv.Require(t, len(bins) > 0, "PostgreSQL: no /usr/lib/postgresql/*/bin/postgres (apt-get install postgresql)")
	bin := filepath.Dir(bins[len(bins)-1])
	dir, err := os.MkdirTemp("", "e2e-postgres-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chown(dir, 65534, 65534)
	asNobody := func(name string, args ...string) *exec.Cmd {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
		return cmd
	}
	data := filepath.Join(dir, "data")
	if out, err := asNobody("initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	port := strings.TrimPrefix(freeAddr(t), "127.0.0.1:")
	var log syncBuffer
	server := asNobody("postgres", "-D", data, "-p", port, "-k", dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off")
	server.Stdout, server.Stderr = &log, &log
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			server.Process.Signal(syscall.SIGQUIT) // immediate shutdown
			server.Wait()
		})
	}
	t.Cleanup(stop)
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", "127.0.0.1:"+port); err == nil {
			c.Close()
			break
		}
		if i == 100 {
			t.Fatalf("postgres did not start:\n%s", log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "postgres://postgres@127.0.0.1:" + port + "/postgres?sslmode=disable", stop
}

// A database server that goes away in the middle of a query: the app answers as it
// does untraced, and the query's span ends in error.
func TestDatabaseSQLServerGoesAway(t *testing.T) {
	testenv.RequireRoot(t)
	tg := testenv.BuildTargets(t, "dbservice", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})[0]
	serverGoesAway(t, goesAway{
		start: func(t *testing.T, addr string) ([]string, func()) {
			dsn, stop := startPostgres(t)
			return []string{tg.Path, "-addr", addr, "-driver", "pgx", "-dsn", dsn}, stop
		},
		first: "/items/first", slow: "/sleep", answer: "502 Bad Gateway query failed", span: "SELECT",
	})
}

// goesAway is a server an app uses that goes away while the app waits for it.
type goesAway struct {
	// start starts the server, and returns the app's command line (listening on addr)
	// and what stops the server.
	start       func(t *testing.T, addr string) (argv []string, stop func())
	first, slow string // a path that uses the server; one that waits on it
	answer      string // the app's answer to slow once the server is gone
	span        string // the name of the client span of slow's call
}

// serverGoesAway runs the app untraced and traced, each with a server of its own that
// goes away while the app waits on it in a request: the answers are the same, and the
// call's span ends in error.
func serverGoesAway(t *testing.T, g goesAway) {
	recv := testenv.StartReceiver(t)
	answer := func(traced bool) string {
		t.Helper()
		addr := freeAddr(t)
		argv, stop := g.start(t, addr)
		if traced {
			argv = append([]string{launchBin(t), "--require-instrumentation", "--"}, argv...)
		}
		env := append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT="+recv.Endpoint, "OTEL_BSP_SCHEDULE_DELAY=200", "OTEL_SERVICE_NAME=goes-away")
		r := start(t, opts{env: env, stdin: strings.NewReader("")}, argv...)
		firstRequest(t, addr, g.first)
		got := make(chan string, 1)
		go func() {
			resp, err := http.Get("http://" + addr + g.slow)
			if err != nil {
				got <- err.Error()
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got <- resp.Status + " " + strings.TrimSpace(string(body))
		}()
		time.Sleep(time.Second) // the call is waiting
		stop()
		select {
		case a := <-got:
			return a
		case <-time.After(20 * time.Second):
			t.Fatalf("no answer after the server went away\n%s", r.stderr)
		}
		return ""
	}
	untraced, traced := answer(false), answer(true)
	if untraced != g.answer || traced != untraced {
		t.Errorf("the answer: traced %q, untraced %q", traced, untraced)
	}
	spans, _ := recv.WaitFor(10*time.Second, func(s []testenv.Span) bool {
		return slices.ContainsFunc(s, func(sp testenv.Span) bool { return sp.Name == g.span })
	})
	found := 0
	for _, s := range spans {
		if s.Name == g.span {
			found++
			if s.StatusCode != tracepb.Status_STATUS_CODE_ERROR || s.Attrs["error.type"] == nil {
				t.Errorf("the call's span: %v %v", s.StatusCode, s.Attrs)
			}
		}
	}
	if found != 1 {
		t.Errorf("%d spans of the call, want 1: %s", found, spanList(spans))
	}
}
