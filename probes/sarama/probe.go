package sarama

import (
	"context"
	"reflect"
	"sync"
	"unsafe"

	"github.com/otel-go-launcher/otel-go-launcher/probes/kit"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// scope is the instrumentation scope of the library's spans and metrics, named after
// this package.
var scope = telemetry.NewScope(reflect.TypeFor[Probe]().PkgPath())

// Limits are what sarama's probes do not trace, whatever the host (`launch doctor`).
var Limits = []string{
	"sarama: produced messages carry no trace context from the launcher: it would have to add a traceparent record header, which means writing the app's memory (refused under kernel lockdown) or editing the Produce request on the socket, whose record batch CRC-32C covers the headers (docs/design.md, Kafka); a consumed message that already carries a traceparent (written by the app or another service) is joined",
	"sarama: AsyncProducer messages have spans only in a program that has no SyncProducer (sarama runs a SyncProducer's messages through the same functions, which would cost each send more than its two uprobe hits); they have no parent (sarama's goroutines send them), and a message that fails after its retries (returnError, inlined) has none",
	"sarama: a consumed message's span is its receipt (the fetch response's parse, in sarama's goroutine), not the app's processing: the app's own work for it is not under it",
}

// Library is sarama for the probe kit.
func Library() kit.Library {
	lib := kit.Library{
		Name:   "sarama",
		Specs:  Specs,
		Scope:  scope,
		Object: objectSpec,
		// The producer's sends: by the call's context, where the send takes one
		// (SendMessageContext), else by the goroutine, the request's handler's. A
		// consumer's spans take their parent from the message.
		Clients: map[string]kit.Lookup{ProducerSpec.Name: kit.ByContext | kit.ByGoroutine},
	}
	lib.Load = func(ctx context.Context, t kit.Target, reps kit.Reports, env kit.Env) (kit.Probe, error) {
		return load(ctx, &lib, t, reps, env)
	}
	lib.Check = func(ctx context.Context, env kit.Env) []kit.Finding { return kit.CheckFindings(&lib, Limits...) }
	return lib
}

// objectSpec is the embedded BPF object, parsed once.
var objectSpec = sync.OnceValues(loadSarama)

// Probe is the sarama instrumentation of one app.
type Probe struct {
	*kit.Object
	// Records cut short, completed (decode runs in one goroutine).
	send    saramaSendEvent
	receive saramaReceiveEvent
}

var _ kit.Probe = (*Probe)(nil)

func load(ctx context.Context, lib *kit.Library, t kit.Target, reps kit.Reports, env kit.Env) (kit.Probe, error) {
	p := &Probe{}
	spec := kit.ObjectSpec{
		Library: lib,
		Uprobes: []kit.Uprobe{
			{Spec: ProducerSpec.Name, Symbol: sendMessageContext, Entry: "send_message_entry", Return: "send_message_return"},
			{Spec: ProducerSpec.Name, Symbol: sendMessagesContext, Entry: "send_messages_entry", Return: "send_messages_return"},
			{Spec: ConsumerSpec.Name, Symbol: parseResponse, Entry: "parse_response_entry", Return: "parse_response_return"},
			{Spec: AsyncProducerSpec.Name, Symbol: partitionMessage, Entry: "partition_message_entry"},
			{Spec: AsyncProducerSpec.Name, Symbol: returnSuccesses, Entry: "return_successes_entry"},
			{Spec: AsyncProducerSpec.Name, Symbol: returnErrors, Entry: "return_errors_entry"},
		},
		Enable: map[string]string{ProducerSpec.Name: "producer_enabled", ConsumerSpec.Name: "consumer_enabled", AsyncProducerSpec.Name: "async_enabled"},
		Decode: p.decode,
		// Sends waiting for the broker's acknowledgement when the app exits. Not the
		// AsyncProducer's messages: those that failed through returnError never end,
		// and would all be said open at the app's exit.
		InFlight: []kit.InFlight{{Map: "sends", Spec: ProducerSpec.Name, Span: p.openSendSpan}},
	}
	var err error
	if p.Object, err = kit.LoadObject(ctx, t, reps, env, spec); err != nil {
		return nil, err
	}
	return p, nil
}

// Configure also tells the programs which send functions the app has: those that take
// a context, or the older ones that do not (their arguments differ).
func (p *Probe) Configure(reps kit.Reports, inflight kit.Lookup) error {
	rep := reps[ProducerSpec.Name]
	_, msgCtx := rep.Uprobe(sendMessageContext)
	_, msgsCtx := rep.Uprobe(sendMessagesContext)
	return p.ConfigureWith(reps, inflight, map[string]uint64{
		"send_message_ctx":  boolValue(msgCtx),
		"send_messages_ctx": boolValue(msgsCtx),
	})
}

func boolValue(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// decode fills span from an event.
func (p *Probe) decode(raw []byte, span *telemetry.Span) bool {
	switch kit.RecordKind(raw) {
	case eventSend, eventAsyncSend:
		ev := kit.RecordPrefixAs(raw, &p.send, int(unsafe.Offsetof(p.send.Topic)))
		if ev == nil {
			return false
		}
		p.sendSpan(ev, span)
		return true
	case eventReceive:
		ev := kit.RecordPrefixAs(raw, &p.receive, int(unsafe.Offsetof(p.receive.Topic)))
		if ev == nil {
			return false
		}
		receiveSpan(ev, span)
		return true
	}
	return false
}

// openSendSpan fills span from a send still waiting for its acknowledgement: no error
// known. The map holds the whole record: nothing to complete.
func (p *Probe) openSendSpan(value []byte, span *telemetry.Span) bool {
	ev := kit.RecordAs[saramaSendEvent](value)
	if ev == nil || ev.Kind != eventSend {
		return false
	}
	p.sendSpan(ev, span)
	return true
}

// The C program's event kinds.
const (
	eventSend      = 1
	eventReceive   = 2
	eventAsyncSend = 3 // an AsyncProducer message's, in a send's record
)
