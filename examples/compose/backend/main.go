// Command backend is the example stack's inventory service: GET /stock/{item} answers
// how many are in stock. It shuts down gracefully on SIGTERM (docker stop: exit 0).
package main

import (
	"context"
	"fmt"
	"hash/fnv"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	addr := envOr("ADDR", ":8081")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stock/{item}", func(w http.ResponseWriter, r *http.Request) {
		h := fnv.New32a()
		h.Write([]byte(r.PathValue("item")))
		fmt.Fprintf(w, `{"item":%q,"in_stock":%d}`+"\n", r.PathValue("item"), h.Sum32()%50)
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		log.Printf("backend: shutting down")
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	log.Printf("backend: listening on %s", addr)
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
