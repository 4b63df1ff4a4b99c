package kit

import (
	"context"

	"github.com/cilium/ebpf"

	"github.com/otel-go-launcher/otel-go-launcher/offsets"
)

// RouterLibrary is a router's library: one spec, whose one probe (program, at the
// call site the spec's function names) finds the request's server span by its
// goroutine and files the route the router matched for it (routes.h). It makes no
// span of its own; enabled is its program's switch.
func RouterLibrary(name string, spec offsets.Spec, object func() (*ebpf.CollectionSpec, error), program, enabled string) Library {
	lib := Library{
		Name:    name,
		Specs:   []offsets.Spec{spec},
		Object:  object,
		Clients: map[string]Lookup{spec.Name: ByGoroutine | Routes},
	}
	lib.Load = func(ctx context.Context, t Target, reps Reports, env Env) (Probe, error) {
		obj, err := LoadObject(ctx, t, reps, env, ObjectSpec{
			Library: &lib,
			Uprobes: []Uprobe{{Spec: spec.Name, Symbol: spec.Functions[0].Symbols[0], Call: program}},
			Enable:  map[string]string{spec.Name: enabled},
		})
		if err != nil {
			return nil, err // not a nil *Object in a Probe
		}
		return obj, nil
	}
	lib.Check = func(ctx context.Context, env Env) []Finding { return CheckFindings(&lib) }
	return lib
}
