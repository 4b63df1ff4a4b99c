package databasesql

import (
	"net/netip"
	"unicode/utf8"

	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/otel-go-launcher/otel-go-launcher/offsets"
	"github.com/otel-go-launcher/otel-go-launcher/probes/kit"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// drivers are the database/sql drivers whose database the probe names, by module.
var drivers = []struct{ module, system string }{
	{"github.com/jackc/pgx/v5", "postgresql"},
	{"github.com/jackc/pgx/v4", "postgresql"},
	{"github.com/lib/pq", "postgresql"},
	{"github.com/go-sql-driver/mysql", "mysql"},
	{"modernc.org/sqlite", "sqlite"},
	{"github.com/mattn/go-sqlite3", "sqlite"},
	{"github.com/microsoft/go-mssqldb", "microsoft.sql_server"},
	{"github.com/denisenkom/go-mssqldb", "microsoft.sql_server"},
}

// connTypes are the drivers' connection types, as the runtime names them, and their
// databases: which database an operation went to, in an app that links several.
var connTypes = map[string]string{
	"*stdlib.Conn":        "postgresql", // pgx's database/sql adapter
	"*pq.conn":            "postgresql",
	"*mysql.mysqlConn":    "mysql",
	"*sqlite.conn":        "sqlite", // modernc.org/sqlite
	"*sqlite3.SQLiteConn": "sqlite", // mattn/go-sqlite3
	"*mssql.Conn":         "microsoft.sql_server",
}

// systemOf is db.system.name for the app: the database of the one known driver compiled
// in; other_sql for none, or for drivers of different databases. An operation whose
// driver connection's type is known says better (system).
func systemOf(mods offsets.Modules) string {
	system := ""
	for _, d := range drivers {
		if mods.Version(d.module) == "" {
			continue
		}
		if system != "" && system != d.system {
			return "other_sql"
		}
		system = d.system
	}
	if system == "" {
		return "other_sql"
	}
	return system
}

// operationSpan fills span from an event, following the database conventions.
func (p *Probe) operationSpan(ev *databasesqlSqlEvent, span *telemetry.Span) {
	attrs := span.Attributes[:0] // the pipeline is done with the last span's
	*span = telemetry.Span{
		TraceID: ev.Sc.TraceId,
		SpanID:  ev.Sc.SpanId,
		Kind:    trace.SpanKindClient,
		Start:   ev.StartNs,
		End:     ev.EndNs,
	}
	system := p.system
	if s, ok := connTypes[p.TypeName(ev.Conn.Type)]; ok {
		system = s
	}
	attrs = append(attrs, semconv.DBSystemNameKey.String(system))
	if name, ok := namespace(ev.Conn.Name[:], ev.Conn.NameLen); ok {
		attrs = append(attrs, semconv.DBNamespace(name))
	}
	n := min(int(ev.Query.Copied), len(ev.Query.Text))
	if n > 0 {
		// Names come from the sanitized text only: a comment or a literal where a
		// table's name is read ("FROM /* x */ t", "SELECT 'from x'") must not name it.
		text := sanitize(string(ev.Query.Text[:n]), dialectOf(system))
		attrs = append(attrs, semconv.DBQueryText(text))
		operation, collection := summarize(text)
		switch {
		case operation != "" && collection != "":
			span.Name = operation + " " + collection
			attrs = append(attrs, semconv.DBOperationName(operation), semconv.DBCollectionName(collection))
		case operation != "":
			span.Name = operation
			attrs = append(attrs, semconv.DBOperationName(operation))
		}
	}
	if span.Name == "" {
		span.Name = system
	}
	if ip, ok := serverIP(ev.Conn.Server.Ip, ev.Conn.Server.IpLen); ok {
		attrs = append(attrs, semconv.ServerAddress(ip.String()), semconv.ServerPort(int(ev.Conn.Server.Port)))
	}
	if ev.ErrorType != 0 {
		span.Status = codes.Error
		// The database's code for the failure is error.type too, as the conventions
		// ask (the same across drivers, and a wrapper's type is not what failed);
		// without one, the error's Go type.
		e := &ev.Error
		errType := statusCode(e.Kind, e.Code[:min(int(e.CodeLen), len(e.Code))], e.Number)
		if errType != "" {
			attrs = append(attrs, semconv.DBResponseStatusCode(errType))
			if !appMessage(e.Kind, errType) {
				n := min(int(e.MessageCopied), len(e.Message))
				span.StatusDescription = describe(e.Message[:n], uint64(n) < e.MessageLen)
			}
		} else if errType = p.TypeName(ev.ErrorType); errType == "" {
			errType = "_OTHER"
		}
		attrs = append(attrs, semconv.ErrorTypeKey.String(errType))
	}
	span.Attributes = attrs
	span.Parent = kit.ClientParent(ev.HasParent, ev.Sc.TraceId, ev.ParentSpanId, ev.TraceFlags)
}

// namespace is db.namespace: the database's name the C program read (n bytes of
// name), as the app gave it; none for none, or for one that is not UTF-8.
func namespace(name []byte, n uint32) (string, bool) {
	if n == 0 || int(n) > len(name) || !utf8.Valid(name[:n]) {
		return "", false
	}
	return string(name[:n]), true
}

// serverIP is the address the C program read (n bytes of ip), if any.
func serverIP(ip [16]uint8, n uint8) (netip.Addr, bool) {
	switch n {
	case 4:
		return netip.AddrFrom4([4]byte(ip[:4])), true
	case 16:
		return netip.AddrFrom16(ip).Unmap(), true
	}
	return netip.Addr{}, false
}
