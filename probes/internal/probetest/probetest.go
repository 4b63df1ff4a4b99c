// Package probetest is a library's probe for the tests only, built on the probe kit
// like any other: a span at the entry of main.work and main.workHere of the httpserver
// test program, whose parent is the server span of the request that called them - a
// span another library's BPF object (net/http's) made. It shows that the kit's
// in-flight spans cross BPF objects: how a database or gRPC client span will find the
// HTTP server span above it.
package probetest

import (
	"context"
	"reflect"
	"sync"

	"go.opentelemetry.io/otel/trace"

	"github.com/otel-go-launcher/otel-go-launcher/offsets"
	"github.com/otel-go-launcher/otel-go-launcher/probes/kit"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// The specs: one per function, the parent looked up two ways.
var (
	ByContext   = offsets.Spec{Name: "test.work", Module: "std", Functions: []offsets.FuncSpec{{Symbols: []string{"main.work"}}}}
	ByGoroutine = offsets.Spec{Name: "test.workHere", Module: "std", Functions: []offsets.FuncSpec{{Symbols: []string{"main.workHere"}}}}
)

var objectSpec = sync.OnceValues(loadProbetest)

// scope is the instrumentation scope of the test library's spans, named after this
// package.
var scope = telemetry.NewScope(reflect.TypeFor[probetestWorkEvent]().PkgPath())

// Library is the test library.
func Library() kit.Library {
	lib := kit.Library{
		Name:    "test",
		Scope:   scope,
		Specs:   []offsets.Spec{ByContext, ByGoroutine},
		Object:  objectSpec,
		Clients: map[string]kit.Lookup{ByContext.Name: kit.ByContext, ByGoroutine.Name: kit.ByGoroutine},
	}
	lib.Load = func(ctx context.Context, t kit.Target, reps kit.Reports, env kit.Env) (kit.Probe, error) {
		obj, err := kit.LoadObject(ctx, t, reps, env, kit.ObjectSpec{
			Library: &lib,
			Uprobes: []kit.Uprobe{
				{Spec: ByContext.Name, Symbol: "main.work", Entry: "work_by_context"},
				{Spec: ByGoroutine.Name, Symbol: "main.workHere", Entry: "work_by_goroutine"},
			},
			Enable: map[string]string{ByContext.Name: "by_context_enabled", ByGoroutine.Name: "by_goroutine_enabled"},
			Decode: decode,
		})
		if err != nil {
			return nil, err
		}
		return obj, nil
	}
	lib.Check = func(context.Context, kit.Env) []kit.Finding { return nil }
	return lib
}

// Span names, by how the parent was found.
const (
	NameByContext   = "work (parent by context)"
	NameByGoroutine = "work (parent by goroutine)"
)

func decode(raw []byte, span *telemetry.Span) bool {
	ev := kit.RecordAs[probetestWorkEvent](raw)
	if ev == nil || kit.RecordKind(raw) == 0 {
		return false
	}
	*span = telemetry.Span{TraceID: ev.Sc.TraceId, SpanID: ev.Sc.SpanId, Kind: trace.SpanKindClient, Name: NameByContext, Start: ev.Ns, End: ev.Ns}
	if ev.How == 2 {
		span.Name = NameByGoroutine
	}
	if ev.HasParent != 0 {
		span.Parent = trace.NewSpanContext(trace.SpanContextConfig{TraceID: ev.Sc.TraceId, SpanID: ev.ParentSpanId, TraceFlags: trace.FlagsSampled})
	}
	return true
}
