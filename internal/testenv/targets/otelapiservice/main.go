// Command otelapiservice is an HTTP service that calls the OpenTelemetry API and
// configures no SDK, for the otelapi probe's tests: GET /order makes a tree of API
// spans under the request's context - one around an outgoing HTTP call (to this
// service's GET /price), one around a SQL query, one with an error status, an event
// and attributes of every type, one ended in another goroutine, one with its times
// given, one a new root, one linked (at its start and after, with more events than
// the test's limit), one never ended; GET /wrapped is a handler in otelhttp's
// middleware; GET /spans?n=N starts and ends N spans (the bench).
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	_ "modernc.org/sqlite" // "sqlite"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()
	db, err := sql.Open("sqlite", "file::memory:?cache=shared")
	if err != nil {
		log.Fatal(err)
	}
	db.SetMaxOpenConns(1) // one connection: an in-memory database per connection otherwise
	if _, err := db.Exec("CREATE TABLE IF NOT EXISTS items (name TEXT, qty INTEGER)"); err != nil {
		log.Fatal(err)
	}
	tracer := otel.Tracer("example.com/otelapiservice", trace.WithInstrumentationVersion("1.2.3"),
		trace.WithSchemaURL("https://opentelemetry.io/schemas/1.26.0"))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /price", func(w http.ResponseWriter, r *http.Request) {
		_, span := tracer.Start(r.Context(), "compute-price", trace.WithSpanKind(trace.SpanKindInternal))
		defer span.End()
		fmt.Fprintln(w, "9.5")
	})
	mux.HandleFunc("GET /order", func(w http.ResponseWriter, r *http.Request) {
		ctx, order := tracer.Start(r.Context(), "load-order", trace.WithSpanKind(trace.SpanKindInternal),
			trace.WithAttributes(attribute.String("order.id", "42"), attribute.Int64("order.items", 3),
				attribute.Float64("order.total", 9.5), attribute.Bool("order.paid", true)))
		defer order.End()
		order.SetAttributes(attribute.String("customer", "ada"), attribute.Int("retries", 2),
			attribute.StringSlice("order.tags", []string{"gift", "rush"}), attribute.Int64Slice("order.sizes", []int64{1, -2}),
			attribute.Float64Slice("order.weights", []float64{0.25, 1.5}), attribute.BoolSlice("order.flags", []bool{true, false}))

		// An outgoing call under an API span: the client span is its child.
		fctx, fetch := tracer.Start(ctx, "fetch-price", trace.WithSpanKind(trace.SpanKindClient))
		req, _ := http.NewRequestWithContext(fctx, http.MethodGet, "http://"+*addr+"/price", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		fetch.End()

		// A query under an API span, with a context derived from the span's.
		qctx, query := tracer.Start(ctx, "query-stock")
		qctx, cancel := context.WithCancel(qctx)
		var n int
		db.QueryRowContext(qctx, "SELECT count(*) FROM items").Scan(&n)
		cancel()
		query.SetStatus(codes.Error, "stock low")
		query.RecordError(errors.New("stock low"))
		query.End()

		order.AddEvent("validated", trace.WithAttributes(attribute.Int("checks", 2)))
		order.SetName("load-order " + r.URL.Query().Get("id"))

		// Ended in another goroutine.
		_, async := tracer.Start(ctx, "async-work", trace.WithSpanKind(trace.SpanKindProducer))
		done := make(chan struct{})
		go func() {
			async.End()
			close(done)
		}()
		<-done

		// Its times given: begun a second ago, half a second long.
		begun := time.Now().Add(-time.Second)
		_, backdated := tracer.Start(ctx, "backdated", trace.WithTimestamp(begun))
		backdated.End(trace.WithTimestamp(begun.Add(500 * time.Millisecond)))

		// A new trace, whatever the context says.
		_, detached := tracer.Start(ctx, "detached", trace.WithNewRoot())
		detached.End()

		// A link to another trace's span (a message's, say).
		other := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{0x0a, 0x0b}, SpanID: trace.SpanID{0x0c, 0x0d},
			TraceFlags: trace.FlagsSampled, Remote: true})
		_, linked := tracer.Start(ctx, "linked", trace.WithLinks(trace.Link{SpanContext: other}))
		// And one added later, with attributes; and more events than the test's limit.
		next := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{0x0e}, SpanID: trace.SpanID{0x0f}})
		linked.AddLink(trace.Link{SpanContext: next, Attributes: []attribute.KeyValue{attribute.String("link.kind", "follows"),
			attribute.Int("link.n", 2)}})
		for i := range 3 {
			linked.AddEvent(fmt.Sprint("step ", i))
		}
		linked.End()

		// Never ended.
		tracer.Start(ctx, "never-ended")

		fmt.Fprintln(w, "ok", n)
	})
	// For the bench: n API spans started and ended, nothing else.
	mux.HandleFunc("GET /spans", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		for range n {
			_, span := tracer.Start(r.Context(), "op")
			span.End()
		}
		fmt.Fprintln(w, "ok")
	})
	// A library's otel middleware: otelhttp's server span, and the API span the handler
	// it wraps starts from the request's context, which otelhttp's span is in.
	mux.Handle("GET /wrapped", otelhttp.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, span := tracer.Start(r.Context(), "inside-otelhttp")
		span.End()
		fmt.Fprintln(w, "ok")
	}), "wrapped"))
	srv := &http.Server{Addr: *addr, Handler: mux}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		srv.Shutdown(context.Background())
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
