package chi

import (
	"sync"

	"github.com/otel-go-launcher/otel-go-launcher/probes/kit"
)

// Library is chi for the probe kit: its probe finds the request's server span by
// its goroutine, and files the route for it.
func Library() kit.Library {
	return kit.RouterLibrary("chi", Spec, objectSpec, "route_chi", "route_enabled")
}

// objectSpec is the embedded BPF object, parsed once.
var objectSpec = sync.OnceValues(loadChi)
