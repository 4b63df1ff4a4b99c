package echo

import (
	"context"
	"sync"

	"github.com/otel-go-launcher/otel-go-launcher/probes/kit"
)

// Library is echo for the probe kit.
func Library() kit.Library {
	lib := kit.Library{
		Name:   "echo",
		Specs:  Specs,
		Object: objectSpec,
		// It finds the request's server span by its goroutine, and files the route
		// for it.
		Clients: map[string]kit.Lookup{Spec.Name: kit.ByGoroutine | kit.Routes},
	}
	lib.Load = func(ctx context.Context, t kit.Target, reps kit.Reports, env kit.Env) (kit.Probe, error) {
		obj, err := kit.LoadObject(ctx, t, reps, env, kit.ObjectSpec{
			Library: &lib,
			Uprobes: []kit.Uprobe{{Spec: Spec.Name, Symbol: serveHTTP, Call: "route_echo"}},
			Enable:  map[string]string{Spec.Name: "route_enabled"},
		})
		if err != nil {
			return nil, err
		}
		return obj, nil
	}
	lib.Check = func(ctx context.Context, env kit.Env) []kit.Finding { return kit.CheckFindings(&lib) }
	return lib
}

// objectSpec is the embedded BPF object, parsed once.
var objectSpec = sync.OnceValues(loadEcho)
