// Command frontend is the example stack's shop front: GET /order/{item} asks the
// backend (BACKEND_URL) whether the item is in stock, over HTTP with the request's
// context - so the launcher links the backend's span into the frontend's trace. It
// shuts down gracefully on SIGTERM (docker stop: exit 0).
package main

import (
	"context"
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
	addr := envOr("ADDR", ":8080")
	backend := envOr("BACKEND_URL", "http://backend:8081")
	client := &http.Client{Timeout: 5 * time.Second}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /order/{item}", func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), "GET", backend+"/stock/"+r.PathValue("item"), nil)
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, "backend: "+err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		stock, _ := io.ReadAll(resp.Body)
		fmt.Fprintf(w, "order for %s accepted; stock: %s", r.PathValue("item"), stock)
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		log.Printf("frontend: shutting down")
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	log.Printf("frontend: listening on %s, backend %s", addr, backend)
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
