// Command chiservice is an HTTP service routed by github.com/go-chi/chi/v5, for the
// route probe's tests and benchmark. It serves the same router twice: on -addr as the
// server's handler (also over plaintext HTTP/2, built with Go 1.24 or later), and on
// -muxaddr behind a ServeMux whose catch-all "/" hands it every path but /hello.
//
//	/users/{id}            its ID
//	/api/orders/{order}    from a router mounted at /api
//	/call/{id}             GETs /users/{id} of the same address with the request's
//	                       context, and answers with its reply
//	/                      "root"
//	/hello (ServeMux)      "hello"
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-chi/chi/v5"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address of the router")
	muxAddr := flag.String("muxaddr", "", "listen address of a ServeMux around the router (\"\": none)")
	flag.Parse()

	r := chi.NewRouter()
	r.Get("/users/{id}", func(w http.ResponseWriter, req *http.Request) {
		fmt.Fprintln(w, "user", chi.URLParam(req, "id"))
	})
	r.Route("/api", func(api chi.Router) {
		api.Get("/orders/{order}", func(w http.ResponseWriter, req *http.Request) {
			fmt.Fprintln(w, "order", chi.URLParam(req, "order"))
		})
	})
	r.Get("/call/{id}", func(w http.ResponseWriter, req *http.Request) {
		call(w, req, "http://"+req.Host+"/users/"+chi.URLParam(req, "id"))
	})
	r.Get("/", func(w http.ResponseWriter, req *http.Request) { fmt.Fprintln(w, "root") })
	serve(*addr, *muxAddr, r)
}

// call GETs url with the request's context and answers with what it got.
func call(w http.ResponseWriter, req *http.Request, url string) {
	out, err := http.NewRequestWithContext(req.Context(), "GET", url, nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	resp, err := http.DefaultClient.Do(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

// serve serves router on addr and, behind a ServeMux, on muxAddr, until SIGTERM.
func serve(addr, muxAddr string, router http.Handler) {
	servers := []*http.Server{{Addr: addr, Handler: router}}
	plaintextHTTP2(servers[0])
	if muxAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/", router)
		mux.HandleFunc("/hello", func(w http.ResponseWriter, req *http.Request) { fmt.Fprintln(w, "hello") })
		servers = append(servers, &http.Server{Addr: muxAddr, Handler: mux})
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errs := make(chan error, len(servers))
	for _, s := range servers {
		go func() { errs <- s.ListenAndServe() }()
	}
	log.Printf("listening on %s (router), %q (ServeMux around it)", addr, muxAddr)
	select {
	case <-ctx.Done():
		for _, s := range servers {
			s.Shutdown(context.Background())
		}
	case err := <-errs:
		log.Fatal(err)
	}
}
