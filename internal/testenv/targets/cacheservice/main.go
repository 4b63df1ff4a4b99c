// Command cacheservice is an HTTP service that keeps data in Redis through go-redis
// v9, for the go-redis probe's tests: each endpoint does one kind of operation inside
// its handler.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/redis/go-redis/v9"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	server := flag.String("redis", "127.0.0.1:6379", "the Redis server's host:port")
	db := flag.Int("db", 0, "the Redis database index")
	flag.Parse()
	rdb := redis.NewClient(&redis.Options{Addr: *server, DB: *db, MaxRetries: -1})
	fail := func(w http.ResponseWriter, err error) { http.Error(w, err.Error(), http.StatusBadGateway) }
	mux := http.NewServeMux()
	// A SET and a GET.
	mux.HandleFunc("/set", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		key := r.URL.Query().Get("key")
		if err := rdb.Set(ctx, key, "v-"+key, 0).Err(); err != nil {
			fail(w, err)
			return
		}
		v, err := rdb.Get(ctx, key).Result()
		if err != nil {
			fail(w, err)
			return
		}
		fmt.Fprintln(w, v)
	})
	// A GET of a key that is not there: redis.Nil, no error.
	mux.HandleFunc("/missing", func(w http.ResponseWriter, r *http.Request) {
		if err := rdb.Get(r.Context(), "no-such-key").Err(); !errors.Is(err, redis.Nil) {
			fail(w, fmt.Errorf("want redis.Nil, got %v", err))
			return
		}
		fmt.Fprintln(w, "missing")
	})
	// A pipeline of three commands.
	mux.HandleFunc("/pipeline", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "p", "1", 0)
			p.Incr(ctx, "p")
			p.Get(ctx, "p")
			return nil
		})
		if err != nil {
			fail(w, err)
			return
		}
		fmt.Fprintln(w, len(cmds))
	})
	// A transaction of two commands.
	mux.HandleFunc("/tx", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		cmds, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Incr(ctx, "counter")
			p.Expire(ctx, "counter", 60e9)
			return nil
		})
		if err != nil {
			fail(w, err)
			return
		}
		fmt.Fprintln(w, len(cmds))
	})
	// A command against a key of another type: the server replies WRONGTYPE.
	mux.HandleFunc("/wrongtype", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if err := rdb.Set(ctx, "scalar", "1", 0).Err(); err != nil {
			fail(w, err)
			return
		}
		if err := rdb.LPush(ctx, "scalar", "x").Err(); err == nil {
			fail(w, errors.New("no error"))
			return
		}
		fmt.Fprintln(w, "failed as expected")
	})
	// A secret stored as a value, and under a key that names it.
	mux.HandleFunc("/secret", func(w http.ResponseWriter, r *http.Request) {
		if err := rdb.Set(r.Context(), "token:s3cr3t-K3y-41", "s3cr3t-T0ken-42", 0).Err(); err != nil {
			fail(w, err)
			return
		}
		fmt.Fprintln(w, "stored")
	})
	// Commands from goroutines the handler starts, with its context.
	mux.HandleFunc("/fanout", func(w http.ResponseWriter, r *http.Request) {
		var wg sync.WaitGroup
		for i := 0; i < 3; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rdb.Exists(r.Context(), "p")
			}()
		}
		wg.Wait()
		fmt.Fprintln(w, "fanned out")
	})
	// A command without the request's context, in the handler's goroutine.
	mux.HandleFunc("/noctx", func(w http.ResponseWriter, r *http.Request) {
		if err := rdb.Ping(context.Background()).Err(); err != nil {
			fail(w, err)
			return
		}
		fmt.Fprintln(w, "no context")
	})
	// A command that blocks while the test takes its server away.
	mux.HandleFunc("/block", func(w http.ResponseWriter, r *http.Request) {
		if err := rdb.BLPop(r.Context(), 0, "no-such-list").Err(); err != nil {
			http.Error(w, "command failed", http.StatusBadGateway)
			return
		}
		fmt.Fprintln(w, "popped")
	})
	// One command, and ten, for the benchmark: the difference between the two is what
	// nine commands cost, apart from the request's own cost.
	commands := func(n int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			for i := 0; i < n; i++ {
				if err := rdb.Get(r.Context(), "p").Err(); err != nil && err != redis.Nil {
					fail(w, err)
					return
				}
			}
			fmt.Fprintln(w, n)
		}
	}
	mux.HandleFunc("/command", commands(1))
	mux.HandleFunc("/commands", commands(10))
	srv := &http.Server{Addr: *addr, Handler: mux}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Shutdown(context.Background())
	}()
	log.Printf("cacheservice: listening on %s (redis %s, db %d)", *addr, *server, *db)
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
