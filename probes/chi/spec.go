// Package chi names the server spans of github.com/go-chi/chi/v5 routers after the
// route they matched: "GET /users/{id}", with http.route, in spans and request metrics.
// It makes no span of its own: its probe hands the template to net/http's server span
// of the request (bpf/include/routes.h). This file declares what the probe needs from
// a target binary.
package chi

import (
	"github.com/otel-go-launcher/otel-go-launcher/offsets"
	"github.com/otel-go-launcher/otel-go-launcher/probes/nethttp"
)

// Module is the instrumented module, and the oldest release supported.
const (
	Module     = "github.com/go-chi/chi/v5"
	MinVersion = "v5.0.0"
)

// Where the probe attaches: the call a router's ServeHTTP makes to sync.(*Pool).Put
// to give back the request's routing context, once the handler has returned. Every v5
// release makes it, once per request, in the router the server called: a router
// mounted in it runs without (it finds the context there already).
const (
	serveHTTP = "github.com/go-chi/chi/v5.(*Mux).ServeHTTP"
	poolPut   = "sync.(*Pool).Put"
	specName  = "chi.route"
)

// routePatterns are the patterns the request matched, one per router on its way.
var routePatterns = offsets.FieldRef{Struct: "github.com/go-chi/chi/v5.Context", Field: "RoutePatterns"}

// trackerProgram reaches the function and the type the probe reads: the offsets
// tracker builds it with each chi release (it never runs).
const trackerProgram = `package main

import (
	"net/http"
	"net/http/httptest"

	"github.com/go-chi/chi/v5"
)

func main() {
	r := chi.NewRouter()
	r.Get("/users/{id}", func(w http.ResponseWriter, req *http.Request) {
		w.Write([]byte(chi.RouteContext(req.Context()).RoutePattern()))
	})
	r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/users/1", nil))
}
`

// Spec: one hit per request, at the call site.
var Spec = offsets.Spec{
	Name:       specName,
	Module:     Module,
	MinVersion: MinVersion,
	// Only where a net/http server makes the spans it names.
	Functions: []offsets.FuncSpec{{Symbols: []string{serveHTTP}, Calls: []string{poolPut}, Needs: nethttp.ServerFunctions}},
	Fields:    []offsets.FieldSpec{{FieldRef: routePatterns}},
	Program:   trackerProgram,
}

// Specs are this package's probes.
var Specs = []offsets.Spec{Spec}
