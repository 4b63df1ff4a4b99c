package databasesql

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSanitize(t *testing.T) {
	pg, sqlite, mysql, mssql, other := dialectOf("postgresql"), dialectOf("sqlite"), dialectOf("mysql"), dialectOf("microsoft.sql_server"), dialectOf("other_sql")
	for _, c := range []struct {
		d        *dialect
		in, want string
	}{
		// Placeholders: as written.
		{pg, "SELECT id, name FROM users WHERE id = $1 AND org = $2", "SELECT id, name FROM users WHERE id = $1 AND org = $2"},
		{mysql, "INSERT INTO t (a, b) VALUES (?, ?)", "INSERT INTO t (a, b) VALUES (?, ?)"},
		{other, "UPDATE t SET a = :a WHERE b = @p1", "UPDATE t SET a = :a WHERE b = @p1"},
		// Literals.
		{pg, "SELECT * FROM users WHERE password = 'hunter2' AND n > 10.5e3", "SELECT * FROM users WHERE password = ? AND n > ?"},
		{pg, "SELECT 'it''s', x1, t2.c3 FROM t2 LIMIT 5", "SELECT ?, x1, t2.c3 FROM t2 LIMIT ?"},
		{pg, `SELECT "Password" FROM "Users" WHERE k = E'a\'secret' AND h = X'DEADBEEF'`, `SELECT "Password" FROM "Users" WHERE k = ? AND h = ?`},
		{pg, "SELECT $$tok'en$$, $body$secret$body$, $3", "SELECT ?, ?, $3"},
		// The standard reading of a backslash: 'a\' ends there.
		{pg, `SELECT 'a\', 'secret'`, "SELECT ?, ?"},
		// MySQL's backslash escapes, unless the session's sql_mode has
		// NO_BACKSLASH_ESCAPES: both readings are taken.
		{mysql, `SELECT 'a\'secret', "tok"`, "SELECT ?"},
		{mysql, `INSERT INTO t VALUES ('C:\', 'hunter2')`, "INSERT INTO t VALUES (?"},
		{mysql, `SELECT 'a\\', "b" FROM t`, "SELECT ?, ? FROM t"},
		// Unknown: a backslash in a string takes the rest with it.
		{other, `SELECT 'a\', 'secret'`, "SELECT ?"},
		{sqlite, `SELECT * FROM t WHERE password = "hunter2"`, "SELECT * FROM t WHERE password = ?"},
		// Comments go, whatever they hold.
		{pg, "SELECT 1 -- token=abc\nFROM t /* password hunter2 */", "SELECT ? \nFROM t "},
		// A text cut inside a literal or a comment.
		{pg, "SELECT * FROM t WHERE secret = 'abcdef", "SELECT * FROM t WHERE secret = ?"},
		{pg, "SELECT * FROM t /* secret", "SELECT * FROM t "},
		// Quoted names are kept, whatever quotes they hold.
		{mysql, "SELECT `it's` FROM t WHERE p = 'hunter2'", "SELECT `it's` FROM t WHERE p = ?"},
		{sqlite, "SELECT [it's], `b'c` FROM t WHERE p = 'hunter2'", "SELECT [it's], `b'c` FROM t WHERE p = ?"},
		{mssql, "SELECT [a]]'b] FROM t WHERE p = 'hunter2'", "SELECT [a]]'b] FROM t WHERE p = ?"},
		{pg, `SELECT "it's" FROM t WHERE p = 'hunter2'`, `SELECT "it's" FROM t WHERE p = ?`},
		// Comments as each database reads them. PostgreSQL's and SQL Server's nest;
		// PostgreSQL's -- ends at a \r too.
		{pg, "SELECT 1 /* a /* b */ hunter2 */ FROM t", "SELECT ?  FROM t"},
		{mssql, "SELECT 1 /* a /* b */ hunter2 */ FROM t", "SELECT ?  FROM t"},
		{pg, "SELECT 1 -- a\r'hunter2'", "SELECT ? \r?"},
		// MySQL's # comments; its -- only before a space or a control character.
		{mysql, "SELECT * FROM t # hunter2\nWHERE a = 1", "SELECT * FROM t \nWHERE a = ?"},
		{mysql, "SELECT 1 --\thunter2\nFROM t", "SELECT ? \nFROM t"},
		{mysql, "SELECT 1--'hunter2'", "SELECT ?--?"},
		// MySQL's version comments hold SQL: their strings may hold */.
		{mysql, "SELECT /*!50000 'hunter2*/hunter3' */ 1", "SELECT ?"},
		{mysql, "SELECT /*+ BKA(t) */ a FROM t", "SELECT  a FROM t"},
		// $: PostgreSQL's parameters and dollar quotes, SQLite's parameters, SQL
		// Server's money. A dollar quote is taken in every database.
		{pg, "SELECT $1$$hunter2$$", "SELECT $1?"},
		{sqlite, "SELECT a FROM t WHERE b = $b AND c = $1", "SELECT a FROM t WHERE b = $b AND c = $1"},
		{mysql, "SELECT $$ 'x $$ hunter2'", "SELECT ?"},
		{mssql, "SELECT $12.50, @p1", "SELECT ?, @p1"},
		// A database not known: every reading's literals and comments go.
		{other, "SELECT 1 # hunter2\nFROM t", "SELECT ? \nFROM t"},
		{other, "SELECT 1 /* a /* b */ hunter2 */ FROM t", "SELECT ?  FROM t"},
		{other, "SELECT q'[it's hunter2]' FROM dual", "SELECT ?"},
		{other, "SELECT 1 // hunter2\nFROM t", "SELECT ? \nFROM t"},
		{other, "SELECT a FROM t WHERE b = ? AND c = :c", "SELECT a FROM t WHERE b = ? AND c = :c"},
	} {
		if got := sanitize(c.in, c.d); got != c.want {
			t.Errorf("%q:\n got %q\nwant %q", c.in, got, c.want)
		}
	}
	// Valid UTF-8, whatever the text's encoding: an export that holds other bytes is
	// refused whole.
	if got := sanitize("SELECT caf\xe9 FROM t WHERE a = 'caf\xe9'", pg); got != "SELECT caf\uFFFD FROM t WHERE a = ?" {
		t.Errorf("Latin-1: %q", got)
	}
	if got := sanitize("SELECT "+strings.Repeat("\xe9", 2000), pg); len(got) > queryTextMax || !utf8.ValidString(got) {
		t.Errorf("a long Latin-1 text: %d bytes, valid %v", len(got), utf8.ValidString(got))
	}
	// Bounded, and valid UTF-8 where it was.
	long := "SELECT " + strings.Repeat("é", 2000)
	if got := sanitize(long, pg); len(got) > queryTextMax || !strings.HasPrefix(got, "SELECT é") || strings.ToValidUTF8(got, "") != got {
		t.Errorf("a long text: %d bytes, valid %v", len(got), strings.ToValidUTF8(got, "") == got)
	}
}

// No literal survives, whatever the text: each secret below is written as a literal
// in some dialect's way.
func TestSanitizeNeverLeaks(t *testing.T) {
	const secret = "s3cr3tT0ken"
	for _, system := range []string{"postgresql", "sqlite", "mysql", "microsoft.sql_server", "other_sql"} {
		d := dialectOf(system)
		for _, q := range []string{
			"INSERT INTO creds VALUES ('" + secret + "')",
			"SELECT * FROM t WHERE a = 'x''" + secret + "'",
			"SELECT E'\\'" + secret + "'",
			"SELECT $q$" + secret + "$q$",
			"SELECT 1 /* " + secret + " */",
			"SELECT 1 -- " + secret,
			"SELECT '" + secret, // cut
			"SELECT 1 /* " + secret,
			"SELECT X'" + secret + "', N'" + secret + "'",
		} {
			if got := sanitize(q, d); strings.Contains(got, secret) {
				t.Errorf("%s %q: %q", system, q, got)
			}
		}
	}
}

func TestSummarize(t *testing.T) {
	for in, want := range map[string][2]string{
		"SELECT id FROM orders WHERE id = $1":           {"SELECT", "orders"},
		"select * from public.orders":                   {"SELECT", "public.orders"},
		"INSERT INTO items(name, qty) VALUES (?, ?)":    {"INSERT", "items"},
		"UPDATE stock SET qty = qty - 1":                {"UPDATE", "stock"},
		"DELETE FROM sessions WHERE expires < now()":    {"DELETE", "sessions"},
		"CREATE TABLE IF NOT EXISTS items (id integer)": {"CREATE TABLE", "items"},
		"DROP TABLE items":                              {"DROP TABLE", "items"},
		`SELECT "x" FROM "Orders"`:                      {"SELECT", "Orders"},
		"SELECT a FROM t1 JOIN t2 ON t1.id = t2.id":     {"SELECT", ""},
		"SELECT a FROM t1, t2":                          {"SELECT", ""},
		"SELECT * FROM (SELECT 1) AS x":                 {"SELECT", ""},
		"SELECT 1":                                      {"SELECT", ""},
		"BEGIN":                                         {"BEGIN", ""},
		"INSERT INTO a VALUES (1); DELETE FROM b":       {"INSERT", ""},
		"frobnicate the database":                       {"", ""},
		"UPDATE":                                        {"UPDATE", ""}, // it panicked
		"TRUNCATE ?":                                    {"TRUNCATE", ""},
		"":                                              {"", ""},
	} {
		if op, coll := summarize(in); op != want[0] || coll != want[1] {
			t.Errorf("%q: %q %q, want %q %q", in, op, coll, want[0], want[1])
		}
	}
}
