package pgx

import (
	"fmt"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/codes"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// attrs renders a span's attributes as key=value, for comparisons.
func attrs(s *telemetry.Span) string {
	var kv []string
	for _, a := range s.Attributes {
		kv = append(kv, fmt.Sprintf("%s=%s", a.Key, a.Value.Emit()))
	}
	return strings.Join(kv, " ")
}

// A statement's span: its text sanitized by database/sql's code, named from it only;
// the server and database as read; a SQLSTATE as the status code and error.type.
func TestStatementSpan(t *testing.T) {
	ev := &pgxPgxEvent{Kind: eventOperation, Op: 1, NameLen: 4, ErrorType: 1}
	copy(ev.Name[:], "shop")
	ev.Server.Ip, ev.Server.IpLen, ev.Server.Port = [16]uint8{127, 0, 0, 1}, 4, 5432
	text := "SELECT * FROM /* s3cr3t */ orders WHERE note = 's3cr3t'"
	ev.QueryLen, ev.QueryCopied = uint64(len(text)), uint32(copy(ev.Query[:], text))
	ev.Error.Kind, ev.Error.CodeLen = 1, 5
	copy(ev.Error.Code[:], "42P01")
	msg := `relation "s3cr3t" does not exist`
	ev.Error.MessageLen, ev.Error.MessageCopied = uint64(len(msg)), uint32(copy(ev.Error.Message[:], msg))
	var span telemetry.Span
	(&Probe{}).operationSpan(ev, &span)
	got := attrs(&span)
	if strings.Contains(got+span.Name+span.StatusDescription, "s3cr3t") {
		t.Errorf("a literal, a comment or a quoted name was kept: %s %q %q", span.Name, got, span.StatusDescription)
	}
	want := "db.system.name=postgresql db.namespace=shop db.query.text=SELECT * FROM  orders WHERE note = ? " +
		"db.operation.name=SELECT db.collection.name=orders server.address=127.0.0.1 server.port=5432 " +
		"db.response.status_code=42P01 error.type=42P01"
	if got != want || span.Name != "SELECT orders" || span.Status != codes.Error || span.StatusDescription != "relation ? does not exist" {
		t.Errorf("span %q %v %q:\n%s\nwant\n%s", span.Name, span.Status, span.StatusDescription, got, want)
	}
}

// A CopyFrom's span is named after its table's name, read whole, or COPY alone.
func TestCopySpan(t *testing.T) {
	for _, c := range []struct {
		parts []string
		lens  []uint8 // as the C program set them; parts' own lengths if nil
		name  string
	}{
		{parts: []string{"items"}, name: "COPY items"},
		{parts: []string{"public", "items"}, name: "COPY public.items"},
		{parts: []string{"public", "items"}, lens: []uint8{6, 0}, name: "COPY"}, // a part not read
		{parts: []string{"\xff"}, name: "COPY"},
		{parts: nil, name: "COPY"},
	} {
		ev := &pgxPgxEvent{Kind: eventOperation, Op: opCopy, Parts: uint8(len(c.parts))}
		for i, p := range c.parts {
			ev.PartLen[i] = uint8(copy(ev.Query[i*partMax:], p))
			if c.lens != nil {
				ev.PartLen[i] = c.lens[i]
			}
		}
		var span telemetry.Span
		(&Probe{}).operationSpan(ev, &span)
		if span.Name != c.name || strings.Contains(attrs(&span), "db.query.text") {
			t.Errorf("%q: span %q %s, want %q and no text", c.parts, span.Name, attrs(&span), c.name)
		}
	}
}

// A SendBatch's span: its size from two statements; its texts sanitized, one if all
// are the same, else joined; BATCH and the operation and collection all share, known
// only when every statement's text was read; a batch of one is its statement's span.
func TestBatchSpan(t *testing.T) {
	const ins, sel = "INSERT INTO t (a) VALUES ('s3cr3t')", "SELECT a FROM t WHERE a = 's3cr3t'"
	for _, c := range []struct {
		size  int
		texts []string // "" for one not read
		name  string
		attrs string
	}{
		{3, []string{ins, ins, ins}, "BATCH INSERT t",
			"db.operation.batch.size=3 db.query.text=INSERT INTO t (a) VALUES (?) db.operation.name=BATCH INSERT db.collection.name=t"},
		{2, []string{ins, sel}, "BATCH t",
			"db.operation.batch.size=2 db.query.text=INSERT INTO t (a) VALUES (?); SELECT a FROM t WHERE a = ? db.operation.name=BATCH db.collection.name=t"},
		{6, []string{ins, ins, ins, ins}, "BATCH", // two statements unread: nothing shared is known
			"db.operation.batch.size=6 db.query.text=INSERT INTO t (a) VALUES (?); INSERT INTO t (a) VALUES (?); INSERT INTO t (a) VALUES (?); INSERT INTO t (a) VALUES (?) db.operation.name=BATCH"},
		{2, []string{ins, ""}, "BATCH",
			"db.operation.batch.size=2 db.query.text=INSERT INTO t (a) VALUES (?) db.operation.name=BATCH"},
		{1, []string{sel}, "SELECT t", "db.query.text=SELECT a FROM t WHERE a = ? db.operation.name=SELECT db.collection.name=t"},
		{0, nil, "BATCH", "db.operation.name=BATCH"}, // before v5.5.3: nothing read
	} {
		ev := &pgxPgxEvent{Kind: eventOperation, Op: opBatch, QueryLen: uint64(c.size)}
		textMax := len(ev.Query) / batchTexts
		for i, text := range c.texts {
			ev.TextLen[i] = uint16(copy(ev.Query[i*textMax:(i+1)*textMax], text))
		}
		var span telemetry.Span
		(&Probe{}).operationSpan(ev, &span)
		got := strings.TrimPrefix(attrs(&span), "db.system.name=postgresql ")
		if got != c.attrs || span.Name != c.name || strings.Contains(got, "s3cr3t") {
			t.Errorf("%d %q: span %q\n%s\nwant %q\n%s", c.size, c.texts, span.Name, got, c.name, c.attrs)
		}
	}
}
