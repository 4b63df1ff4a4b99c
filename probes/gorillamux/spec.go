// Package gorillamux names the server spans of github.com/gorilla/mux routers after
// the route they matched: "GET /users/{id}", with http.route, in spans and request
// metrics. It makes no span of its own: its probe hands the route's path template to
// net/http's server span of the request (bpf/include/routes.h). This file declares what
// the probe needs from a target binary.
package gorillamux

import (
	"github.com/otel-go-launcher/otel-go-launcher/offsets"
	"github.com/otel-go-launcher/otel-go-launcher/probes/nethttp"
)

// Module is the instrumented module, and the oldest release supported: the first
// whose router passes the matched route to requestWithRoute as a *Route.
const (
	Module     = "github.com/gorilla/mux"
	MinVersion = "v1.7.4"
)

// Where the probe attaches: the call (*Router).ServeHTTP makes to requestWithRoute(req,
// route) once its routes matched, before it calls the handler. Subrouters match inside
// their parent's Match: one call per request, with the innermost route.
const (
	serveHTTP        = "github.com/gorilla/mux.(*Router).ServeHTTP"
	requestWithRoute = "github.com/gorilla/mux.requestWithRoute"
	specName         = "gorilla/mux.route"
)

// The route's path template: Route embeds routeConf, whose regexp group holds the
// path's *routeRegexp (nil for a route without a path), whose template is the path as
// registered, a subrouter's prefix included ("/api/orders/{order}").
var (
	routeConf    = offsets.FieldRef{Struct: "github.com/gorilla/mux.Route", Field: "routeConf"}
	routeRegexps = offsets.FieldRef{Struct: "github.com/gorilla/mux.routeConf", Field: "regexp"}
	pathRegexp   = offsets.FieldRef{Struct: "github.com/gorilla/mux.routeRegexpGroup", Field: "path"}
	pathTemplate = offsets.FieldRef{Struct: "github.com/gorilla/mux.routeRegexp", Field: "template"}
)

// trackerProgram reaches the function and the types the probe reads: the offsets
// tracker builds it with each gorilla/mux release (it never runs).
const trackerProgram = `package main

import (
	"net/http"
	"net/http/httptest"

	"github.com/gorilla/mux"
)

func main() {
	r := mux.NewRouter()
	r.HandleFunc("/users/{id}", func(w http.ResponseWriter, req *http.Request) {
		t, _ := mux.CurrentRoute(req).GetPathTemplate()
		w.Write([]byte(t))
	})
	r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/users/1", nil))
}
`

// Spec: one hit per matched request, at the call site.
var Spec = offsets.Spec{
	Name:       specName,
	Module:     Module,
	MinVersion: MinVersion,
	// Only where a net/http server makes the spans it names.
	Functions: []offsets.FuncSpec{{Symbols: []string{serveHTTP}, Calls: []string{requestWithRoute}, Needs: nethttp.ServerFunctions}},
	Fields: []offsets.FieldSpec{
		{FieldRef: routeConf},
		{FieldRef: routeRegexps},
		{FieldRef: pathRegexp},
		{FieldRef: pathTemplate},
	},
	Program: trackerProgram,
}

// Specs are this package's probes.
var Specs = []offsets.Spec{Spec}
