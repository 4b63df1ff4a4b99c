// Package echo names the server spans of github.com/labstack/echo/v4 servers after the
// route they matched: "GET /users/:id", with http.route, in spans and request metrics.
// It makes no span of its own: its probe hands the route to net/http's server span of
// the request (bpf/include/routes.h). This file declares what the probe needs from a
// target binary.
package echo

import (
	"github.com/otel-go-launcher/otel-go-launcher/offsets"
	"github.com/otel-go-launcher/otel-go-launcher/probes/nethttp"
)

// Module is the instrumented module, and the oldest release supported: before v4.10.2
// the router left the request's own path in the context when it matched no route,
// which as http.route would make a metric series of every path a scanner tries.
const (
	Module     = "github.com/labstack/echo/v4"
	MinVersion = "v4.10.2"
)

// Where the probe attaches: the call an Echo's ServeHTTP makes to sync.(*Pool).Put to
// give back the request's context once the handler chain has returned; every release
// makes it once per request.
const (
	serveHTTP = "github.com/labstack/echo/v4.(*Echo).ServeHTTP"
	poolPut   = "sync.(*Pool).Put"
	specName  = "echo.route"
)

// contextPath is the route the request matched, as registered ("/api/orders/:order"),
// "" when none did (what c.Path() returns).
var contextPath = offsets.FieldRef{Struct: "github.com/labstack/echo/v4.context", Field: "path"}

// trackerProgram reaches the function and the type the probe reads: the offsets
// tracker builds it with each echo release (it never runs).
const trackerProgram = `package main

import (
	"net/http/httptest"

	"github.com/labstack/echo/v4"
)

func main() {
	e := echo.New()
	e.GET("/users/:id", func(c echo.Context) error { return c.String(200, c.Path()) })
	e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/users/1", nil))
}
`

// Spec: one hit per request, at the call site.
var Spec = offsets.Spec{
	Name:       specName,
	Module:     Module,
	MinVersion: MinVersion,
	// Only where a net/http server makes the spans it names.
	Functions: []offsets.FuncSpec{{Symbols: []string{serveHTTP}, Calls: []string{poolPut}, Needs: nethttp.ServerFunctions}},
	Fields:    []offsets.FieldSpec{{FieldRef: contextPath}},
	Program:   trackerProgram,
}

// Specs are this package's probes.
var Specs = []offsets.Spec{Spec}
