package main

import (
	"io"
	"net/http"
	"os"
	"strconv"
	"time"
)

// addHijackRoutes adds the two ways an HTTP/1 request ends without net/http finishing
// its response:
//
//	/hijack?d=D   take the connection (as a WebSocket upgrade does), answer 200 on it
//	              by hand, then, with $UPSTREAM, GET $UPSTREAM/echo with the request's
//	              context; close the connection and return after D
//	/panic        panic: net/http recovers and closes the connection unanswered
func addHijackRoutes(mux *http.ServeMux) {
	upstream := os.Getenv("UPSTREAM")
	mux.HandleFunc("/hijack", func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer conn.Close()
		buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
		buf.Flush()
		if upstream != "" {
			req, _ := http.NewRequestWithContext(r.Context(), "GET", upstream+"/echo", nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
		d, _ := time.ParseDuration(r.URL.Query().Get("d"))
		time.Sleep(d)
	})
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) {
		panic("/panic: " + strconv.Quote(r.URL.RawQuery))
	})
}
