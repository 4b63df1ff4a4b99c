//go:build go1.24

package main

import (
	"log"
	"net/http"
)

// serveH2C serves HTTP/1 and plaintext HTTP/2 (prior knowledge) on addr.
func serveH2C(addr string, h http.Handler) {
	srv := &http.Server{Addr: addr, Handler: h, Protocols: new(http.Protocols)}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	log.Fatal(srv.ListenAndServe())
}

// h2cClient speaks plaintext HTTP/2 (prior knowledge) with net/http's own transport.
var h2cClient = func() *http.Client {
	t := &http.Transport{Protocols: new(http.Protocols)}
	t.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: t}
}()
