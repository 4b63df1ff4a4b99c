//go:build go1.24

package main

import (
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
)

// addH2CRoutes adds, with Go 1.24's unencrypted HTTP/2:
//
//	/rp2/PATH     httputil's ReverseProxy to $UPSTREAM/PATH over plaintext HTTP/2
//	              (prior knowledge): the request goes on with its headers
func addH2CRoutes(mux *http.ServeMux) {
	upstream := os.Getenv("UPSTREAM")
	u, err := url.Parse(upstream)
	if err != nil || upstream == "" {
		return
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{Protocols: &p}
	mux.Handle("/rp2/", http.StripPrefix("/rp2", rp))
}

// serve serves on addr: HTTP/1, and plaintext HTTP/2 too with HTTPSERVER_H2C=1.
func serve(addr string, h http.Handler) error {
	s := &http.Server{Addr: addr, Handler: h}
	if os.Getenv("HTTPSERVER_H2C") != "" {
		var p http.Protocols
		p.SetHTTP1(true)
		p.SetUnencryptedHTTP2(true)
		s.Protocols = &p
	}
	return s.ListenAndServe()
}
