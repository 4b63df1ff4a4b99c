package kafkago

import (
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/otel-go-launcher/otel-go-launcher/probes/kit"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// The operations, as the messaging conventions name them.
const (
	operationSend    = "send"
	operationReceive = "receive"
)

// messagingSpan fills span from an event, following the messaging conventions: a
// PRODUCER span "send <topic>" per produce call, with the count of a batch; a CONSUMER
// span "receive <topic>" per message, with its partition, offset and the reader's
// consumer group. A produce call whose messages go to several topics names none.
func (p *Probe) messagingSpan(ev *kafkagoKafkaEvent, span *telemetry.Span) {
	attrs := span.Attributes[:0] // the pipeline is done with the last span's
	*span = telemetry.Span{
		TraceID: ev.Sc.TraceId,
		SpanID:  ev.Sc.SpanId,
		Start:   ev.StartNs,
		End:     ev.EndNs,
	}
	attrs = append(attrs, semconv.MessagingSystemKafka)
	topic := ""
	if ev.TopicsDiffer == 0 {
		topic = string(ev.Topic[:min(int(ev.TopicLen), len(ev.Topic))])
	}
	operation := operationSend
	if ev.Kind == eventConsume {
		operation = operationReceive
		span.Kind = trace.SpanKindConsumer
		attrs = append(attrs, semconv.MessagingOperationTypeReceive)
	} else {
		span.Kind = trace.SpanKindProducer
		attrs = append(attrs, semconv.MessagingOperationTypeSend)
	}
	attrs = append(attrs, semconv.MessagingOperationName(operation))
	span.Name = operation
	if topic != "" {
		span.Name = operation + " " + topic
		attrs = append(attrs, semconv.MessagingDestinationName(topic))
	}
	if ev.Kind == eventConsume {
		if ev.Partition >= 0 {
			attrs = append(attrs, semconv.MessagingDestinationPartitionID(strconv.FormatInt(ev.Partition, 10)))
		}
		if ev.Offset >= 0 {
			attrs = append(attrs, semconv.MessagingKafkaOffset(int(ev.Offset)))
		}
		if group := string(ev.Group[:min(int(ev.GroupLen), len(ev.Group))]); group != "" {
			attrs = append(attrs, semconv.MessagingConsumerGroupName(group))
		}
	} else if ev.Count > 1 { // the conventions' batches: one message is none
		attrs = append(attrs, semconv.MessagingBatchMessageCount(int(ev.Count)))
	}
	if ev.ErrorType != 0 {
		attrs = p.appendError(attrs, span, ev)
	}
	span.Attributes = attrs
	span.Parent = kit.ClientParent(ev.HasParent, ev.Sc.TraceId, ev.ParentSpanId, ev.TraceFlags)
	if ev.RemoteParent != 0 && span.Parent.IsValid() {
		// The traceparent header of the message, written by its producer.
		span.Parent = span.Parent.WithRemote(true)
	}
}

// appendError sets the span's error: the Go type of the error WriteMessages returned
// (kafka.WriteErrors, kafka.Error, context.deadlineExceededError...). Its text, which
// may quote the app's data, is never read.
func (p *Probe) appendError(attrs []attribute.KeyValue, span *telemetry.Span, ev *kafkagoKafkaEvent) []attribute.KeyValue {
	errType := p.TypeName(ev.ErrorType)
	if errType == "" {
		errType = "_OTHER"
	}
	span.Status = codes.Error
	return append(attrs, semconv.ErrorTypeKey.String(errType))
}
