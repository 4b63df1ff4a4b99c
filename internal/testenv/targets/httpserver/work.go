package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
)

// addWorkRoute adds /work, whose handler calls two functions a test probe attaches to
// (probes/internal/probetest), as a database or RPC client library would be called:
//
//	work(ctx, n)  from a goroutine the handler starts, with a context derived from the
//	              request's (a cancel and a value, and with ?layers=N[&kinds=K] N more
//	              layers between them, as withLayers makes): its span's parent is found
//	              through the context
//	workHere(n)   from the handler's own goroutine, with no context: found through the
//	              goroutine
func addWorkRoute(mux *http.ServeMux) {
	mux.HandleFunc("/work", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		n, _ := strconv.Atoi(r.URL.Query().Get("layers"))
		ctx, release := withLayers(ctx, n, r.URL.Query().Get("kinds"))
		defer release()
		done := make(chan int)
		go func() { done <- work(context.WithValue(ctx, workKey{}, 1), 3) }()
		fmt.Fprintln(w, <-done+workHere(4))
	})
}

type workKey struct{}

//go:noinline
func work(ctx context.Context, n int) int {
	if ctx.Err() != nil {
		return 0
	}
	return 2 * n
}

//go:noinline
func workHere(n int) int { return n + 1 }
