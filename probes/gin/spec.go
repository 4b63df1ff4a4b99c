// Package gin names the server spans of github.com/gin-gonic/gin engines after the
// route they matched: "GET /users/:id", with http.route, in spans and request metrics.
// It makes no span of its own: its probe hands the route to net/http's server span of
// the request (bpf/include/routes.h). This file declares what the probe needs from a
// target binary.
package gin

import (
	"github.com/otel-go-launcher/otel-go-launcher/offsets"
	"github.com/otel-go-launcher/otel-go-launcher/probes/nethttp"
)

// Module is the instrumented module, and the oldest release supported: the first
// whose Context keeps the matched route (FullPath).
const (
	Module     = "github.com/gin-gonic/gin"
	MinVersion = "v1.5.0"
)

// Where the probe attaches: the call an engine's ServeHTTP makes to sync.(*Pool).Put
// to give back the request's *Context once the handlers have returned; every release
// makes it once per request.
const (
	serveHTTP = "github.com/gin-gonic/gin.(*Engine).ServeHTTP"
	poolPut   = "sync.(*Pool).Put"
	specName  = "gin.route"
)

// fullPath is the route the request matched, as registered ("/api/orders/:order"); ""
// when none did.
var fullPath = offsets.FieldRef{Struct: "github.com/gin-gonic/gin.Context", Field: "fullPath"}

// trackerProgram reaches the function and the type the probe reads: the offsets
// tracker builds it with each gin release (it never runs).
const trackerProgram = `package main

import (
	"net/http/httptest"

	"github.com/gin-gonic/gin"
)

func main() {
	e := gin.New()
	e.GET("/users/:id", func(c *gin.Context) { c.String(200, c.FullPath()) })
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
	Fields:    []offsets.FieldSpec{{FieldRef: fullPath}},
	Program:   trackerProgram,
}

// Specs are this package's probes.
var Specs = []offsets.Spec{Spec}
