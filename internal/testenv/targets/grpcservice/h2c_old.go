//go:build !go1.24

package main

import (
	"log"
	"net/http"
)

// serveH2C: before Go 1.24, net/http has no plaintext HTTP/2; HTTP/1 only.
func serveH2C(addr string, h http.Handler) { log.Fatal(http.ListenAndServe(addr, h)) }

// h2cClient: before Go 1.24, net/http's transport has no plaintext HTTP/2; x/net's.
var h2cClient = xh2cClient
