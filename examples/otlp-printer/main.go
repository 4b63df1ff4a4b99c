// Command otlp-printer is the OTLP receiver `make demo` shows its results with: it takes
// traces and metrics over OTLP/gRPC and OTLP/HTTP (protobuf or JSON), keeps them, and
// when it is stopped (SIGTERM or SIGINT) prints each trace as a tree with a waterfall
// of its spans' timing, and a table of the requests per route from the duration
// histograms. It is not a collector; it is the smallest honest receiver for a demo.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	grpcAddr := flag.String("grpc", "127.0.0.1:4317", "OTLP/gRPC listen address (\"\": none)")
	flag.StringVar(grpcAddr, "addr", "127.0.0.1:4317", "the same as -grpc (the flag's older name)")
	httpAddr := flag.String("http", "", "OTLP/HTTP listen address, e.g. 127.0.0.1:4318 (\"\": none)")
	width := flag.Int("width", 40, "width of a trace's waterfall, in characters")
	flag.Parse()
	if *grpcAddr == "" && *httpAddr == "" {
		fmt.Fprintln(os.Stderr, "otlp-printer: nothing to listen on: give -grpc ADDR or -http ADDR (or both)")
		os.Exit(2)
	}

	// Printed when the printer is stopped, not as spans come: a trace's spans arrive
	// in several exports, in any order, and the metrics' final cumulative values in
	// the launcher's last export at exit. The demo stops the printer once the
	// launcher has exited (and so flushed everything), which makes what is printed
	// complete, whatever the timing of the exports.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	st := newStore()
	srv, err := listen(st, *grpcAddr, *httpAddr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "otlp-printer: %v\n", err)
		os.Exit(1)
	}
	<-ctx.Done()
	srv.stop() // exports in progress complete first
	st.print(os.Stdout, *width)
}
