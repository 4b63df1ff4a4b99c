// Package nethttp instruments net/http: server spans now, client spans later. This
// file declares what the probes need from a target binary.
package nethttp

import "github.com/otel-go-launcher/otel-go-launcher/offsets"

func field(s, f string) offsets.FieldSpec {
	return offsets.FieldSpec{FieldRef: offsets.FieldRef{Struct: s, Field: f}}
}

// ServerSpec: one uprobe at the entry of serverHandler.ServeHTTP, the one function every
// request to a net/http server passes through, and one at each of its RETs - two hits
// per request. At entry the request is complete (method, URL, headers); at return the
// handler has run, so the route pattern is set and the response status written.
var ServerSpec = offsets.Spec{
	Name:   "net/http.server",
	Module: "std",
	Functions: []offsets.FuncSpec{
		{Symbols: []string{"net/http.serverHandler.ServeHTTP"}, Returns: true},
	},
	Fields: []offsets.FieldSpec{
		field("net/http.Request", "Method"),
		field("net/http.Request", "URL"),
		field("net/http.Request", "ProtoMajor"),
		field("net/http.Request", "ProtoMinor"),
		field("net/http.Request", "Header"),
		field("net/http.Request", "Host"),
		field("net/http.Request", "RemoteAddr"),
		{FieldRef: offsets.FieldRef{Struct: "net/http.Request", Field: "pat"}, Since: "go1.22", Optional: true},
		{FieldRef: offsets.FieldRef{Struct: "net/http.Request", Field: "Pattern"}, Since: "go1.23", Optional: true},
		{FieldRef: offsets.FieldRef{Struct: "net/http.pattern", Field: "str"}, Since: "go1.22", Optional: true},
		field("net/url.URL", "Path"),
		field("net/http.response", "status"),
	},
}
