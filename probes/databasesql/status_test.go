package databasesql

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/codes"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// A SQLSTATE is five digits or upper-case letters; MySQL's error number a number.
// Anything else the C program read is no code.
func TestStatusCode(t *testing.T) {
	for _, c := range []struct {
		kind   uint8
		code   string
		number uint16
		want   string
	}{
		{errorSQLState, "42P01", 0, "42P01"},
		{errorSQLState, "23505", 0, "23505"},
		{errorSQLState, "P0001", 0, "P0001"},
		{errorSQLState, "42p01", 0, ""},
		{errorSQLState, "4201", 0, ""},
		{errorSQLState, "42P011", 0, ""},
		{errorSQLState, "42 01", 0, ""},
		{errorSQLState, "", 0, ""},
		{errorNumber, "", 1062, "1062"},
		{errorNumber, "", 1146, "1146"},
		{errorNumber, "", 0, ""},
		{errorNumber, "42P01", 0, ""}, // a number's kind reads no code
		{0, "42P01", 1062, ""},
		{3, "42P01", 1062, ""},
	} {
		if got := statusCode(c.kind, []byte(c.code), c.number); got != c.want {
			t.Errorf("statusCode(%d, %q, %d) = %q, want %q", c.kind, c.code, c.number, got, c.want)
		}
	}
}

// Messages as PostgreSQL and MySQL (MariaDB) write them: what they quote and their
// words holding a digit are hidden, whatever the quotes hold; the rest stays.
func TestDescribe(t *testing.T) {
	for _, c := range []struct {
		msg  string
		cut  bool
		want string
	}{
		{`relation "no_such_table" does not exist`, false, `relation ? does not exist`},
		{`duplicate key value violates unique constraint "uniq_k_key"`, false, `duplicate key value violates unique constraint ?`},
		{`invalid input syntax for type integer: "s3cr3t"`, false, `invalid input syntax for type integer: ?`},
		{`syntax error at or near "'secret'"`, false, `syntax error at or near ?`},
		{`division by zero`, false, `division by zero`},
		{`value too long for type character varying(10)`, false, `value too long for type character varying(?)`},
		{`invalid byte sequence for encoding "UTF8": 0xff`, false, `invalid byte sequence for encoding ?: ?`},
		// Several quoted parts: one, from the first to the last.
		{`insert or update on table "orders" violates foreign key constraint "orders_user_fkey"`, false,
			`insert or update on table ?`},
		{`Duplicate entry 'secret@example.com' for key 'users.email'`, false, `Duplicate entry ?`},
		{`Table 'shop.no_such_table' doesn't exist`, false, `Table ? doesn't exist`},
		{`Unknown column 'secret' in 'field list'`, false, `Unknown column ?`},
		{`Incorrect integer value: 'secret' for column 'qty' at row 1`, false, `Incorrect integer value: ? at row ?`},
		{`Data too long for column 'name' at row 1`, false, `Data too long for column ? at row ?`},
		// Quotes inside a value, which messages do not escape.
		{`Duplicate entry 'a' secret 'b' for key 'k'`, false, `Duplicate entry ?`},
		{`invalid input syntax for type integer: "a" secret "b"`, false, `invalid input syntax for type integer: ?`},
		{`invalid input syntax for type json: "it's a secret"`, false, `invalid input syntax for type json: ?`},
		// A quote that opens and never closes hides the rest.
		{`syntax error near 'secret`, false, `syntax error near ?`},
		{`syntax error near 'secret" and more`, false, `syntax error near ?`},
		{`Unknown 'x' in "secret"`, false, `Unknown ?`},
		// Cut: whatever follows the first quote may be inside it.
		{`You have an error in your SQL syntax; check the manual near 'secret' at line 1`, true,
			`You have an error in your SQL syntax; check the manual near ?...`},
		{`relation "no_such_table" does not exi`, true, `relation ?...`},
		{`could not serialize access due to concurrent upd`, true, `could not serialize access due to concurrent...`},
		// White space made single spaces.
		{"deadlock\n\tdetected  here", false, "deadlock detected here"},
		// Not ASCII: quoted with what the probe does not know.
		{"Relation »secret« existiert nicht", false, ""},
		{"null value \x00 secret", false, ""},
		// Nothing said once hidden.
		{`"secret"`, false, ""},
		{`42`, false, ""},
		{``, false, ""},
	} {
		got := describe([]byte(c.msg), c.cut)
		if got != c.want {
			t.Errorf("describe(%q, %v) = %q, want %q", c.msg, c.cut, got, c.want)
		}
		if strings.Contains(got, "secret") || strings.Contains(got, "s3cr3t") {
			t.Errorf("describe(%q): a secret was exported: %q", c.msg, got)
		}
	}
}

// errorSpan is the span of a failed operation on system's database named name (none
// for ""), whose driver's error the C program read as kind, code, number and msg, cut
// to its first MESSAGE_MAX bytes as the C program cuts it.
func errorSpan(system, name string, kind uint8, code string, number uint16, msg string) telemetry.Span {
	p := &Probe{system: system}
	var ev databasesqlSqlEvent
	ev.Query.Copied = uint32(copy(ev.Query.Text[:], "INSERT INTO t (k) VALUES ($1)"))
	ev.Conn.NameLen = uint32(copy(ev.Conn.Name[:], name))
	ev.ErrorType = 0x1000 // an error: a type the (absent) binary cannot name
	ev.Error.Kind = kind
	ev.Error.CodeLen = uint8(copy(ev.Error.Code[:], code))
	ev.Error.Number = number
	ev.Error.MessageLen = uint64(len(msg))
	ev.Error.MessageCopied = uint32(copy(ev.Error.Message[:], msg))
	var span telemetry.Span
	p.operationSpan(&ev, &span)
	return span
}

// A failed operation's span: status Error; for a driver's error known, its code as
// db.response.status_code and error.type, its message hidden as describe does as the
// description; the database's name as db.namespace. The Go type otherwise.
func TestErrorSpans(t *testing.T) {
	long := "You have an error in your SQL syntax; check the manual that corresponds to your MariaDB server version for the right syntax to use near 'secret' at line 1"
	for _, c := range []struct {
		name, system, db string
		kind             uint8
		code             string
		number           uint16
		msg              string
		desc, attrs      string
	}{
		{"sqlstate", "postgresql", "shop", errorSQLState, "23505", 0, `duplicate key value violates unique constraint "t_k_key"`,
			"duplicate key value violates unique constraint ?",
			"db.system.name=postgresql db.namespace=shop db.query.text=INSERT INTO t (k) VALUES ($1) db.operation.name=INSERT db.collection.name=t db.response.status_code=23505 error.type=23505"},
		{"mysql", "mysql", "shop", errorNumber, "", 1062, "Duplicate entry 'secret' for key 't.k'",
			"Duplicate entry ?",
			"db.system.name=mysql db.namespace=shop db.query.text=INSERT INTO t (k) VALUES ($1) db.operation.name=INSERT db.collection.name=t db.response.status_code=1062 error.type=1062"},
		{"mysql-cut", "mysql", "", errorNumber, "", 1064, long,
			"You have an error in your SQL syntax; check the manual that corresponds to your MariaDB server version for the right syntax to...",
			"db.system.name=mysql db.query.text=INSERT INTO t (k) VALUES ($1) db.operation.name=INSERT db.collection.name=t db.response.status_code=1064 error.type=1064"},
		// The app's own message: no description.
		{"raise", "postgresql", "shop", errorSQLState, "P0001", 0, "user secret not found", "",
			"db.system.name=postgresql db.namespace=shop db.query.text=INSERT INTO t (k) VALUES ($1) db.operation.name=INSERT db.collection.name=t db.response.status_code=P0001 error.type=P0001"},
		{"signal", "mysql", "shop", errorNumber, "", 1644, "user secret not found", "",
			"db.system.name=mysql db.namespace=shop db.query.text=INSERT INTO t (k) VALUES ($1) db.operation.name=INSERT db.collection.name=t db.response.status_code=1644 error.type=1644"},
		// No driver's error known: the Go type (none here: _OTHER), no code.
		{"other", "sqlite", "", 0, "", 0, "", "",
			"db.system.name=sqlite db.query.text=INSERT INTO t (k) VALUES ($1) db.operation.name=INSERT db.collection.name=t error.type=_OTHER"},
		// A code that is no SQLSTATE is none.
		{"bad-code", "postgresql", "shop", errorSQLState, "xx", 0, "relation", "",
			"db.system.name=postgresql db.namespace=shop db.query.text=INSERT INTO t (k) VALUES ($1) db.operation.name=INSERT db.collection.name=t error.type=_OTHER"},
		// A name that is not UTF-8 is none.
		{"bad-name", "postgresql", "sh\xffop", errorSQLState, "42P01", 0, `relation "t" does not exist`, "relation ? does not exist",
			"db.system.name=postgresql db.query.text=INSERT INTO t (k) VALUES ($1) db.operation.name=INSERT db.collection.name=t db.response.status_code=42P01 error.type=42P01"},
	} {
		s := errorSpan(c.system, c.db, c.kind, c.code, c.number, c.msg)
		if s.Status != codes.Error || s.StatusDescription != c.desc || attrString(s) != c.attrs {
			t.Errorf("%s:\n got %v %q %s\nwant Error %q %s", c.name, s.Status, s.StatusDescription, attrString(s), c.desc, c.attrs)
		}
		if strings.Contains(s.StatusDescription+attrString(s), "secret") {
			t.Errorf("%s: a secret was exported: %q %s", c.name, s.StatusDescription, attrString(s))
		}
	}
}

// An operation that succeeded has no status, and its database's name.
func TestNamespace(t *testing.T) {
	p := &Probe{system: "postgresql"}
	var ev databasesqlSqlEvent
	ev.Conn.NameLen = uint32(copy(ev.Conn.Name[:], "shop"))
	var span telemetry.Span
	p.operationSpan(&ev, &span)
	if got := attrString(span); span.Status != codes.Unset || got != "db.system.name=postgresql db.namespace=shop" {
		t.Errorf("%v %s", span.Status, got)
	}
}

// Generated values in the places PostgreSQL's and MySQL's messages quote them, holding
// quotes of every kind, spaces, punctuation and a secret: no part of the secret is in
// the description, whole or cut where the C program cuts it (MESSAGE_MAX bytes).
func TestDescribeHidesQuotedValues(t *testing.T) {
	templates := []string{
		`invalid input syntax for type integer: "%s"`,
		`invalid input value for enum mood: "%s"`,
		`syntax error at or near "%s"`,
		`value "%s" is out of range for type integer`,
		`duplicate key value violates unique constraint "%s"`,
		`null value in column "%s" of relation "%s" violates not-null constraint`,
		`Duplicate entry '%s' for key '%s'`,
		`Incorrect integer value: '%s' for column ` + "`shop`.`items`.`qty`" + ` at row 1`,
		`Truncated incorrect DOUBLE value: '%s'`,
		`You have an error in your SQL syntax; check the manual that corresponds to your MariaDB server version for the right syntax to use near '%s' at line 1`,
		`Access denied for user '%s'@'%s' (using password: YES)`,
	}
	const secret = "SECRETVALUE"
	pieces := []string{"'", `"`, "`", " ", ".", "-", ",", "(", ")", ":", "a", "for key ", "' for key '", `" of relation "`, secret}
	r := rand.New(rand.NewPCG(29, 1))
	value := func() string {
		var b strings.Builder
		for n := r.IntN(6); n >= 0; n-- {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		b.WriteString(secret) // at least once
		for n := r.IntN(4); n > 0; n-- {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		return b.String()
	}
	var e databasesqlSqlEvent
	limit := len(e.Error.Message) // MESSAGE_MAX
	for i := 0; i < 20000; i++ {
		tpl := templates[r.IntN(len(templates))]
		var args []any
		for range strings.Count(tpl, "%s") {
			args = append(args, value())
		}
		msg := fmt.Sprintf(tpl, args...)
		cut := len(msg) > limit
		got := describe([]byte(msg[:min(len(msg), limit)]), cut)
		for w := 0; w+4 <= len(secret); w++ {
			if strings.Contains(got, secret[w:w+4]) {
				t.Fatalf("describe(%q, %v) = %q: part of the secret was exported", msg, cut, got)
			}
		}
	}
}
