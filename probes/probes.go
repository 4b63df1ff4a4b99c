// Package probes lists the instrumentations. Adding a library is one package below
// this one and one line here.
package probes

import (
	"github.com/otel-go-launcher/otel-go-launcher/offsets"
	"github.com/otel-go-launcher/otel-go-launcher/probes/nethttp"
)

// Specs is what every probe needs from a target binary, in report order.
func Specs() []offsets.Spec {
	return []offsets.Spec{nethttp.ServerSpec}
}
