package echo

import (
	"sync"

	"github.com/otel-go-launcher/otel-go-launcher/probes/kit"
)

// Library is echo for the probe kit: its probe finds the request's server span by
// its goroutine, and files the route for it.
func Library() kit.Library {
	return kit.RouterLibrary("echo", Spec, objectSpec, "route_echo", "route_enabled")
}

// objectSpec is the embedded BPF object, parsed once.
var objectSpec = sync.OnceValues(loadEcho)
