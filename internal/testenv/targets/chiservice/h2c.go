//go:build go1.24

package main

import "net/http"

// plaintextHTTP2 lets s serve HTTP/2 without TLS (prior knowledge) beside HTTP/1.
func plaintextHTTP2(s *http.Server) {
	s.Protocols = new(http.Protocols)
	s.Protocols.SetHTTP1(true)
	s.Protocols.SetUnencryptedHTTP2(true)
}
