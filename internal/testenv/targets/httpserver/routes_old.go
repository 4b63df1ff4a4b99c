//go:build !go1.22

package main

import "net/http"

// Before Go 1.22 ServeMux has no method or wildcard patterns.
func addPatternRoutes(*http.ServeMux) {}
