// Command hello is a small HTTP service to run under launch: GET /hello/{name}, and
// GET /greet/{name}, which asks /hello/{name} over HTTP (of itself, or of -upstream) -
// one trace: the greet server span, its client span, the hello server span.
// It shuts down gracefully on SIGTERM, so `docker stop` ends it with exit code 0.
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
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	upstream := flag.String("upstream", "", "base URL /greet calls (default: this service)")
	flag.Parse()
	if *upstream == "" {
		*upstream = "http://" + *addr
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello/{name}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello, %s\n", r.PathValue("name"))
	})
	mux.HandleFunc("GET /greet/{name}", func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), "GET", *upstream+"/hello/"+r.PathValue("name"), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Write([]byte("greeting: "))
		io.Copy(w, resp.Body)
	})
	srv := &http.Server{Addr: *addr, Handler: mux}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		log.Printf("hello: %v, shutting down", context.Cause(ctx))
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	log.Printf("hello: pid %d listening on %s", os.Getpid(), *addr)
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
