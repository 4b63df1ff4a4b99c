package goredis

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

// Library is go-redis for the probe kit.
func Library() kit.Library {
	lib := kit.Library{
		Name:   "go-redis",
		Specs:  Specs,
		Scope:  scope,
		Object: objectSpec,
		// By the call's context first; by the goroutine for a command made with a
		// context not derived from the request's (context.Background()) in the
		// handler's goroutine.
		Clients: map[string]kit.Lookup{Spec.Name: kit.ByContext | kit.ByGoroutine},
	}
	lib.Load = func(ctx context.Context, t kit.Target, reps kit.Reports, env kit.Env) (kit.Probe, error) {
		return load(ctx, &lib, t, reps, env)
	}
	lib.Check = func(ctx context.Context, env kit.Env) []kit.Finding { return kit.CheckFindings(&lib) }
	return lib
}

// objectSpec is the embedded BPF object, parsed once.
var objectSpec = sync.OnceValues(loadGoredis)

// Probe is the go-redis instrumentation of one app.
type Probe struct {
	*kit.Object
	event goredisRedisEvent // a record cut short, completed (decode runs in one goroutine)
}

var _ kit.Probe = (*Probe)(nil)

func load(ctx context.Context, lib *kit.Library, t kit.Target, reps kit.Reports, env kit.Env) (kit.Probe, error) {
	p := &Probe{}
	spec := kit.ObjectSpec{
		Library: lib,
		Uprobes: []kit.Uprobe{
			{Spec: Spec.Name, Symbol: process, Entry: "process_entry", Return: "operation_return"},
			{Spec: Spec.Name, Symbol: processPipeline, Entry: "pipeline_start", Return: "operation_return"},
			{Spec: Spec.Name, Symbol: processTxPipeline, Entry: "transaction_start", Return: "operation_return"},
		},
		Enable: map[string]string{Spec.Name: "redis_enabled"},
		Decode: p.decode,
		// Commands and pipelines waiting for their reply when the app exits (a
		// blocking BLPOP), nested ones included.
		InFlight: []kit.InFlight{{Map: "operations", Spec: Spec.Name, Span: p.openOperationSpan}},
	}
	var err error
	if p.Object, err = kit.LoadObject(ctx, t, reps, env, spec); err != nil {
		return nil, err
	}
	return p, nil
}

// decode fills span from an event.
func (p *Probe) decode(raw []byte, span *telemetry.Span) bool {
	if kit.RecordKind(raw) != eventOperation {
		return false
	}
	ev := kit.RecordPrefixAs(raw, &p.event, int(unsafe.Offsetof(p.event.Addr)))
	if ev == nil {
		return false
	}
	p.operationSpan(ev, span)
	return true
}

// openOperationSpan fills span from a command or pipeline still waiting for its reply:
// no error known. The map holds the whole record: nothing to complete.
func (p *Probe) openOperationSpan(value []byte, span *telemetry.Span) bool {
	ev := kit.RecordAs[goredisRedisEvent](value)
	if ev == nil || ev.Kind != eventOperation {
		return false
	}
	p.operationSpan(ev, span)
	return true
}

// eventOperation is the C program's only event kind.
const eventOperation = 1
