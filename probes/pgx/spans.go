package pgx

import (
	"slices"
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
	switch ev.Op {
	case opCopy:
		attrs = appendCopy(attrs, span, ev)
	case opBatch:
		attrs = appendBatch(attrs, span, ev)
	default:
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
	opCopy     = 2
	opBatch    = 3
	partMax    = 64
	batchTexts = 4 // BATCH_TEXTS: the statements whose texts are read, TEXT_MAX apart
)

// appendBatch says what a SendBatch's span is of, as the conventions say it of a batch:
// its size (db.operation.batch.size, from two statements), and from the texts of its
// first statements - all of them, if it has no more - each sanitized as a statement's:
// db.query.text (the texts joined by "; ", or one if all are the same) and, when they
// share it, the operation ("BATCH INSERT") and collection, which name the span;
// otherwise BATCH. A batch of one is that statement's span.
func appendBatch(attrs []attribute.KeyValue, span *telemetry.Span, ev *pgxPgxEvent) []attribute.KeyValue {
	size := int(ev.QueryLen)
	textMax := len(ev.Query) / batchTexts
	var texts, operations, collections []string
	for i := range min(size, batchTexts) {
		n := min(int(ev.TextLen[i]), textMax)
		if n == 0 {
			continue
		}
		var one telemetry.Span
		for _, kv := range databasesql.AppendStatement(nil, &one, system, ev.Query[i*textMax:i*textMax+n]) {
			switch kv.Key {
			case semconv.DBQueryTextKey:
				texts = append(texts, kv.Value.AsString())
			case semconv.DBOperationNameKey:
				operations = append(operations, kv.Value.AsString())
			case semconv.DBCollectionNameKey:
				collections = append(collections, kv.Value.AsString())
			}
		}
	}
	// What all the statements share is known only if every one was read.
	known := size > 0 && size <= batchTexts && len(texts) == size
	shared := func(values []string) string {
		if !known || len(values) != size || slices.ContainsFunc(values, func(v string) bool { return v != values[0] }) {
			return ""
		}
		return values[0]
	}
	if size == 1 {
		if len(texts) == 1 {
			attrs = append(attrs, semconv.DBQueryText(texts[0]))
		}
		if op := shared(operations); op != "" {
			attrs = append(attrs, semconv.DBOperationName(op))
			span.Name = op
			if coll := shared(collections); coll != "" {
				attrs = append(attrs, semconv.DBCollectionName(coll))
				span.Name += " " + coll
			}
			return attrs
		}
		span.Name = system
		return attrs
	}
	if size > 1 {
		attrs = append(attrs, semconv.DBOperationBatchSize(size))
	}
	if text := shared(texts); text != "" {
		attrs = append(attrs, semconv.DBQueryText(text))
	} else if len(texts) > 0 {
		attrs = append(attrs, semconv.DBQueryText(strings.Join(texts, "; ")))
	}
	operation := "BATCH"
	if op := shared(operations); op != "" {
		operation += " " + op
	}
	attrs = append(attrs, semconv.DBOperationName(operation))
	span.Name = operation
	if coll := shared(collections); coll != "" {
		attrs = append(attrs, semconv.DBCollectionName(coll))
		span.Name += " " + coll
	}
	return attrs
}

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
