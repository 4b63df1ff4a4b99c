//go:build go1.22

package main

import (
	"fmt"
	"net/http"
)

// addPatternRoutes adds the routes that need Go 1.22's ServeMux patterns.
func addPatternRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "item %s\n", r.PathValue("id"))
	})
}
