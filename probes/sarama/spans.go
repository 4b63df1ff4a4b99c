package sarama

import (
	"strconv"

	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/otel-go-launcher/otel-go-launcher/probes/kit"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// Operation names, as the messaging conventions give Kafka's (the span name starts
// with one).
const (
	opSend    = "send"
	opReceive = "receive"
)

// sendSpan fills span from a send's event: a PRODUCER span named after the operation
// and the topic ("send orders"), or the operation alone for a batch of several
// topics; a batch's size when it is more than one message; a single message's
// partition and offset, which SendMessage returns; and on error the error's Go type.
func (p *Probe) sendSpan(ev *saramaSendEvent, span *telemetry.Span) {
	attrs := span.Attributes[:0] // the pipeline is done with the last span's
	*span = telemetry.Span{
		TraceID: ev.Sc.TraceId,
		SpanID:  ev.Sc.SpanId,
		Kind:    trace.SpanKindProducer,
		Name:    opSend,
		Start:   ev.StartNs,
		End:     ev.EndNs,
	}
	attrs = append(attrs, semconv.MessagingSystemKafka, semconv.MessagingOperationTypeSend, semconv.MessagingOperationName(opSend))
	if topic := ev.Topic[:min(int(ev.TopicLen), len(ev.Topic))]; ev.Mixed == 0 && len(topic) > 0 {
		span.Name = opSend + " " + string(topic)
		attrs = append(attrs, semconv.MessagingDestinationName(string(topic)))
	}
	if ev.Count > 1 { // the conventions' batches: one message is none
		attrs = append(attrs, semconv.MessagingBatchMessageCount(int(ev.Count)))
	}
	if ev.Batch == 0 && ev.ErrorType == 0 && ev.Partition >= 0 {
		attrs = append(attrs, semconv.MessagingDestinationPartitionID(strconv.Itoa(int(ev.Partition))))
		if ev.Offset >= 0 {
			attrs = append(attrs, semconv.MessagingKafkaOffset(int(ev.Offset)))
		}
	}
	if ev.ErrorType != 0 {
		errType := p.TypeName(ev.ErrorType)
		if errType == "" {
			errType = "_OTHER"
		}
		span.Status = codes.Error
		attrs = append(attrs, semconv.ErrorTypeKey.String(errType))
	}
	span.Attributes = attrs
	span.Parent = kit.ClientParent(ev.HasParent, ev.Sc.TraceId, ev.ParentSpanId, ev.TraceFlags)
}

// receiveSpan fills span from a consumed message's event: a CONSUMER span named after
// the operation and the topic ("receive orders"), with the message's partition and
// offset, whose parent is the traceparent the message carried (another process's
// span: remote), if it had a valid one.
func receiveSpan(ev *saramaReceiveEvent, span *telemetry.Span) {
	attrs := span.Attributes[:0]
	*span = telemetry.Span{
		TraceID: ev.Sc.TraceId,
		SpanID:  ev.Sc.SpanId,
		Kind:    trace.SpanKindConsumer,
		Name:    opReceive,
		Start:   ev.StartNs,
		End:     ev.EndNs,
	}
	attrs = append(attrs, semconv.MessagingSystemKafka, semconv.MessagingOperationTypeReceive, semconv.MessagingOperationName(opReceive))
	if topic := ev.Topic[:min(int(ev.TopicLen), len(ev.Topic))]; len(topic) > 0 {
		span.Name = opReceive + " " + string(topic)
		attrs = append(attrs, semconv.MessagingDestinationName(string(topic)))
	}
	if ev.Partition >= 0 {
		attrs = append(attrs, semconv.MessagingDestinationPartitionID(strconv.Itoa(int(ev.Partition))))
	}
	if ev.Offset >= 0 {
		attrs = append(attrs, semconv.MessagingKafkaOffset(int(ev.Offset)))
	}
	span.Attributes = attrs
	if ev.HasParent != 0 {
		span.Parent = trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: ev.Sc.TraceId, SpanID: ev.ParentSpanId, TraceFlags: trace.TraceFlags(ev.TraceFlags), Remote: true,
		})
	}
}
