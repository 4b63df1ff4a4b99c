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
// PostgreSQL drivers' TCP connection's; none for SQLite), the database's name (the DSN's,
// for the PostgreSQL drivers; none for SQLite), the statement's text (its literals replaced:
// a secret written into a statement never leaves; a 1 MiB statement bounded), operation
// and table, an error's SQLSTATE (PostgreSQL) or Go type (SQLite) and its description;
// one span per operation over 100 requests in a row; a
// hostile statement's secrets (in a comment where the table's name is read, nested
// comments, a string, a line comment) nowhere in the spans nor in the duration metric,
// flushed at exit. Plain
// and stripped builds. The one binary links the three drivers: each span's database is
// read from its connection.
func TestDatabaseSQLSpans(t *testing.T) {
	testenv.RequireRoot(t)
	targets := testenv.BuildTargets(t, "dbservice", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain, testenv.Stripped})
	pg, _ := startPostgres(t)
	for _, tg := range targets {
		for _, db := range []sqlDatabase{
			// SQLite's error is read by none: its Go type, no code, no description.
			{driver: "sqlite", system: "sqlite", errType: "*sqlite.Error"},
			// pgx's *pgconn.PrepareError, lib/pq's *pq.Error: the SQLSTATE inside.
			{"pgx", pg, "postgresql", "postgres", "42P01", "42P01", "relation ? does not exist", true},
			{"postgres", pg, "postgresql", "postgres", "42P01", "42P01", "relation ? does not exist", false},
		} {
			t.Run(tg.Variant.Name+"/"+db.driver, func(t *testing.T) {
				if db.dsn == "" {
					db.dsn = "file:" + filepath.Join(t.TempDir(), "db.sqlite")
				}
				databaseSQLSpans(t, tg, db)
			})
		}
	}
}

// sqlDatabase is a database dbservice uses, and what its spans say of it.
type sqlDatabase struct {
	driver, dsn, system string
	namespace           string // db.namespace; "" for none
	// What /fail's query of a table that does not exist ends with: error.type, its
	// db.response.status_code ("" for none) and its status description.
	errType, code, description string
	// pgx's own probe traces a transaction's BEGIN and COMMIT, which pgx's adapter runs
	// as Execs of its *pgx.Conn, and which database/sql makes no span for.
	txControl bool
}

func databaseSQLSpans(t *testing.T, tg testenv.Target, db sqlDatabase) {
	driver, dsn, system, errorType := db.driver, db.dsn, db.system, db.errType
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
	// Overlapped (the default): the CREATE TABLEs at start and the first request wait
	// for the probes, held by the kernel.
	r := start(t, opts{env: env, stdin: strings.NewReader("")}, launchBin(t), "--", tg.Path,
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
	if db.txControl {
		want += 2
	}
	servers := 1 + 8 + 100
	spans := exactSpans(t, recv, want+servers, 30*time.Second, r.stderr)
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
		if ns := s.Attrs["db.namespace"]; db.namespace == "" && ns != nil || db.namespace != "" && ns != db.namespace {
			t.Errorf("%s: db.namespace %v, want %q", s.Name, ns, db.namespace)
		}
		errType, _ := s.Attrs["error.type"].(string)
		if (errType != "") != (s.StatusCode == tracepb.Status_STATUS_CODE_ERROR) {
			t.Errorf("%s: error.type %q, status %v", s.Name, errType, s.StatusCode)
		}
		code, desc := "", ""
		if errType != "" {
			code, desc = db.code, db.description
		}
		if got, _ := s.Attrs["db.response.status_code"].(string); got != code || s.StatusMessage != desc {
			t.Errorf("%s: db.response.status_code %q, status description %q; want %q, %q", s.Name, got, s.StatusMessage, code, desc)
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
	update := dbSpan{"UPDATE items", "UPDATE items SET qty = qty + ? WHERE name = $1", ""}
	if db.txControl {
		check("GET /tx", dbSpan{"BEGIN", "begin", ""}, insert, update, dbSpan{"COMMIT", "commit", ""})
	} else {
		check("GET /tx", insert, update)
	}
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
	hostile, failed := false, false
	var namespace, code any // nil for none
	if db.namespace != "" {
		namespace = db.namespace
	}
	if db.code != "" {
		code = db.code
	}
	for _, h := range recv.Histograms() {
		if said := fmt.Sprint(h.Metric, h.Attrs); strings.Contains(said, hostileSecret) {
			t.Errorf("a secret of /hostile's statement was exported in %s: %v", h.Metric, h.Attrs)
		}
		hostile = hostile || h.Metric == "db.client.operation.duration" && h.Attrs["db.collection.name"] == "creds" &&
			h.Attrs["db.operation.name"] == "SELECT" && h.Attrs["db.system.name"] == system && h.Attrs["db.namespace"] == namespace
		failed = failed || h.Metric == "db.client.operation.duration" && h.Attrs["db.collection.name"] == "no_such_table" &&
			h.Attrs["error.type"] == errorType && h.Attrs["db.response.status_code"] == code && h.Attrs["db.namespace"] == namespace
	}
	if !hostile {
		t.Errorf("no db.client.operation.duration point for /hostile's SELECT creds: %v", recv.Histograms())
	}
	if !failed {
		t.Errorf("no db.client.operation.duration point for /fail's SELECT no_such_table (error.type %s, db.response.status_code %v): %v",
			errorType, code, recv.Histograms())
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
// connections cut), and returns its DSN: of the database postgres, or of the first of
// databases, which it creates.
func startPostgres(t *testing.T, databases ...string) (dsn string, stop func()) {
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
	var log testenv.SyncBuffer
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
	name := "postgres"
	for i, db := range databases {
		// The server takes connections once its start-up is done, a moment after it
		// listens.
		for try := 0; ; try++ {
			out, err := asNobody("createdb", "-h", dir, "-p", port, "-U", "postgres", db).CombinedOutput()
			if err == nil {
				break
			}
			if try == 100 {
				t.Fatalf("createdb %s: %v\n%s", db, err, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if i == 0 {
			name = db
		}
	}
	return "postgres://postgres@127.0.0.1:" + port + "/" + name + "?sslmode=disable", stop
}

// startMariaDB runs a private MariaDB server (Debian's mariadb-server-core: mariadbd
// as an unprivileged user on a temporary data directory, without grant tables, a free
// port on the loopback) with an empty database of the name given, killed at the test's
// end, and returns the go-sql-driver/mysql DSN of that database.
func startMariaDB(t *testing.T, database string) string {
	t.Helper()
	const bin = "/usr/sbin/mariadbd"
	_, err := os.Stat(bin)
	testenv.Require(t, err == nil, "MariaDB: no %s (apt-get install mariadb-server-core)", bin)
	dir, err := os.MkdirTemp("", "e2e-mariadb-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	data := filepath.Join(dir, "data")
	// A database is a directory of the data directory.
	for _, d := range []string{dir, data, filepath.Join(data, database)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		os.Chown(d, 65534, 65534)
	}
	port := strings.TrimPrefix(freeAddr(t), "127.0.0.1:")
	var log testenv.SyncBuffer
	server := exec.Command(bin, "--no-defaults", "--datadir="+data, "--socket="+filepath.Join(dir, "sock"),
		"--pid-file="+filepath.Join(dir, "pid"), "--port="+port, "--bind-address=127.0.0.1", "--skip-grant-tables",
		"--innodb-buffer-pool-size=16M", "--innodb-log-file-size=8M")
	server.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	server.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
	server.Stdout, server.Stderr = &log, &log
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		server.Process.Kill() // its data goes with the directory
		server.Wait()
	})
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", "127.0.0.1:"+port); err == nil {
			c.Close()
			break
		}
		if i == 100 {
			t.Fatalf("mariadbd did not start:\n%s", log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "root@tcp(127.0.0.1:" + port + ")/" + database
}

// Failed operations on PostgreSQL (through pgx and lib/pq) and MariaDB (through
// go-sql-driver/mysql), each a CLIENT span with status Error, the database's code for
// the failure as db.response.status_code and error.type (a SQLSTATE: 42P01, 23505,
// 22P02; MySQL's error number: 1146, 1062, 1366), the message as the status
// description with what it quotes and its numbers hidden: the key of a unique
// violation (which MySQL quotes) and a value a column refused (which both quote),
// secrets, are nowhere in the spans. Every span has the DSN's database as
// db.namespace, and is the child of its request's server span, in its trace; the
// server spans and the operations at start are roots. Plain and stripped builds of the
// drivers' newest releases and of older ones the probe reads differently (pgx v5.5.5:
// no PrepareError, the code elsewhere; lib/pq v1.10.9, which keeps no database name:
// no db.namespace, the rest as the newest; go-sql-driver/mysql v1.5.0).
func TestDatabaseSQLErrors(t *testing.T) {
	testenv.RequireRoot(t)
	targets := append(testenv.BuildTargets(t, "dbservice", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain, testenv.Stripped}),
		testenv.BuildDBService(t, testenv.ModuleBuild{Version: testenv.SQLDriversOld, Toolchain: "go1.26.8"},
			testenv.ModuleBuild{Version: testenv.SQLDriversOld, Toolchain: "go1.26.8", Stripped: true})...)
	pg, _ := startPostgres(t, "shop")
	my := startMariaDB(t, "shop")
	type failures struct{ fail, dup, cast sqlSpan }
	postgres := failures{
		fail: sqlSpan{"SELECT no_such_table", "42P01", "relation ? does not exist"},
		dup:  sqlSpan{"INSERT uniq", "23505", "duplicate key value violates unique constraint ?"},
		cast: sqlSpan{"INSERT items", "22P02", "invalid input syntax for type integer: ?"},
	}
	for _, tg := range targets {
		for _, c := range []struct {
			driver, dsn, system string
			failures
		}{
			{"pgx", pg, "postgresql", postgres},
			{"postgres", pg, "postgresql", postgres},
			{"mysql", my, "mysql", failures{
				fail: sqlSpan{"SELECT no_such_table", "1146", "Table ? doesn't exist"},
				dup:  sqlSpan{"INSERT uniq", "1062", "Duplicate entry ?"},
				cast: sqlSpan{"INSERT items", "1366", "Incorrect integer value: ? at row ?"},
			}},
		} {
			namespace := "shop"
			if c.driver == "postgres" && strings.HasPrefix(tg.Variant.Name, "drivers-"+testenv.SQLDriversOld) {
				namespace = "" // lib/pq before v1.11.0
			}
			t.Run(tg.Variant.Name+"/"+c.driver, func(t *testing.T) {
				databaseSQLErrors(t, tg, c.driver, c.dsn, c.system, namespace, map[string][]sqlSpan{
					"(none)":            {{"CREATE TABLE items", "", ""}, {"CREATE TABLE creds", "", ""}},
					"GET /items/{name}": {{"INSERT items", "", ""}, {"SELECT items", "", ""}},
					"GET /fail":         {c.fail},
					"GET /dup":          {{"CREATE TABLE uniq", "", ""}, {"DELETE uniq", "", ""}, {"INSERT uniq", "", ""}, c.dup},
					"GET /cast":         {c.cast},
				})
			})
		}
	}
}

// sqlSpan is what a database/sql span says: its name, db.response.status_code and
// status description ("" for none).
type sqlSpan struct{ name, code, description string }

// databaseSQLErrors runs dbservice on driver's database at dsn, requests /items/first,
// /fail, /dup and /cast, and checks every span: want are the client spans under each
// server span, by its name ("(none)": roots); namespace is db.namespace ("" for none).
func databaseSQLErrors(t *testing.T, tg testenv.Target, driver, dsn, system, namespace string, want map[string][]sqlSpan) {
	recv := testenv.StartReceiver(t)
	addr := freeAddr(t)
	env := append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT="+recv.Endpoint, "OTEL_BSP_SCHEDULE_DELAY=200",
		"OTEL_SERVICE_NAME=dbservice", "OTEL_RESOURCE_ATTRIBUTES=", "OTEL_TRACES_EXPORTER=", "OTEL_TRACES_SAMPLER=",
		"OTEL_METRICS_EXPORTER=", "OTEL_METRIC_EXPORT_INTERVAL=")
	r := start(t, opts{env: env, stdin: strings.NewReader("")}, launchBin(t), "--require-instrumentation", "--", tg.Path,
		"-addr", addr, "-driver", driver, "-dsn", dsn)
	firstRequest(t, addr, "/items/first")
	for _, path := range []string{"/fail", "/dup", "/cast"} {
		getOK(t, r, addr, path)
	}
	clients := 0
	for _, w := range want {
		clients += len(w)
	}
	servers := len(want) - 1
	spans := exactSpans(t, recv, clients+servers, 30*time.Second, r.stderr)
	byID := map[string]testenv.Span{}
	for _, s := range spans {
		byID[s.SpanID] = s
		if said := fmt.Sprint(s.Name, s.Attrs, s.Resource, s.StatusMessage); strings.Contains(said, hostileSecret) {
			t.Errorf("a secret was exported: %s %v %q", s.Name, s.Attrs, s.StatusMessage)
		}
	}
	got := map[string][]sqlSpan{}
	for _, s := range spans {
		if s.Kind == tracepb.Span_SPAN_KIND_SERVER {
			if s.ParentSpanID != "" {
				t.Errorf("server span %s: parent %s, want none", s.Name, s.ParentSpanID)
			}
			continue
		}
		if s.Kind != tracepb.Span_SPAN_KIND_CLIENT {
			t.Errorf("span %s of kind %v", s.Name, s.Kind)
			continue
		}
		if ns := s.Attrs["db.namespace"]; s.Attrs["db.system.name"] != system || namespace == "" && ns != nil || namespace != "" && ns != namespace {
			t.Errorf("%s: db.system.name %v, db.namespace %v; want %s, %s", s.Name, s.Attrs["db.system.name"], s.Attrs["db.namespace"], system, namespace)
		}
		code, _ := s.Attrs["db.response.status_code"].(string)
		errType, _ := s.Attrs["error.type"].(string)
		failed := s.StatusCode == tracepb.Status_STATUS_CODE_ERROR
		if errType != code || failed != (code != "") {
			t.Errorf("%s: error.type %q, db.response.status_code %q, status %v", s.Name, errType, code, s.StatusCode)
		}
		route := "(none)"
		if parent, ok := byID[s.ParentSpanID]; ok {
			if parent.Kind != tracepb.Span_SPAN_KIND_SERVER || parent.TraceID != s.TraceID {
				t.Errorf("%s: parent %s (%v, trace %s; its own %s)", s.Name, parent.Name, parent.Kind, parent.TraceID, s.TraceID)
			}
			route = parent.Name
		} else if s.ParentSpanID != "" {
			t.Errorf("%s: parent %s is no span exported", s.Name, s.ParentSpanID)
		}
		got[route] = append(got[route], sqlSpan{s.Name, code, s.StatusMessage})
	}
	for route, w := range want {
		checkChildren(t, route, got[route], w)
	}
	for route := range got {
		if _, ok := want[route]; !ok {
			t.Errorf("client spans under %s: %v", route, got[route])
		}
	}
	r.signal(syscall.SIGTERM)
	r.wait(20 * time.Second)
	if said := launcherLines(r); said != "" {
		t.Errorf("the launcher said:\n%s", said)
	}
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
