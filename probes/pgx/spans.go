package pgx

import (
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
	n := min(int(ev.QueryCopied), len(ev.Query))
	attrs = databasesql.AppendStatement(attrs, span, system, ev.Query[:n])
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
