// Command echoservice is an HTTP service routed by github.com/labstack/echo/v4, for
// the route probe's tests and benchmark. It serves the same Echo twice: on -addr as
// the server's handler, and on -muxaddr behind a ServeMux whose catch-all "/" hands it
// every path but /hello.
//
//	/users/:id             its ID
//	/api/orders/:order     from the group /api
//	/call/:id              GETs /users/:id of the same address with the request's
//	                       context, and answers with its reply
//	/                      "root"
//	/chi/users/{id}        a chi router's, under echo's /chi/*: routers nested
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
	"github.com/labstack/echo/v4"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address of the router")
	muxAddr := flag.String("muxaddr", "", "listen address of a ServeMux around the router (\"\": none)")
	flag.Parse()

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.GET("/users/:id", func(c echo.Context) error { return c.String(200, "user "+c.Param("id")+"\n") })
	api := e.Group("/api")
	api.GET("/orders/:order", func(c echo.Context) error { return c.String(200, "order "+c.Param("order")+"\n") })
	e.GET("/call/:id", func(c echo.Context) error {
		call(c.Response(), c.Request(), "http://"+c.Request().Host+"/users/"+c.Param("id"))
		return nil
	})
	e.GET("/", func(c echo.Context) error { return c.String(200, "root\n") })
	// A chi router under echo's /chi/*: chi's route is filed when its ServeHTTP ends,
	// echo's after, higher up the stack; the route is chi's, the deeper router's.
	inner := chi.NewRouter()
	inner.Get("/chi/users/{id}", func(w http.ResponseWriter, req *http.Request) {
		fmt.Fprintln(w, "chi user", chi.URLParam(req, "id"))
	})
	e.Any("/chi/*", echo.WrapHandler(inner))
	serve(*addr, *muxAddr, e)
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
