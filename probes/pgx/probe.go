package pgx

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

// Library is pgx for the probe kit.
func Library() kit.Library {
	lib := kit.Library{
		Name:   "pgx",
		Specs:  Specs,
		Scope:  scope,
		Object: objectSpec,
		// By the call's context first; by the goroutine for a query made with a
		// context not derived from the request's (context.Background()) in the
		// handler's goroutine.
		Clients: map[string]kit.Lookup{Spec.Name: kit.ByContext | kit.ByGoroutine},
	}
	lib.Load = func(ctx context.Context, t kit.Target, reps kit.Reports, env kit.Env) (kit.Probe, error) {
		return load(ctx, &lib, t, reps, env)
	}
	lib.Check = func(ctx context.Context, env kit.Env) []kit.Finding {
		return kit.CheckFindings(&lib)
	}
	return lib
}

// objectSpec is the embedded BPF object, parsed once.
var objectSpec = sync.OnceValues(loadPgx)

// Probe is the pgx instrumentation of one app.
type Probe struct {
	*kit.Object
	event pgxPgxEvent        // a record cut short, completed (decode runs in one goroutine)
	types *kit.TypeVariables // the C program's type_* variables
}

// typeVariables are the C program's type_* variables, by the struct whose pointer
// type each is.
var typeVariables = map[string]string{
	tcpConnType:      "type_net_TCPConn",
	tcpAddrType:      "type_net_TCPAddr",
	pgErrorType:      "type_pgconn_PgError",
	prepareErrorType: "type_pgconn_PrepareError",
}

var _ kit.Probe = (*Probe)(nil)

func load(ctx context.Context, lib *kit.Library, t kit.Target, reps kit.Reports, env kit.Env) (kit.Probe, error) {
	p := &Probe{}
	spec := kit.ObjectSpec{
		Library: lib,
		Uprobes: []kit.Uprobe{
			{Spec: Spec.Name, Symbol: connExec, Entry: "exec_entry", Return: "exec_return"},
			{Spec: Spec.Name, Symbol: connQuery, Entry: "query_entry", Return: "query_return"},
			{Spec: Spec.Name, Symbol: connCopyFrom, Entry: "copy_entry", Return: "copy_return"},
			{Spec: Spec.Name, Symbol: connSendBatch, Entry: "batch_entry", Return: "batch_return"},
		},
		Enable: map[string]string{Spec.Name: "pgx_enabled"},
		Decode: p.decode,
		// Operations waiting for the server's answer when the app exits.
		InFlight: []kit.InFlight{{Map: "operations", Spec: Spec.Name, Span: p.openOperationSpan}},
	}
	var err error
	if p.Object, err = kit.LoadObject(ctx, t, reps, env, spec); err != nil {
		return nil, err
	}
	p.types = p.TypeVariables(typeVariables)
	return p, nil
}

// Configure also sets the types' addresses, where they are known before the app runs
// (it is not position-independent).
func (p *Probe) Configure(reps kit.Reports, inflight kit.Lookup) error {
	return p.ConfigureWith(reps, inflight, p.types.Values())
}

// decode fills span from an event.
func (p *Probe) decode(raw []byte, span *telemetry.Span) bool {
	if kit.RecordKind(raw) != eventOperation {
		return false
	}
	p.types.SetOnce() // its operations run: the app's exec is done
	ev := kit.RecordPrefixAs(raw, &p.event, int(unsafe.Offsetof(p.event.Query)))
	if ev == nil {
		return false
	}
	p.operationSpan(ev, span)
	return true
}

// openOperationSpan fills span from an operation still waiting for the server's
// answer: no error known. The map holds the whole record: nothing to complete.
func (p *Probe) openOperationSpan(value []byte, span *telemetry.Span) bool {
	ev := kit.RecordAs[pgxPgxEvent](value)
	if ev == nil || ev.Kind != eventOperation {
		return false
	}
	p.operationSpan(ev, span)
	return true
}

// eventOperation is the C program's only event kind.
const eventOperation = 1
