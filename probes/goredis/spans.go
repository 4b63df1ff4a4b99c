package goredis

import (
	"net"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/otel-go-launcher/otel-go-launcher/probes/kit"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// What a span is of (the C program's OP_*).
const (
	opCommand     = 1
	opPipeline    = 2
	opTransaction = 3
)

// The dynamic types the probe reads values of: a command's name is a string, a reply
// error a proto.RedisError (its text is kept only for that type).
const (
	stringType     = "string"
	replyErrorType = "proto.RedisError"
	missingKey     = "redis: nil" // redis.Nil: a GET of a key that is not there, no error
)

// operationSpan fills span from an event, following the Redis conventions: the
// command's name (upper case, as Redis documents it) or PIPELINE/MULTI as operation
// and span name, the database index as namespace (never in the span name), and the
// reply error's prefix as status code.
func (p *Probe) operationSpan(ev *goredisRedisEvent, span *telemetry.Span) {
	attrs := span.Attributes[:0] // the pipeline is done with the last span's
	*span = telemetry.Span{
		TraceID: ev.Sc.TraceId,
		SpanID:  ev.Sc.SpanId,
		Kind:    trace.SpanKindClient,
		Start:   ev.StartNs,
		End:     ev.EndNs,
	}
	attrs = append(attrs, semconv.DBSystemNameRedis)
	operation, count := "", 0
	switch ev.Op {
	case opCommand:
		if p.TypeName(ev.NameType) == stringType {
			operation = commandName(ev.Name[:min(int(ev.NameLen), len(ev.Name))])
		}
	case opPipeline:
		operation, count = "PIPELINE", int(ev.Count)
	case opTransaction:
		// The client wraps a transaction's commands in MULTI and EXEC first.
		operation, count = "MULTI", int(ev.Count)-2
	}
	if operation != "" {
		span.Name = operation
		attrs = append(attrs, semconv.DBOperationName(operation))
	}
	if count >= 2 { // the conventions' batches: one operation is none
		attrs = append(attrs, semconv.DBOperationBatchSize(count))
	}
	if span.Name == "" {
		span.Name = "redis"
	}
	if ev.Db >= 0 {
		attrs = append(attrs, semconv.DBNamespace(strconv.FormatInt(ev.Db, 10)))
	}
	attrs = appendServer(attrs, string(ev.Addr[:min(int(ev.AddrLen), len(ev.Addr))]))
	if ev.ErrorType != 0 {
		attrs = p.appendError(attrs, span, ev)
	}
	span.Attributes = attrs
	span.Parent = kit.ClientParent(ev.HasParent, ev.Sc.TraceId, ev.ParentSpanId, ev.TraceFlags)
}

// commandName is a command's name as the conventions give it ("GET", "JSON.SET"), or
// "" for a first argument that is no command's name (Do with anything else, a name
// cut at the C program's bound).
func commandName(b []byte) string {
	if len(b) == 0 || len(b) >= len(goredisRedisEvent{}.Name) {
		return ""
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '|') {
			return ""
		}
	}
	return strings.ToUpper(string(b))
}

// appendServer adds the server of the client's Addr: host and port, or a Unix
// socket's path.
func appendServer(attrs []attribute.KeyValue, addr string) []attribute.KeyValue {
	if addr == "" {
		return attrs
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return append(attrs, semconv.ServerAddress(addr))
	}
	attrs = append(attrs, semconv.ServerAddress(host))
	if n, err := strconv.Atoi(port); err == nil {
		attrs = append(attrs, semconv.ServerPort(n))
	}
	return attrs
}

// appendError sets the span's error: a reply error's prefix (ERR, WRONGTYPE) as status
// code and error type, else the error's Go type. A missing key's redis.Nil is no
// error. The rest of a reply error's text, which may quote the app's data, is never
// exported.
func (p *Probe) appendError(attrs []attribute.KeyValue, span *telemetry.Span, ev *goredisRedisEvent) []attribute.KeyValue {
	errType := p.TypeName(ev.ErrorType)
	if errType == replyErrorType {
		text := string(ev.Reply[:min(int(ev.ReplyLen), len(ev.Reply))])
		if text == missingKey {
			return attrs
		}
		if prefix := replyPrefix(text); prefix != "" {
			attrs = append(attrs, semconv.DBResponseStatusCode(prefix))
			errType = prefix
		}
	}
	if errType == "" {
		errType = "_OTHER"
	}
	span.Status = codes.Error
	return append(attrs, semconv.ErrorTypeKey.String(errType))
}

// replyPrefix is the error prefix of a reply error's text ("WRONGTYPE Operation
// against..."): its first word, if upper case; "" for none.
func replyPrefix(text string) string {
	word, _, _ := strings.Cut(text, " ")
	if word == "" || len(word) == len(text) && len(text) >= len(goredisRedisEvent{}.Reply) {
		return ""
	}
	for _, c := range word {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return ""
		}
	}
	return word
}
