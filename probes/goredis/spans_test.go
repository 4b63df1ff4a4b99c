package goredis

import (
	"testing"
	"unsafe"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

func TestCommandName(t *testing.T) {
	for in, want := range map[string]string{
		"get":                              "GET",
		"SET":                              "SET",
		"json.set":                         "JSON.SET",
		"ft._list":                         "FT._LIST",
		"":                                 "",
		"get key":                          "", // not a name: Do with a whole command line
		"s3cr3t\x00":                       "",
		"\xff":                             "",
		"abcdefghijklmnopqrstuvwxyz012345": "", // the C program's bound: perhaps cut
	} {
		if got := commandName([]byte(in)); got != want {
			t.Errorf("commandName(%q) = %q, want %q", in, got, want)
		}
	}
}

// Only a reply error's upper-case first word is kept: never the rest, which may quote
// the app's data.
func TestReplyPrefix(t *testing.T) {
	for in, want := range map[string]string{
		"WRONGTYPE Operation against a key holding the wrong kind of value": "WRONGTYPE",
		"ERR unknown command 'x'":              "ERR",
		"NOAUTH Authentication required.":      "NOAUTH",
		"SEARCH_INDEX_NOT_FOUND no such index": "SEARCH_INDEX_NOT_FOUND",
		"redis: transaction failed":            "",
		"Bad capacity":                         "",
		"":                                     "",
		"ERR":                                  "ERR",
		"LOADING":                              "LOADING",
		"ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEF":     "", // 32 bytes, no space: perhaps cut
		"s3cr3t-value appears in the error's text": "",
	} {
		if got := replyPrefix(in); got != want {
			t.Errorf("replyPrefix(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAppendServer(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:6379":  "server.address=127.0.0.1 server.port=6379",
		"[::1]:6380":      "server.address=::1 server.port=6380",
		"cache.svc:6379":  "server.address=cache.svc server.port=6379",
		"/run/redis.sock": "server.address=/run/redis.sock",
		"":                "",
	} {
		got := ""
		for _, kv := range appendServer(nil, in) {
			if got != "" {
				got += " "
			}
			got += string(kv.Key) + "=" + kv.Value.Emit()
		}
		if got != want {
			t.Errorf("appendServer(%q) = %q, want %q", in, got, want)
		}
	}
}

// Pipelines and transactions: PIPELINE and MULTI, with the commands the app queued
// (a transaction's MULTI and EXEC, which the client adds, not counted); a batch of
// one is no batch.
func TestPipelineSpans(t *testing.T) {
	p := &Probe{}
	for _, c := range []struct {
		op    uint8
		count uint64
		name  string
		batch int64
	}{
		{opPipeline, 3, "PIPELINE", 3},
		{opPipeline, 1, "PIPELINE", 0},
		{opTransaction, 4, "MULTI", 2},
		{opTransaction, 3, "MULTI", 0},
	} {
		ev := &goredisRedisEvent{Op: c.op, Count: c.count, Db: 2}
		copy(ev.Addr[:], "10.0.0.7:6379")
		ev.AddrLen = uint32(len("10.0.0.7:6379"))
		var span telemetry.Span
		p.operationSpan(ev, &span)
		attrs := attribute.NewSet(span.Attributes...)
		batch, _ := attrs.Value("db.operation.batch.size")
		op, _ := attrs.Value("db.operation.name")
		ns, _ := attrs.Value("db.namespace")
		if span.Name != c.name || op.AsString() != c.name || batch.AsInt64() != c.batch || ns.AsString() != "2" || span.Status != codes.Unset {
			t.Errorf("%+v: span %s %v", c, span.Name, span.Attributes)
		}
	}
}

// A command still waiting for its reply when the app exits (a pipeline here: a
// command's name needs the app's type names): its span as the command's, without an
// error.
func TestOpenOperationSpan(t *testing.T) {
	p := &Probe{}
	ev := goredisRedisEvent{Kind: eventOperation, Op: opPipeline, Count: 2, Db: 0, StartNs: 100, HasParent: 1, ParentSpanId: [8]uint8{3}}
	ev.AddrLen = uint32(copy(ev.Addr[:], "10.0.0.7:6379"))
	var span telemetry.Span
	if !p.openOperationSpan(unsafe.Slice((*byte)(unsafe.Pointer(&ev)), unsafe.Sizeof(ev)), &span) {
		t.Fatal("an operation in flight: no span")
	}
	attrs := attribute.NewSet(span.Attributes...)
	if _, ok := attrs.Value("error.type"); ok || span.Name != "PIPELINE" || span.Start != 100 || span.Status != codes.Unset || span.Parent.SpanID() != [8]byte{3} {
		t.Errorf("span %q %v", span.Name, span.Attributes)
	}
	if p.openOperationSpan(make([]byte, unsafe.Sizeof(ev)), &span) {
		t.Error("an entry that is no operation: a span")
	}
}
