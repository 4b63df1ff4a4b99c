//go:build go1.22

package main

import (
	"fmt"
	"net/http"
	"strconv"
)

// addPatternRoutes adds the routes that need Go 1.22's ServeMux patterns.
//
//	GET /items/{id}      200, "item ID"
//	/status/{code}       replies with that status
func addPatternRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "item %s\n", r.PathValue("id"))
	})
	mux.HandleFunc("/status/{code}", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.PathValue("code"))
		if err != nil || code < 100 || code > 999 {
			code = http.StatusBadRequest
		}
		w.WriteHeader(code)
	})
}
