package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// sarama's spans from an HTTP service (internal/testenv/targets/saramaservice) on the
// tests' Kafka broker (kfake), with the first IBM/sarama release (v1.40.1, Go 1.22:
// SendMessage without a context) and the newest (SendMessageContext; plain and
// stripped): a SyncProducer's SendMessage, SendMessageContext and SendMessages each one
// PRODUCER span, the child of the request's server span (by the handler's goroutine, or
// by the context from another goroutine), with the topic, a batch's size, a single
// message's partition and offset, or the error; an AsyncProducer's message none (the
// program has a SyncProducer: TestSaramaAsyncSpans); every message the consumer group receives one CONSUMER span, the child of
// the traceparent the app wrote on it, else a root; no message key or value in any
// byte exported.
func TestSaramaSpans(t *testing.T) {
	testenv.RequireRoot(t)
	targets := testenv.BuildSarama(t, testenv.SaramaBuilds...)
	var topics []string
	for _, tg := range targets {
		topics = append(topics, saramaTopic(tg), saramaTopic(tg)+"-b") // -b: a mixed batch's other topic
	}
	broker, _ := testenv.StartKafka(t, topics...)
	for _, tg := range targets {
		t.Run(tg.Toolchain+"/"+tg.Variant.Name, func(t *testing.T) { saramaSpans(t, tg, broker) })
	}
}

// saramaTopic is a build's topic in TestSaramaSpans: one each, the broker is shared,
// and not the bare test's.
func saramaTopic(tg testenv.Target) string { return "spans-" + kafkaTopic(tg) }

// The parts of kafkaTraceparent: the trace a consumed message that carries it joins.
const (
	kafkaTraceparentTrace = "0af7651916cd43dd8448eb211c80319c"
	kafkaTraceparentSpan  = "b7ad6b7169203331"
)

func saramaSpans(t *testing.T, tg testenv.Target, broker string) {
	recv := testenv.StartReceiver(t)
	recv.KeepBytes()
	addr := freeAddr(t)
	topic := saramaTopic(tg)
	env := append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT="+recv.Endpoint, "OTEL_BSP_SCHEDULE_DELAY=200",
		"OTEL_SERVICE_NAME=saramaservice", "OTEL_RESOURCE_ATTRIBUTES=", "OTEL_TRACES_EXPORTER=", "OTEL_TRACES_SAMPLER=",
		"OTEL_PROPAGATORS=")
	r := start(t, opts{env: env, stdin: strings.NewReader("")}, launchBin(t), "--", tg.Path,
		"-addr", addr, "-broker", broker, "-topic", topic)
	firstRequest(t, addr, "/consumed")
	get := func(path string) { t.Helper(); getOK(t, r, addr, path) }
	// Keys and values the app's messages hold, which must never be exported.
	get("/produce?key=k3y-plain&value=s3cr3t-plain")
	get("/produce?key=k3y-carried&value=s3cr3t-carried&traceparent=" + kafkaTraceparent)
	get("/produce-batch?key=k3y-batch&value=s3cr3t-batch&n=3")
	get("/produce-async?key=k3y-async&value=s3cr3t-async")
	get("/produce-ctx?key=k3y-ctx&value=s3cr3t-ctx")
	get("/produce-ctx?goroutine=1&key=k3y-ctxg&value=s3cr3t-ctxg")
	// Over Producer.MaxMessageBytes: refused by the producer, never sent.
	if resp, err := http.Get("http://" + addr + "/produce?bytes=2000000&key=k3y-big&value=s3cr3t-big"); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("a message too large: status %d, want 502 (the send's error)", resp.StatusCode)
	}
	// Batches of one topic in strings of their own (the program compares their bytes),
	// and of two topics (the last message to the other, not consumed).
	get("/produce-batch?clone=1&n=2&key=k3y-clone&value=s3cr3t-clone")
	get("/produce-batch?mixed=1&n=3&key=k3y-mixed&value=s3cr3t-mixed")
	const messages = 1 + 1 + 3 + 1 + 1 + 1 + 2 + 2
	const sent = 8 // SyncProducer calls

	count := func(spans []testenv.Span, kind tracepb.Span_SpanKind) int {
		n := 0
		for _, s := range spans {
			if s.Kind == kind {
				n++
			}
		}
		return n
	}
	spans, ok := recv.WaitFor(60*time.Second, func(s []testenv.Span) bool {
		return count(s, tracepb.Span_SPAN_KIND_PRODUCER) >= sent && count(s, tracepb.Span_SPAN_KIND_CONSUMER) >= messages
	})
	if !ok {
		t.Fatalf("want %d PRODUCER and %d CONSUMER spans: %s\n%s", sent, messages, spanList(spans), r.stderr)
	}
	time.Sleep(500 * time.Millisecond) // any span more, exported behind them
	spans = recv.Spans()
	byID := map[string]testenv.Span{}
	for _, s := range spans {
		byID[s.SpanID] = s
	}

	// Producing: one span per SyncProducer call, under the request that made it.
	type sendSpan struct {
		route     string // its parent's path; "" for a root
		topic     string // its destination; "" for none
		count     int64
		partition string
		offset    bool
		errType   string
	}
	var sends []sendSpan
	consumed := map[int64]testenv.Span{} // by offset
	for _, s := range spans {
		if s.Attrs["messaging.system"] != nil && s.Attrs["messaging.system"] != "kafka" {
			t.Errorf("%s: messaging.system %v", s.Name, s.Attrs["messaging.system"])
		}
		switch s.Kind {
		case tracepb.Span_SPAN_KIND_PRODUCER:
			errType, _ := s.Attrs["error.type"].(string)
			dest, _ := s.Attrs["messaging.destination.name"].(string)
			if dest != "" && dest != topic || s.Name != strings.TrimSpace("send "+dest) ||
				s.Attrs["messaging.operation.type"] != "send" || s.Attrs["messaging.operation.name"] != "send" ||
				(s.StatusCode == tracepb.Status_STATUS_CODE_ERROR) != (errType != "") {
				t.Errorf("PRODUCER span %s %v %v", s.Name, s.StatusCode, s.Attrs)
			}
			route := ""
			if s.ParentSpanID != "" {
				parent, ok := byID[s.ParentSpanID]
				if !ok || parent.Kind != tracepb.Span_SPAN_KIND_SERVER || parent.TraceID != s.TraceID {
					t.Errorf("PRODUCER span %s: parent %q (%s %s) is not the request's server span", s.Name, s.ParentSpanID, parent.Kind, parent.Name)
					continue
				}
				route = fmt.Sprint(parent.Attrs["url.path"])
			}
			n, _ := s.Attrs["messaging.batch.message_count"].(int64)
			part, _ := s.Attrs["messaging.destination.partition.id"].(string)
			_, off := s.Attrs["messaging.kafka.offset"].(int64)
			sends = append(sends, sendSpan{route, dest, n, part, off, errType})
		case tracepb.Span_SPAN_KIND_CONSUMER:
			off, ok := s.Attrs["messaging.kafka.offset"].(int64)
			if s.Name != "receive "+topic || s.Attrs["messaging.destination.name"] != topic || !ok ||
				s.Attrs["messaging.destination.partition.id"] != "0" ||
				s.Attrs["messaging.operation.type"] != "receive" || s.Attrs["messaging.operation.name"] != "receive" {
				t.Errorf("CONSUMER span %s %v", s.Name, s.Attrs)
			}
			if _, dup := consumed[off]; dup {
				t.Errorf("two CONSUMER spans for offset %d", off)
			}
			consumed[off] = s
		}
	}
	// From a goroutine of the handler, only SendMessageContext's context leads to the
	// request's span: v1.40.1's SendMessage has none, and its span is a root.
	// A message too large is refused with a ConfigurationError (v1.40.1: the KError
	// ErrMessageSizeTooLarge).
	fromGoroutine, tooLarge := "/produce-ctx", "sarama.ConfigurationError"
	if strings.Contains(tg.Variant.Name, "v1.40.1") {
		fromGoroutine, tooLarge = "", "sarama.KError"
	}
	checkChildren(t, "SyncProducer", sends, []sendSpan{
		{"/produce", topic, 0, "0", true, ""}, {"/produce", topic, 0, "0", true, ""},
		{"/produce-batch", topic, 3, "", false, ""},
		{"/produce-ctx", topic, 0, "0", true, ""}, {fromGoroutine, topic, 0, "0", true, ""},
		{"/produce", topic, 0, "", false, tooLarge},
		{"/produce-batch", topic, 2, "", false, ""}, {"/produce-batch", "", 3, "", false, ""},
	})

	// Consuming: a span per message, in the order produced (one partition): the
	// second carries the app's traceparent.
	if len(consumed) != messages {
		t.Errorf("%d CONSUMER spans, want %d: %s", len(consumed), messages, spanList(spans))
	}
	for off := int64(0); off < messages; off++ {
		s, ok := consumed[off]
		switch {
		case !ok:
			t.Errorf("no CONSUMER span for offset %d", off)
		case off == 1 && (s.TraceID != kafkaTraceparentTrace || s.ParentSpanID != kafkaTraceparentSpan):
			t.Errorf("offset 1, sent with traceparent %s: span in trace %s, parent %q", kafkaTraceparent, s.TraceID, s.ParentSpanID)
		case off != 1 && (s.ParentSpanID != "" || s.TraceID == kafkaTraceparentTrace):
			t.Errorf("offset %d, sent without a traceparent: span in trace %s, parent %q: want a root", off, s.TraceID, s.ParentSpanID)
		}
	}

	// Request metrics, flushed at exit: the send calls and receives timed, and the
	// messages counted - a batch's as many as it holds; the failed send's under its
	// error.type.
	r.signal(syscall.SIGTERM)
	r.wait(20 * time.Second)
	ops := map[string]uint64{}
	for _, h := range recv.Histograms() {
		if h.Metric == "messaging.client.operation.duration" && h.Attrs["messaging.destination.name"] == topic {
			ops[fmt.Sprint(h.Attrs["messaging.operation.type"], " ", h.Attrs["error.type"])] += h.Count
		}
	}
	// (The mixed batch's send has no single destination: not under the topic.)
	if want := fmt.Sprint(map[string]uint64{"send <nil>": sent - 2, "send " + tooLarge: 1, "receive <nil>": messages}); fmt.Sprint(ops) != want {
		t.Errorf("messaging.client.operation.duration on %s by operation and error: %v, want %s", topic, ops, want)
	}
	counted := map[string]int64{}
	for _, c := range recv.Counts() {
		if c.Attrs["messaging.destination.name"] == topic && c.Attrs["error.type"] == nil {
			counted[c.Metric] += c.Value
		}
	}
	// Sent: SyncProducer calls' messages (1+1+3+1+1+2 to the topic; the mixed batch has no
	// single destination) and the AsyncProducer's message has no span in this program.
	if want := fmt.Sprint(map[string]int64{"messaging.client.consumed.messages": messages, "messaging.client.sent.messages": 9}); fmt.Sprint(counted) != want {
		t.Errorf("messages counted on %s: %v, want %s", topic, counted, want)
	}

	exported := recv.ExportedBytes()
	if len(exported) == 0 {
		t.Fatal("no export's bytes kept")
	}
	if bytes.Contains(exported, []byte("s3cr3t")) || bytes.Contains(exported, []byte("k3y-")) {
		t.Error("a message's key or value is in the bytes exported")
	}
	if said := launcherLines(r); said != "" {
		t.Errorf("the launcher said:\n%s", said)
	}
}

// An AsyncProducer's messages, in a program without a SyncProducer (the saramaasync
// target), on the same releases: one PRODUCER span per message, from its partitioning
// to its acknowledgement, with its topic, partition and offset; a root, since sarama's
// own goroutines send it; no key or value exported.
func TestSaramaAsyncSpans(t *testing.T) {
	testenv.RequireRoot(t)
	targets := testenv.BuildSaramaAsync(t, testenv.SaramaBuilds...)
	var topics []string
	for _, tg := range targets {
		topics = append(topics, saramaTopic(tg))
	}
	broker, _ := testenv.StartKafka(t, topics...)
	for _, tg := range targets {
		t.Run(tg.Toolchain+"/"+tg.Variant.Name, func(t *testing.T) { saramaAsyncSpans(t, tg, broker) })
	}
}

func saramaAsyncSpans(t *testing.T, tg testenv.Target, broker string) {
	recv := testenv.StartReceiver(t)
	recv.KeepBytes()
	addr := freeAddr(t)
	topic := saramaTopic(tg)
	env := append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT="+recv.Endpoint, "OTEL_BSP_SCHEDULE_DELAY=200",
		"OTEL_SERVICE_NAME=saramaasync", "OTEL_RESOURCE_ATTRIBUTES=", "OTEL_TRACES_EXPORTER=", "OTEL_TRACES_SAMPLER=",
		"OTEL_PROPAGATORS=")
	r := start(t, opts{env: env, stdin: strings.NewReader("")}, launchBin(t), "--", tg.Path,
		"-addr", addr, "-broker", broker, "-topic", topic)
	firstRequest(t, addr, "/produce-async?key=k3y-first&value=s3cr3t-first")
	getOK(t, r, addr, "/produce-async?n=3&key=k3y-three&value=s3cr3t-three")
	const messages = 4

	producers := func(spans []testenv.Span) []testenv.Span {
		var out []testenv.Span
		for _, s := range spans {
			if s.Kind == tracepb.Span_SPAN_KIND_PRODUCER {
				out = append(out, s)
			}
		}
		return out
	}
	spans, ok := recv.WaitFor(30*time.Second, func(s []testenv.Span) bool { return len(producers(s)) >= messages })
	if !ok {
		t.Fatalf("want %d PRODUCER spans: %s\n%s", messages, spanList(spans), r.stderr)
	}
	time.Sleep(500 * time.Millisecond) // any span more, exported behind them
	sends := producers(recv.Spans())
	if len(sends) != messages {
		t.Errorf("%d PRODUCER spans, want %d: %s", len(sends), messages, spanList(sends))
	}
	offsets := map[int64]bool{}
	for _, s := range sends {
		off, ok := s.Attrs["messaging.kafka.offset"].(int64)
		if s.Name != "send "+topic || s.Attrs["messaging.destination.name"] != topic || s.Attrs["messaging.system"] != "kafka" ||
			s.Attrs["messaging.operation.type"] != "send" || s.Attrs["messaging.destination.partition.id"] != "0" || !ok ||
			s.Attrs["messaging.batch.message_count"] != nil || s.StatusCode == tracepb.Status_STATUS_CODE_ERROR {
			t.Errorf("PRODUCER span %s %v %v", s.Name, s.StatusCode, s.Attrs)
		}
		if s.ParentSpanID != "" {
			t.Errorf("PRODUCER span %s (offset %d): parent %s, want a root (sarama's goroutines send it)", s.Name, off, s.ParentSpanID)
		}
		if offsets[off] {
			t.Errorf("two PRODUCER spans for offset %d", off)
		}
		offsets[off] = true
	}
	for off := int64(0); off < messages; off++ {
		if !offsets[off] {
			t.Errorf("no PRODUCER span for offset %d: %s", off, spanList(sends))
		}
	}
	exported := recv.ExportedBytes()
	if bytes.Contains(exported, []byte("s3cr3t")) || bytes.Contains(exported, []byte("k3y-")) {
		t.Error("a message's key or value is in the bytes exported")
	}
	if said := launcherLines(r); said != "" {
		t.Errorf("the launcher said:\n%s", said)
	}
}
