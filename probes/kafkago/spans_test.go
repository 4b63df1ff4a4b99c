package kafkago

import (
	"fmt"
	"testing"
	"unsafe"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// attrString is a span's attributes as key=value, in key order.
func attrString(span *telemetry.Span) string {
	set := attribute.NewSet(span.Attributes...)
	s := ""
	for _, kv := range set.ToSlice() {
		if s != "" {
			s += " "
		}
		s += fmt.Sprintf("%s=%s", kv.Key, kv.Value.Emit())
	}
	return s
}

func event(kind uint32, topic string) *kafkagoKafkaEvent {
	ev := &kafkagoKafkaEvent{Kind: kind, Partition: -1, Offset: -1, StartNs: 10, EndNs: 20}
	ev.TopicLen = uint32(copy(ev.Topic[:], topic))
	return ev
}

// Produce calls: "send <topic>", a batch's count from two messages, and no topic
// (nor in the name) for messages bound for several.
func TestProducerSpans(t *testing.T) {
	p := &Probe{}
	for _, c := range []struct {
		count       int64
		topic       string
		differ      uint8
		name, attrs string
	}{
		{1, "orders", 0, "send orders", "messaging.destination.name=orders messaging.operation.name=send messaging.operation.type=send messaging.system=kafka"},
		{3, "orders", 0, "send orders", "messaging.batch.message_count=3 messaging.destination.name=orders messaging.operation.name=send messaging.operation.type=send messaging.system=kafka"},
		{2, "orders", 1, "send", "messaging.batch.message_count=2 messaging.operation.name=send messaging.operation.type=send messaging.system=kafka"},
		{1, "", 0, "send", "messaging.operation.name=send messaging.operation.type=send messaging.system=kafka"},
	} {
		ev := event(eventProduce, c.topic)
		ev.Count, ev.TopicsDiffer = c.count, c.differ
		var span telemetry.Span
		p.messagingSpan(ev, &span)
		if span.Name != c.name || span.Kind != trace.SpanKindProducer || attrString(&span) != c.attrs || span.Status != codes.Unset {
			t.Errorf("%+v: span %q %v: %s", c, span.Name, span.Kind, attrString(&span))
		}
		if span.Parent.IsValid() || span.Start != 10 || span.End != 20 {
			t.Errorf("%+v: parent %v, %d-%d", c, span.Parent, span.Start, span.End)
		}
	}
}

// A produce call that failed: status Error and the error's Go type (unnamed here: the
// types are the app's, "_OTHER" without it).
func TestProducerError(t *testing.T) {
	p := &Probe{}
	ev := event(eventProduce, "orders")
	ev.Count, ev.ErrorType = 1, 0x1234
	var span telemetry.Span
	p.messagingSpan(ev, &span)
	set := attribute.NewSet(span.Attributes...)
	if v, _ := set.Value("error.type"); span.Status != codes.Error || v.AsString() != "_OTHER" {
		t.Errorf("span %v: %s", span.Status, attrString(&span))
	}
}

// A consumed message: "receive <topic>", partition as a string, offset, group; the
// producer's traceparent a remote parent; a parent found in the app a local one.
func TestConsumerSpans(t *testing.T) {
	p := &Probe{}
	ev := event(eventConsume, "orders")
	ev.Partition, ev.Offset = 2, 41
	ev.GroupLen = uint32(copy(ev.Group[:], "billing"))
	ev.HasParent, ev.RemoteParent, ev.TraceFlags = 1, 1, 1
	ev.Sc.TraceId = [16]uint8{1, 2}
	ev.ParentSpanId = [8]uint8{9}
	var span telemetry.Span
	p.messagingSpan(ev, &span)
	want := "messaging.consumer.group.name=billing messaging.destination.name=orders messaging.destination.partition.id=2 " +
		"messaging.kafka.offset=41 messaging.operation.name=receive messaging.operation.type=receive messaging.system=kafka"
	if span.Name != "receive orders" || span.Kind != trace.SpanKindConsumer || attrString(&span) != want {
		t.Errorf("span %q %v: %s", span.Name, span.Kind, attrString(&span))
	}
	if !span.Parent.IsRemote() || span.Parent.SpanID() != [8]byte{9} || span.Parent.TraceID() != [16]byte{1, 2} || !span.Parent.IsSampled() {
		t.Errorf("parent %v", span.Parent)
	}
	// Without a group (a Reader of one partition), from a parent in the app.
	ev.GroupLen, ev.RemoteParent = 0, 0
	p.messagingSpan(ev, &span)
	set := attribute.NewSet(span.Attributes...)
	if _, ok := set.Value("messaging.consumer.group.name"); ok || span.Parent.IsRemote() || !span.Parent.IsValid() {
		t.Errorf("span %v, parent %v", attrString(&span), span.Parent)
	}
	// The C program's unknowns (-1) say nothing.
	ev = event(eventConsume, "orders")
	p.messagingSpan(ev, &span)
	if s := attrString(&span); s != "messaging.destination.name=orders messaging.operation.name=receive messaging.operation.type=receive messaging.system=kafka" {
		t.Errorf("unknown partition and offset: %s", s)
	}
}

// Records: a cut one (the topic's unused bytes left out) completed, another kind's
// skipped; a produce call in flight at exit its span, a fetch's state none.
func TestDecode(t *testing.T) {
	p := &Probe{}
	ev := event(eventProduce, "orders")
	ev.Count = 1
	raw := unsafe.Slice((*byte)(unsafe.Pointer(ev)), unsafe.Sizeof(*ev))
	cut := raw[:unsafe.Offsetof(ev.Topic)+uintptr(ev.TopicLen)]
	var span telemetry.Span
	if !p.decode(cut, &span) || span.Name != "send orders" {
		t.Errorf("a cut record: %v %q", p.decode(cut, &span), span.Name)
	}
	other := append([]byte{}, raw...)
	other[0] = 9
	if p.decode(other, &span) {
		t.Error("a record of another kind: a span")
	}
	if !p.openProduceSpan(raw, &span) || span.Name != "send orders" {
		t.Errorf("a produce call in flight: %q", span.Name)
	}
	consume := event(eventConsume, "orders")
	if p.openProduceSpan(unsafe.Slice((*byte)(unsafe.Pointer(consume)), unsafe.Sizeof(*consume)), &span) {
		t.Error("an entry that is no produce call: a span")
	}
}
