//go:build !go1.24

package main

import "net/http"

// Before Go 1.24 net/http has no plaintext HTTP/2.
func addH2CRoutes(*http.ServeMux) {}

func serve(addr string, h http.Handler) error { return http.ListenAndServe(addr, h) }
