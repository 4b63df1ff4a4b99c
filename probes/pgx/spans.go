package pgx

import (
	"strings"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/otel-go-launcher/otel-go-launcher/probes/databasesql"
	"github.com/otel-go-launcher/otel-go-launcher/probes/kit"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// system is db.system.name: pgx speaks to PostgreSQL only.
const system = "postgresql"

// operationSpan fills span from an event, following the database conventions and
// saying what database/sql's spans say of the same operation.
func (p *Probe) operationSpan(ev *pgxPgxEvent, span *telemetry.Span) {
	attrs := span.Attributes[:0] // the pipeline is done with the last span's
	*span = telemetry.Span{
		TraceID: ev.Sc.TraceId,
		SpanID:  ev.Sc.SpanId,
		Kind:    trace.SpanKindClient,
		Start:   ev.StartNs,
		End:     ev.EndNs,
	}
	attrs = append(attrs, semconv.DBSystemNameKey.String(system))
	if name, ok := databasesql.Namespace(ev.Name[:], ev.NameLen); ok {
		attrs = append(attrs, semconv.DBNamespace(name))
	}
	if ev.Op == opCopy {
		attrs = appendCopy(attrs, span, ev)
	} else {
		n := min(int(ev.QueryCopied), len(ev.Query))
		attrs = databasesql.AppendStatement(attrs, span, system, ev.Query[:n])
	}
	if ip, ok := databasesql.ServerIP(ev.Server.Ip, ev.Server.IpLen); ok {
		attrs = append(attrs, semconv.ServerAddress(ip.String()), semconv.ServerPort(int(ev.Server.Port)))
	}
	if ev.ErrorType != 0 {
		e := &ev.Error
		m := min(int(e.MessageCopied), len(e.Message))
		attrs = databasesql.AppendError(attrs, span, databasesql.DriverError{
			Kind: e.Kind, Code: e.Code[:min(int(e.CodeLen), len(e.Code))],
			Message: e.Message[:m], MessageCut: uint64(m) < e.MessageLen,
			GoType: p.TypeName(ev.ErrorType),
		})
	}
	span.Attributes = attrs
	span.Parent = kit.ClientParent(ev.HasParent, ev.Sc.TraceId, ev.ParentSpanId, ev.TraceFlags)
}

// What a span is of (the C program's OP_*), and how far apart the parts of a COPY's
// table name are (PART_MAX).
const (
	opCopy  = 2
	partMax = 64
)

// appendCopy names a CopyFrom's span after its table, as pgx's COPY statement names it:
// COPY and the table's name ("schema.table" for two parts). A name the C program could
// not read whole, or that is not UTF-8, gives none: the span is then COPY alone.
func appendCopy(attrs []attribute.KeyValue, span *telemetry.Span, ev *pgxPgxEvent) []attribute.KeyValue {
	const operation = "COPY"
	span.Name = operation
	attrs = append(attrs, semconv.DBOperationName(operation))
	if ev.Parts < 1 || int(ev.Parts) > len(ev.PartLen) {
		return attrs
	}
	parts := make([]string, ev.Parts)
	for i := range parts {
		n := int(ev.PartLen[i])
		part := ev.Query[i*partMax : i*partMax+min(n, partMax)]
		if n == 0 || !utf8.Valid(part) {
			return attrs
		}
		parts[i] = string(part)
	}
	table := strings.Join(parts, ".")
	span.Name = operation + " " + table
	return append(attrs, semconv.DBCollectionName(table))
}
