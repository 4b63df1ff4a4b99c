package kafkago

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

// noInjection is the doctor's limit: what the launcher does not do for produced messages.
const noInjection = "kafka-go: produced messages carry no trace context from the launcher (a header would change " +
	"the record batch's lengths and CRC-32C, and the launcher writes no app memory under lockdown; see docs/design.md, " +
	"Kafka): a consumed message joins the producer's trace only when the app wrote a traceparent header itself"

// Library is kafka-go for the probe kit.
func Library() kit.Library {
	lib := kit.Library{
		Name:   "kafka-go",
		Specs:  Specs,
		Scope:  scope,
		Object: objectSpec,
		// A produce call's parent: by its context first; by the goroutine for a call
		// made with a context not derived from the request's. A consumed message's
		// span, without a traceparent of its own, looks the same way; and it registers
		// by goroutine, for the calls made while the message is handled.
		Clients: map[string]kit.Lookup{Spec.Name: kit.ByContext | kit.ByGoroutine},
	}
	lib.Load = func(ctx context.Context, t kit.Target, reps kit.Reports, env kit.Env) (kit.Probe, error) {
		return load(ctx, &lib, t, reps, env)
	}
	lib.Check = func(ctx context.Context, env kit.Env) []kit.Finding { return kit.CheckFindings(&lib, noInjection) }
	return lib
}

// objectSpec is the embedded BPF object, parsed once.
var objectSpec = sync.OnceValues(loadKafkago)

// Probe is the kafka-go instrumentation of one app.
type Probe struct {
	*kit.Object
	event kafkagoKafkaEvent // a record cut short, completed (decode runs in one goroutine)
}

var _ kit.Probe = (*Probe)(nil)

func load(ctx context.Context, lib *kit.Library, t kit.Target, reps kit.Reports, env kit.Env) (kit.Probe, error) {
	p := &Probe{}
	spec := kit.ObjectSpec{
		Library: lib,
		Uprobes: []kit.Uprobe{
			{Spec: Spec.Name, Symbol: writeMessages, Entry: "write_entry", Return: "write_return"},
			{Spec: Spec.Name, Symbol: fetchMessage, Entry: "fetch_entry", Return: "fetch_return"},
		},
		Enable: map[string]string{Spec.Name: "kafka_enabled"},
		Decode: p.decode,
		// Produce calls waiting for the broker's acknowledgement when the app exits. A
		// FetchMessage in flight has no message yet: no span.
		InFlight: []kit.InFlight{{Map: "produces", Spec: Spec.Name, Span: p.openProduceSpan}},
	}
	var err error
	if p.Object, err = kit.LoadObject(ctx, t, reps, env, spec); err != nil {
		return nil, err
	}
	return p, nil
}

// decode fills span from an event.
func (p *Probe) decode(raw []byte, span *telemetry.Span) bool {
	if k := kit.RecordKind(raw); k != eventProduce && k != eventConsume {
		return false
	}
	ev := kit.RecordPrefixAs(raw, &p.event, int(unsafe.Offsetof(p.event.Topic)))
	if ev == nil {
		return false
	}
	p.messagingSpan(ev, span)
	return true
}

// openProduceSpan fills span from a produce call still in flight: no error known. The
// map holds the whole record: nothing to complete.
func (p *Probe) openProduceSpan(value []byte, span *telemetry.Span) bool {
	ev := kit.RecordAs[kafkagoKafkaEvent](value)
	if ev == nil || ev.Kind != eventProduce {
		return false
	}
	p.messagingSpan(ev, span)
	return true
}

// The C program's event kinds.
const (
	eventProduce = 1
	eventConsume = 2
)
