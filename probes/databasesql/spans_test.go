package databasesql

import (
	"strings"
	"testing"
	"unsafe"

	"go.opentelemetry.io/otel/codes"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// spanOf is the span the probe makes of an operation on a system's database whose
// statement is text, cut where the C program cuts it.
func spanOf(system, text string) telemetry.Span {
	p := &Probe{system: system}
	var ev databasesqlSqlEvent
	ev.Query.Len = uint64(len(text))
	ev.Query.Copied = uint32(copy(ev.Query.Text[:], text))
	var span telemetry.Span
	p.operationSpan(&ev, &span)
	return span
}

// attrString is the span's attributes, key=value, in order.
func attrString(s telemetry.Span) string {
	var kv []string
	for _, a := range s.Attributes {
		kv = append(kv, string(a.Key)+"="+a.Value.Emit())
	}
	return strings.Join(kv, " ")
}

// Found in the privilege boundary review: the span's name and db.collection.name were read from the statement as
// written, so a comment or a literal where the table's name is read named the span
// ("SELECT secret"); PostgreSQL's nested comments and MySQL's # comments stayed in
// db.query.text. Names come from the sanitized text only.
func TestSpanNamesFromSanitizedText(t *testing.T) {
	for _, c := range []struct {
		system, text, name, attrs string
	}{
		{"postgresql", "SELECT * FROM /* secret */ users", "SELECT users",
			"db.system.name=postgresql db.query.text=SELECT * FROM  users db.operation.name=SELECT db.collection.name=users"},
		{"postgresql", "SELECT 'from secret'", "SELECT",
			"db.system.name=postgresql db.query.text=SELECT ? db.operation.name=SELECT"},
		{"postgresql", "SELECT 1 FROM /* a /* b */ secret */ t", "SELECT t",
			"db.system.name=postgresql db.query.text=SELECT ? FROM  t db.operation.name=SELECT db.collection.name=t"},
		{"mysql", "SELECT * FROM t # secret", "SELECT t",
			"db.system.name=mysql db.query.text=SELECT * FROM t  db.operation.name=SELECT db.collection.name=t"},
		{"mysql", "DELETE FROM -- secret\nt", "DELETE t",
			"db.system.name=mysql db.query.text=DELETE FROM \nt db.operation.name=DELETE db.collection.name=t"},
		// A name in a literal's place names no table.
		{"sqlite", `SELECT * FROM "secret"`, "SELECT", `db.system.name=sqlite db.query.text=SELECT * FROM ? db.operation.name=SELECT`},
		{"mysql", "INSERT INTO 'secret' VALUES (1)", "INSERT", "db.system.name=mysql db.query.text=INSERT INTO ? VALUES (?) db.operation.name=INSERT"},
		{"postgresql", "UPDATE $$secret$$ SET a = 1", "UPDATE", "db.system.name=postgresql db.query.text=UPDATE ? SET a = ? db.operation.name=UPDATE"},
		{"other_sql", "SELECT * FROM /* secret */ users # secret\n", "SELECT users",
			"db.system.name=other_sql db.query.text=SELECT * FROM  users \n db.operation.name=SELECT db.collection.name=users"},
		// A statement that is all comment names nothing but its database.
		{"postgresql", "/* secret */", "postgresql", "db.system.name=postgresql db.query.text="},
		{"mysql", "/* secret", "mysql", "db.system.name=mysql db.query.text="},
		// A literal's ; is no second statement; a quoted name stays one.
		{"postgresql", `INSERT INTO "Items" VALUES ('a;b')`, "INSERT Items",
			`db.system.name=postgresql db.query.text=INSERT INTO "Items" VALUES (?) db.operation.name=INSERT db.collection.name=Items`},
		{"mysql", "INSERT INTO `Items` VALUES ('a;b')", "INSERT Items",
			"db.system.name=mysql db.query.text=INSERT INTO `Items` VALUES (?) db.operation.name=INSERT db.collection.name=Items"},
	} {
		s := spanOf(c.system, c.text)
		if s.Name != c.name || attrString(s) != c.attrs {
			t.Errorf("%s %q:\n got %q %s\nwant %q %s", c.system, c.text, s.Name, attrString(s), c.name, c.attrs)
		}
		if strings.Contains(s.Name+attrString(s), "secret") {
			t.Errorf("%s %q: a secret was exported: %q %s", c.system, c.text, s.Name, attrString(s))
		}
	}
}

// What making a span of an operation costs the launcher: most of it is reading the
// statement (sanitize, summarize); a text that several readings tell apart (MySQL's
// "..." and backslashes) is read once per reading.
func BenchmarkOperationSpan(b *testing.B) {
	for _, c := range []struct{ name, system, text string }{
		{"postgresql", "postgresql", "SELECT count(*) FROM items WHERE name = $1"},
		{"postgresql-literal", "postgresql", "INSERT INTO creds (token) VALUES ('s3cr3t-T0ken-42')"},
		{"mysql", "mysql", "SELECT a, b FROM t WHERE x = ? AND y = 'z'"},
		{"mysql-quotes", "mysql", `SELECT "a", 'b\'c' FROM t WHERE x = ?`},
		{"other_sql", "other_sql", "SELECT a FROM t WHERE b = ? AND c = 'x'"},
	} {
		b.Run(c.name, func(b *testing.B) {
			p := &Probe{system: c.system}
			var ev databasesqlSqlEvent
			ev.Query.Copied = uint32(copy(ev.Query.Text[:], c.text))
			var span telemetry.Span
			b.ReportAllocs()
			for b.Loop() {
				p.operationSpan(&ev, &span)
			}
		})
	}
}

// An operation still waiting for the driver's answer when the app exits: its span as
// the operation's, its text sanitized, without an error.
func TestOpenOperationSpan(t *testing.T) {
	p := &Probe{system: "postgresql"}
	var ev databasesqlSqlEvent
	text := "SELECT pg_sleep(60) FROM t WHERE secret = 'x'"
	ev.Kind, ev.StartNs, ev.HasParent, ev.ParentSpanId = eventOperation, 100, 1, [8]uint8{3}
	ev.Sc.TraceId, ev.Sc.SpanId = [16]uint8{1}, [8]uint8{2}
	ev.Query.Len, ev.Query.Copied = uint64(len(text)), uint32(copy(ev.Query.Text[:], text))
	var span telemetry.Span
	if !p.openOperationSpan(unsafe.Slice((*byte)(unsafe.Pointer(&ev)), unsafe.Sizeof(ev)), &span) {
		t.Fatal("an operation in flight: no span")
	}
	if want := "db.system.name=postgresql db.query.text=SELECT pg_sleep(?) FROM t WHERE secret = ? db.operation.name=SELECT db.collection.name=t"; attrString(span) != want ||
		span.Name != "SELECT t" || span.Start != 100 || span.Status != codes.Unset || span.Parent.SpanID() != [8]byte{3} {
		t.Errorf("span %q %s, want %s", span.Name, attrString(span), want)
	}
	if p.openOperationSpan(make([]byte, unsafe.Sizeof(ev)), &span) {
		t.Error("an entry that is no operation: a span")
	}
}
