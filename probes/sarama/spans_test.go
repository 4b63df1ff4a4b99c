package sarama

import (
	"strings"
	"testing"
	"unsafe"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// attrString is a span's attributes as "key=value" sorted, for comparison.
func attrString(span *telemetry.Span) string {
	set := attribute.NewSet(span.Attributes...)
	var parts []string
	for it := set.Iter(); it.Next(); {
		kv := it.Attribute()
		parts = append(parts, string(kv.Key)+"="+kv.Value.Emit())
	}
	return strings.Join(parts, " ")
}

func record[T any](ev *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(ev)), unsafe.Sizeof(*ev))
}

// A send's span: the topic in the name and as destination, a batch's size only for
// more than one message, a single message's partition and offset only without an
// error, no destination for a batch of several topics.
func TestSendSpans(t *testing.T) {
	p := &Probe{}
	const common = "messaging.operation.name=send messaging.operation.type=send messaging.system=kafka"
	for _, c := range []struct {
		name string
		ev   saramaSendEvent
		span string
		want string
	}{
		{"one message", saramaSendEvent{Count: 1, Partition: 2, Offset: 41}, "send orders",
			"messaging.destination.name=orders messaging.destination.partition.id=2 messaging.kafka.offset=41 " + common},
		{"a batch", saramaSendEvent{Batch: 1, Count: 3, Partition: -1, Offset: -1}, "send orders",
			"messaging.batch.message_count=3 messaging.destination.name=orders " + common},
		{"a batch of one", saramaSendEvent{Batch: 1, Count: 1, Partition: -1, Offset: -1}, "send orders",
			"messaging.destination.name=orders " + common},
		{"a batch of several topics", saramaSendEvent{Batch: 1, Count: 2, Mixed: 1, Partition: -1, Offset: -1}, "send",
			"messaging.batch.message_count=2 " + common},
		{"no offset (no acks)", saramaSendEvent{Count: 1, Partition: 0, Offset: -1}, "send orders",
			"messaging.destination.name=orders messaging.destination.partition.id=0 " + common},
	} {
		ev := c.ev
		ev.Kind = eventSend
		ev.TopicLen = uint32(copy(ev.Topic[:], "orders"))
		var span telemetry.Span
		if !p.decode(record(&ev), &span) {
			t.Fatalf("%s: no span", c.name)
		}
		if got := attrString(&span); span.Name != c.span || got != c.want || span.Kind != trace.SpanKindProducer || span.Status != codes.Unset {
			t.Errorf("%s: span %q %s %v\n got attributes %s\nwant attributes %s", c.name, span.Name, span.Kind, span.Status, got, c.want)
		}
	}
}

// A send that failed: status Error, the error's type (unnamed without the app: _OTHER),
// and no partition or offset, which SendMessage returns as -1 then.
func TestSendError(t *testing.T) {
	p := &Probe{}
	ev := saramaSendEvent{Kind: eventSend, Count: 1, ErrorType: 0x1234, Partition: -1, Offset: -1}
	ev.TopicLen = uint32(copy(ev.Topic[:], "orders"))
	var span telemetry.Span
	p.decode(record(&ev), &span)
	attrs := attribute.NewSet(span.Attributes...)
	errType, _ := attrs.Value("error.type")
	_, part := attrs.Value("messaging.destination.partition.id")
	if span.Status != codes.Error || errType.AsString() != "_OTHER" || part {
		t.Errorf("span %q %v %v", span.Name, span.Status, span.Attributes)
	}
}

// A record cut after the topic's bytes (the C program sends only those) is completed.
func TestSendRecordCut(t *testing.T) {
	p := &Probe{}
	ev := saramaSendEvent{Kind: eventSend, Count: 1, Partition: 1, Offset: 7, HasParent: 1, ParentSpanId: [8]uint8{9}}
	ev.TopicLen = uint32(copy(ev.Topic[:], "payments"))
	raw := record(&ev)[:unsafe.Offsetof(ev.Topic)+uintptr(ev.TopicLen)]
	var span telemetry.Span
	if !p.decode(raw, &span) || span.Name != "send payments" || span.Parent.SpanID() != [8]byte{9} {
		t.Errorf("span %q parent %v", span.Name, span.Parent)
	}
}

// A consumed message's span: receive, its topic, partition and offset; the traceparent
// it carried as remote parent, or none.
func TestReceiveSpans(t *testing.T) {
	p := &Probe{}
	for _, carried := range []bool{false, true} {
		ev := saramaReceiveEvent{Kind: eventReceive, Partition: 3, Offset: 1200, StartNs: 5, EndNs: 9}
		ev.Sc.TraceId = [16]uint8{0x0a, 0xf7}
		ev.Sc.SpanId = [8]uint8{1}
		if carried {
			ev.HasParent, ev.TraceFlags, ev.ParentSpanId = 1, 1, [8]uint8{0xb7, 0xad}
		}
		ev.TopicLen = uint32(copy(ev.Topic[:], "orders"))
		var span telemetry.Span
		if !p.decode(record(&ev)[:unsafe.Offsetof(ev.Topic)+6], &span) {
			t.Fatal("no span")
		}
		want := "messaging.destination.name=orders messaging.destination.partition.id=3 messaging.kafka.offset=1200 messaging.operation.name=receive messaging.operation.type=receive messaging.system=kafka"
		if got := attrString(&span); span.Name != "receive orders" || got != want || span.Kind != trace.SpanKindConsumer || span.Start != 5 || span.End != 9 {
			t.Errorf("carried %v: span %q %s %s", carried, span.Name, span.Kind, got)
		}
		if span.Parent.IsValid() != carried {
			t.Errorf("carried %v: parent %v", carried, span.Parent)
		}
		if carried && (!span.Parent.IsRemote() || span.Parent.SpanID() != [8]byte{0xb7, 0xad} || span.Parent.TraceID() != span.TraceID || !span.Parent.IsSampled()) {
			t.Errorf("parent %v of a span in trace %v", span.Parent, span.TraceID)
		}
	}
}

// A send still waiting for its acknowledgement when the app exits: its span, no error;
// an entry that is no send: none.
func TestOpenSendSpan(t *testing.T) {
	p := &Probe{}
	ev := saramaSendEvent{Kind: eventSend, Count: 1, StartNs: 100, Partition: -1, Offset: -1}
	ev.TopicLen = uint32(copy(ev.Topic[:], "orders"))
	var span telemetry.Span
	if !p.openSendSpan(record(&ev), &span) || span.Name != "send orders" || span.Start != 100 || span.Status != codes.Unset {
		t.Errorf("span %q %v", span.Name, span.Attributes)
	}
	if p.openSendSpan(make([]byte, unsafe.Sizeof(ev)), &span) {
		t.Error("an entry that is no send: a span")
	}
}

// An AsyncProducer message's span: a send's, of one message, with no parent.
func TestAsyncSendSpan(t *testing.T) {
	p := &Probe{}
	ev := saramaSendEvent{Kind: eventAsyncSend, Count: 1, Partition: 0, Offset: 12}
	ev.TopicLen = uint32(copy(ev.Topic[:], "orders"))
	var span telemetry.Span
	if !p.decode(record(&ev), &span) {
		t.Fatal("no span")
	}
	want := "messaging.destination.name=orders messaging.destination.partition.id=0 messaging.kafka.offset=12 messaging.operation.name=send messaging.operation.type=send messaging.system=kafka"
	if got := attrString(&span); span.Name != "send orders" || got != want || span.Kind != trace.SpanKindProducer || span.Parent.IsValid() {
		t.Errorf("span %q %s %s parent %v", span.Name, span.Kind, got, span.Parent)
	}
}
