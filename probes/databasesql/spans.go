package databasesql

import (
	"net/netip"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
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
	if name, ok := Namespace(ev.Conn.Name[:], ev.Conn.NameLen); ok {
		attrs = append(attrs, semconv.DBNamespace(name))
	}
	n := min(int(ev.Query.Copied), len(ev.Query.Text))
	attrs = AppendStatement(attrs, span, system, ev.Query.Text[:n])
	if ip, ok := ServerIP(ev.Conn.Server.Ip, ev.Conn.Server.IpLen); ok {
		attrs = append(attrs, semconv.ServerAddress(ip.String()), semconv.ServerPort(int(ev.Conn.Server.Port)))
	}
	if ev.ErrorType != 0 {
		e := &ev.Error
		n := min(int(e.MessageCopied), len(e.Message))
		attrs = AppendError(attrs, span, DriverError{
			Kind: e.Kind, Code: e.Code[:min(int(e.CodeLen), len(e.Code))], Number: e.Number,
			Message: e.Message[:n], MessageCut: uint64(n) < e.MessageLen,
			GoType: p.TypeName(ev.ErrorType),
		})
	}
	span.Attributes = attrs
	span.Parent = kit.ClientParent(ev.HasParent, ev.Sc.TraceId, ev.ParentSpanId, ev.TraceFlags)
}

// Namespace is db.namespace: the database's name a C program read (n bytes of
// name), as the app gave it; none for none, or for one that is not UTF-8.
func Namespace(name []byte, n uint32) (string, bool) {
	if n == 0 || int(n) > len(name) || !utf8.Valid(name[:n]) {
		return "", false
	}
	return string(name[:n]), true
}

// ServerIP is the server's address a C program read (n bytes of ip), if any.
func ServerIP(ip [16]uint8, n uint8) (netip.Addr, bool) {
	switch n {
	case 4:
		return netip.AddrFrom4([4]byte(ip[:4])), true
	case 16:
		return netip.AddrFrom16(ip).Unmap(), true
	}
	return netip.Addr{}, false
}

// AppendStatement adds to attrs what a span says of a statement's text, read as the
// database system reads it: the text with its literals and comments hidden
// (db.query.text), and the operation and collection named from that text only, which
// also name the span (system's name without a text). Shared with the drivers' own
// probes (probes/pgx): one sanitizer.
func AppendStatement(attrs []attribute.KeyValue, span *telemetry.Span, system string, text []byte) []attribute.KeyValue {
	if len(text) > 0 {
		// Names come from the sanitized text only: a comment or a literal where a
		// table's name is read ("FROM /* x */ t", "SELECT 'from x'") must not name it.
		sanitized := sanitize(string(text), dialectOf(system))
		attrs = append(attrs, semconv.DBQueryText(sanitized))
		operation, collection := summarize(sanitized)
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
	return attrs
}

// DriverError is what a C program read of an operation's error.
type DriverError struct {
	Kind       uint8  // ErrorSQLState, MySQL's error number, or 0 for an error of no driver known
	Code       []byte // the SQLSTATE
	Number     uint16 // MySQL's error number
	Message    []byte // the start of the message
	MessageCut bool   // whether the message is longer than Message
	GoType     string // the error's dynamic type, as the runtime names it; "" unknown
}

// ErrorSQLState is DriverError.Kind for a SQLSTATE in Code.
const ErrorSQLState = errorSQLState

// AppendError marks span failed with e: its code as db.response.status_code and
// error.type (the same across drivers; a wrapper's type is not what failed), the
// message with what it quotes hidden as the status description; without a code, the
// error's Go type as error.type.
func AppendError(attrs []attribute.KeyValue, span *telemetry.Span, e DriverError) []attribute.KeyValue {
	span.Status = codes.Error
	errType := statusCode(e.Kind, e.Code, e.Number)
	if errType != "" {
		attrs = append(attrs, semconv.DBResponseStatusCode(errType))
		if !appMessage(e.Kind, errType) {
			span.StatusDescription = describe(e.Message, e.MessageCut)
		}
	} else if errType = e.GoType; errType == "" {
		errType = "_OTHER"
	}
	return append(attrs, semconv.ErrorTypeKey.String(errType))
}
