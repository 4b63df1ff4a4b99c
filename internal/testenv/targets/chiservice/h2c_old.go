//go:build !go1.24

package main

import "net/http"

// plaintextHTTP2: before Go 1.24 net/http has no plaintext HTTP/2; HTTP/1 only.
func plaintextHTTP2(s *http.Server) {}
