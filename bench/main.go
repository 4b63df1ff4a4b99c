// Command bench measures the launcher against the same work without it, in the same
// run, and prints Markdown tables (make bench). Timings on shared machines are noisy:
// cases are interleaved round by round and medians compared, never absolute targets.
//
//	go run ./bench [-rounds N] [-launch PATH] [-baseline PATH] [section ...]
//
// Sections: startup, exit, analysis, gate, readiness, tracing, tracing-http, exporter, routes, contexts, metrics, profile, proxy, rate, stall, contention, grpc, sql, sql-postgres, pgx, pgx-stdlib, redis, kafka-go, sarama, sarama-async, container, wrap, runtime, neighbour.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

var sections = map[string]func(env *benchEnv) error{
	"startup":      startup,
	"exit":         exitCost,
	"analysis":     analysis,
	"tracing":      tracing,
	"tracing-http": tracingHTTP,
	"exporter":     exporterBench,
	"routes":       routesBench,
	"contexts":     contextsBench,
	"proxy":        proxy,
	"rate":         rate,
	"stall":        stall,
	"contention":   contention,
	"readiness":    readiness,
	"gate":         gate,
	"container":    container,
	"grpc":         grpcBench,
	"sql":          sqlBench,
	"sql-postgres": sqlPostgresBench,
	"pgx":          pgxBench,
	"pgx-stdlib":   pgxStdlibBench,
	"otelapi":      otelAPIBench,
	"redis":        redisBench,
	"sarama":       saramaBench,
	"sarama-async": saramaAsyncBench,
	"kafka-go":     kafkaGoBench,
	"metrics":      metricsBench,
	"profile":      profileBench,
	"neighbour":    neighbour,
	"wrap":         wrapBench,
	"runtime":      runtimeBench,
}

type benchEnv struct {
	rounds   int
	launch   string // the launcher binary
	baseline string // another launcher binary to compare with ("": none)
}

func main() {
	rounds := flag.Int("rounds", 300, "rounds per case")
	launch := flag.String("launch", "bin/launch", "launcher binary to measure")
	baseline := flag.String("baseline", "", "another launcher binary to measure in the same rounds (tracing, routes, contexts, proxy, grpc, sql, sql-postgres, redis, ...), to compare two versions on a drifting machine")
	flag.Parse()
	names := flag.Args()
	if len(names) == 0 {
		names = []string{"startup", "exit", "analysis", "gate", "readiness", "tracing", "tracing-http", "exporter", "routes", "contexts", "metrics", "profile", "proxy", "rate", "stall", "contention", "grpc", "sql", "sql-postgres", "pgx", "pgx-stdlib", "redis", "kafka-go", "sarama", "sarama-async", "otelapi", "container", "wrap", "runtime", "neighbour"}
	}
	defer testenv.Cleanup()
	// The launchers run here as in a container: in a cgroup of their own, where they
	// attach their socket programs (never the host's root).
	restore, err := testenv.OwnCgroup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
	defer restore()

	var uts unix.Utsname
	unix.Uname(&uts)
	fmt.Printf("Measured %s on Linux %s, %d CPUs, %s.\n\n", time.Now().UTC().Format("2006-01-02"),
		unix.ByteSliceToString(uts.Release[:]), runtime.NumCPU(), runtime.Version())
	// Run a fresh copy of the launcher: how a file got into the page cache changes
	// exec time by a millisecond (go build's linker writes through mmap; a copy, like
	// an image layer's extraction, writes it), whatever the launcher's code.
	copied, err := freshCopy(*launch)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
	defer os.Remove(copied)
	env := &benchEnv{rounds: *rounds, launch: copied}
	if *baseline != "" {
		if env.baseline, err = freshCopy(*baseline); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			os.Exit(1)
		}
		defer os.Remove(env.baseline)
	}
	for _, n := range names {
		f, ok := sections[n]
		if !ok {
			fmt.Fprintf(os.Stderr, "bench: no section %q (have: %s)\n", n, strings.Join(keys(), ", "))
			os.Exit(2)
		}
		if err := f(env); err != nil {
			fmt.Fprintf(os.Stderr, "bench %s: %v\n", n, err)
			os.Exit(1)
		}
	}
}

// freshCopy copies the executable at path to a new file beside the test binaries.
func freshCopy(path string) (string, error) {
	f, err := os.CreateTemp("", "launch-bench-")
	if err != nil {
		return "", err
	}
	f.Close()
	return f.Name(), copyFile(path, f.Name())
}

// copyFile copies an executable, streaming: not through the heap, so RSS figures stay
// the measured program's.
func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Chmod(0o755); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

func keys() []string {
	var k []string
	for n := range sections {
		k = append(k, n)
	}
	return k
}
