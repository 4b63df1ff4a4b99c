package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// clientOps is a benchmark of a client library's probe: µs added per operation and
// uprobe hits per operation. Its target answers paths[0] with one operation and
// paths[1] with ten, in the handler: run without the launcher, under it (spans
// exported to a counting receiver), and with only a counter at the launcher's sites
// (what the traps alone cost), interleaved round by round. A request's cost is its
// server span's plus its operations': paths[1] − paths[0] is nine operations and
// nothing else, so an operation's figures are that difference / 9, and paths[0] less
// one operation is the request's own.
type clientOps struct {
	library  string    // "database/sql"
	op       string    // what an operation is: "query"
	heading  string    // the section's heading
	target   string    // the built target
	programs []string  // name prefixes of the library's BPF programs: their runs are its hits
	paths    [2]string // one operation, ten
	// argv is the target's command line listening on addr, for the run of config i
	// in round r.
	argv func(addr string, r, i int) []string
}

// sqlBench: what the database/sql probe costs a query. The dbservice target (Go
// 1.26, SQLite through modernc.org/sqlite, a file database, one connection) answers
// GET /query with one QueryRowContext and GET /queries with ten.
func sqlBench(env *benchEnv) error {
	tgs, err := testenv.BuildTargetsErr("dbservice", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "bench-sql-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	return clientOpsBench(env, clientOps{
		library:  "database/sql",
		op:       "query",
		heading:  "database/sql (SQLite through modernc.org/sqlite v1.62.0, a file database, 1 connection; Go 1.26",
		target:   tgs[0].Path,
		programs: []string{"query_", "exec_", "prepare_", "stmt_"},
		paths:    [2]string{"/query", "/queries"},
		argv: func(addr string, r, i int) []string {
			dsn := "file:" + filepath.Join(dir, "r"+strconv.Itoa(r)+"c"+strconv.Itoa(i)+".db") // a new database each start: the same empty table
			return []string{tgs[0].Path, "-addr", addr, "-driver", "sqlite", "-dsn", dsn}
		},
	})
}

// sqlPostgresBench: database/sql where the probe reads more than SQLite's connection
// type: pgx's database/sql adapter to a private PostgreSQL on the loopback, each
// query's entry reading its server's address and (since the namespace and error-code work) its database's name.
// With -baseline, another launcher in the same rounds: what those reads cost in BPF
// time, at the same hits.
func sqlPostgresBench(env *benchEnv) error {
	tgs, err := testenv.BuildTargetsErr("dbservice", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})
	if err != nil {
		return err
	}
	dsn, stop, err := startPostgres()
	if err != nil {
		return err
	}
	defer stop()
	return clientOpsBench(env, clientOps{
		library:  "database/sql",
		op:       "query",
		heading:  "database/sql (PostgreSQL 15 on the loopback through pgx v5.13.0's database/sql adapter; Go 1.26",
		target:   tgs[0].Path,
		programs: []string{"query_", "exec_", "prepare_", "stmt_"},
		paths:    [2]string{"/query", "/queries"},
		argv: func(addr string, r, i int) []string {
			return []string{tgs[0].Path, "-addr", addr, "-driver", "pgx", "-dsn", dsn}
		},
	})
}

// pgxBench: pgx's own probe, on a pool's QueryRow (pgxservice /ops?n=1 and n=10, pgx
// v5.13.0, a private PostgreSQL on the loopback): its entry and RET, two hits.
func pgxBench(env *benchEnv) error { return pgxOpsBench(env, "pgx", "/ops", "pgx v5.13.0's pool") }

// pgxStdlibBench: the same QueryRow through pgx's database/sql adapter, the program's
// only driver: database/sql's probe is left to pgx's, so the hits of both libraries'
// programs (query_, exec_ ...) are pgx's two, not four.
func pgxStdlibBench(env *benchEnv) error {
	return pgxOpsBench(env, "pgx through database/sql", "/sqlops", "pgx v5.13.0's database/sql adapter, its only driver")
}

func pgxOpsBench(env *benchEnv, library, path, through string) error {
	tgs, err := testenv.BuildTargetsErr("pgxservice", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})
	if err != nil {
		return err
	}
	dsn, stop, err := startPostgres()
	if err != nil {
		return err
	}
	defer stop()
	return clientOpsBench(env, clientOps{
		library:  library,
		op:       "QueryRow",
		heading:  library + " (PostgreSQL on the loopback through " + through + "; Go 1.26",
		target:   tgs[0].Path,
		programs: []string{"query_", "exec_", "prepare_", "stmt_", "copy_"},
		paths:    [2]string{path + "?n=1", path + "?n=10"},
		argv: func(addr string, r, i int) []string {
			return []string{tgs[0].Path, "-addr", addr, "-dsn", dsn}
		},
	})
}

// otelAPIBench: the OpenTelemetry API bridged (otelapiservice /spans?n=1 and n=10, otel
// v1.47.0, no SDK): a span started and ended is three hits, newSpan's entry and RET
// and End's entry.
func otelAPIBench(env *benchEnv) error {
	tgs, err := testenv.BuildTargetsErr("otelapiservice", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})
	if err != nil {
		return err
	}
	return clientOpsBench(env, clientOps{
		library:  "OpenTelemetry API",
		op:       "span",
		heading:  "OpenTelemetry API (otel v1.47.0's global tracer, no SDK: tracer.Start and span.End; Go 1.26",
		target:   tgs[0].Path,
		programs: []string{"new_span_", "span_end", "set_attributes", "set_status", "set_name", "record_error", "add_event"},
		paths:    [2]string{"/spans?n=1", "/spans?n=10"},
		argv: func(addr string, r, i int) []string {
			return []string{tgs[0].Path, "-addr", addr}
		},
	})
}

// startPostgres runs a private PostgreSQL server (Debian's postgresql: initdb into a
// temporary directory as nobody, a free port on the loopback) and returns its DSN.
func startPostgres() (dsn string, stop func(), err error) {
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(bins) == 0 {
		return "", nil, errors.New("PostgreSQL: no /usr/lib/postgresql/*/bin/postgres (apt-get install postgresql)")
	}
	bin := filepath.Dir(bins[len(bins)-1])
	dir, err := os.MkdirTemp("", "bench-postgres-")
	if err != nil {
		return "", nil, err
	}
	os.Chown(dir, 65534, 65534)
	asNobody := func(name string, args ...string) *exec.Cmd {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
		return cmd
	}
	data := filepath.Join(dir, "data")
	if out, err := asNobody("initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	_, port, _ := net.SplitHostPort(freePort())
	server := asNobody("postgres", "-D", data, "-p", port, "-k", dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off")
	if err := server.Start(); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	stop = func() {
		server.Process.Signal(syscall.SIGQUIT) // immediate shutdown
		server.Wait()
		os.RemoveAll(dir)
	}
	// Up once it answers: a connection before its start-up is done is refused.
	for i := 0; ; i++ {
		if err := asNobody("pg_isready", "-q", "-h", dir, "-p", port).Run(); err == nil {
			return "postgres://postgres@127.0.0.1:" + port + "/postgres?sslmode=disable", stop, nil
		}
		if i == 100 {
			stop()
			return "", nil, errors.New("postgres did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// redisBench: what the go-redis probe costs a command. The cacheservice target (Go
// 1.26, go-redis v9.23.0) answers GET /command with one GET and GET /commands with
// ten, against a private Redis server on the loopback.
func redisBench(env *benchEnv) error {
	tgs, err := testenv.BuildRedisErr(testenv.ModuleBuild{Version: testenv.RedisDefault, Toolchain: "go1.26.8"})
	if err != nil {
		return err
	}
	server, stop, err := startRedis()
	if err != nil {
		return err
	}
	defer stop()
	return clientOpsBench(env, clientOps{
		library:  "go-redis",
		op:       "command",
		heading:  "go-redis (v9.23.0, Debian's Redis 7.0 on the loopback, GET of a missing key; Go 1.26",
		target:   tgs[0].Path,
		programs: []string{"process_", "pipeline_", "transaction_", "operation_"},
		paths:    [2]string{"/command", "/commands"},
		argv: func(addr string, r, i int) []string {
			return []string{tgs[0].Path, "-addr", addr, "-redis", server}
		},
	})
}

// startRedis runs a Redis server on a free port of the loopback, nothing saved.
func startRedis() (addr string, stop func(), err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr = l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no")
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("redis-server (apt-get install redis-server): %w", err)
	}
	stop = func() { cmd.Process.Kill(); cmd.Wait() }
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, stop, nil
		}
		if i == 100 {
			stop()
			return "", nil, errors.New("redis-server did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// clientOpsBench runs and prints the benchmark b.
func clientOpsBench(env *benchEnv, b clientOps) error {
	trap, emulated, err := reportTrapCosts()
	if err != nil {
		return err
	}
	recv, err := testenv.NewReceiver()
	if err != nil {
		return err
	}
	defer recv.Stop()
	recv.CountOnly()
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return fmt.Errorf("enable BPF run counts: %w", err)
	}
	defer stats.Close()
	paths := b.paths[:]
	const perRequest = 10 // operations of paths[1]; paths[0] makes 1
	type config struct {
		name     string
		launcher string // "" for none
		traps    bool   // a counter at the launcher's sites, no launcher
	}
	configs := []config{{"without launcher", "", false}, {"with launcher", env.launch, false}}
	if env.baseline != "" {
		configs = append(configs, config{"baseline launcher", env.baseline, false})
	}
	configs = append(configs, config{"traps alone: a counter at the same sites, no launcher", "", true})
	// Latency is the median of every request made one at a time over all rounds, the
	// two paths alternating on one connection: a query's figure is a difference of two
	// latencies, which a drift between their measurements would swamp.
	const rounds, dur, conns = 5, 2 * time.Second, 8
	type opLoad struct {
		reqs          int
		hits, libHits uint64        // every site's; the library's programs' (launched)
		libTime       time.Duration // the library's programs' run time (launched)
		spans         int
		cpu           time.Duration // the launcher's own CPU time
		latency1      []time.Duration
	}
	// results[config][path]: the rounds' loads.
	results := make([][][]opLoad, len(configs))
	for i := range results {
		results[i] = make([][]opLoad, len(paths))
	}
	hitCount := func(sites *siteCounter, srv *server) uint64 {
		if sites != nil {
			return sites.hits()
		}
		runs, _ := ownStats([]int{srv.launcher}, append([]string{"server_"}, b.programs...)...)
		return runs
	}
	// The launcher's own programs (not another process's on a shared machine): the library's.
	libStats := func(srv *server) (uint64, time.Duration) { return ownStats([]int{srv.launcher}, b.programs...) }
	for r := 0; r < rounds; r++ {
		for i, c := range configs {
			srv, err := startAppUnder(launcherArgv(c.launcher), recv.Endpoint, func(addr string) []string { return b.argv(addr, r, i) })
			if err != nil {
				return err
			}
			sites, err := sitesIf(c.traps, env.launch, b.target, srv)
			if err != nil {
				return err
			}
			loads, err := func() ([]opLoad, error) {
				loads := make([]opLoad, len(paths))
				for _, p := range paths {
					if _, _, err := loadPath(srv.addr, p, 1, 200*time.Millisecond); err != nil { // warm up
						return nil, err
					}
				}
				for j, p := range paths {
					if c.launcher != "" {
						time.Sleep(time.Second) // the last run's spans arrive before counting starts
					}
					h0, s0 := hitCount(sites, srv), recv.Received()
					q0, t0 := libStats(srv)
					var c0 time.Duration
					if srv.launcher != 0 {
						c0 = cpuTime(srv.launcher)
					}
					n, _, err := loadPath(srv.addr, p, conns, dur)
					if err != nil {
						return nil, err
					}
					if c.launcher != "" {
						time.Sleep(500 * time.Millisecond) // let the last batch export
					}
					l := &loads[j]
					l.reqs, l.hits, l.spans = n, hitCount(sites, srv)-h0, recv.Received()-s0
					if c.launcher != "" {
						q1, t1 := libStats(srv)
						l.libHits, l.libTime = q1-q0, t1-t0
						l.cpu = cpuTime(srv.launcher) - c0
					}
				}
				lat, err := alternating(srv.addr, paths, 3*time.Second)
				if err != nil {
					return nil, err
				}
				for j := range loads {
					loads[j].latency1 = lat[j]
				}
				return loads, nil
			}()
			srv.stop()
			if sites != nil {
				sites.close()
			}
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			for j := range paths {
				results[i][j] = append(results[i][j], loads[j])
			}
		}
	}

	mean := meanOf[opLoad]
	perReq := func(ls []opLoad, f func(opLoad) float64) float64 {
		return mean(ls, func(l opLoad) float64 { return f(l) / float64(max(1, l.reqs)) })
	}
	rps := func(ls []opLoad) float64 {
		return mean(ls, func(l opLoad) float64 { return float64(l.reqs) / dur.Seconds() })
	}
	lat := func(ls []opLoad) float64 {
		return medianMicros(ls, func(l opLoad) []time.Duration { return l.latency1 })
	}
	hits := func(ls []opLoad) float64 { return perReq(ls, func(l opLoad) float64 { return float64(l.hits) }) }

	fmt.Printf("### %s; %d rounds, interleaved)\n\n", b.heading, rounds)
	fmt.Printf("| request | | throughput, %d connections | | median latency, 1 at a time | | added per request | uprobe hits per request | spans per request | launcher CPU per span |\n", conns)
	fmt.Println("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	names := []string{fmt.Sprintf("GET %s: 1 %s", paths[0], b.op), fmt.Sprintf("GET %s: %d %ss", paths[1], perRequest, b.op)}
	for j := range paths {
		bare := results[0][j]
		fmt.Printf("| %s | %s | %.0f /s | 1.00× | %.0f µs | 1.00× | | | | |\n", names[j], configs[0].name, rps(bare), lat(bare))
		for i := 1; i < len(configs); i++ {
			ls := results[i][j]
			spans, cpu := "", ""
			if configs[i].launcher != "" {
				spans = fmt.Sprintf("%.2f", perReq(ls, func(l opLoad) float64 { return float64(l.spans) }))
				cpu = fmt.Sprintf("%.1f µs", mean(ls, func(l opLoad) float64 { return float64(l.cpu.Nanoseconds()) / 1e3 / float64(max(1, l.spans)) }))
			}
			fmt.Printf("| | %s | %.0f /s | %.2f× | %.0f µs | %.2f× | +%.0f µs | %.2f | %s | %s |\n", configs[i].name, rps(ls), rps(ls)/rps(bare),
				lat(ls), lat(ls)/lat(bare), lat(ls)-lat(bare), hits(ls), spans, cpu)
		}
	}
	fmt.Println()

	// An operation: (paths[1] − paths[0]) / 9. The request apart from its operation:
	// paths[0] less one operation.
	perOp := func(i int, f func([]opLoad) float64) float64 {
		return (f(results[i][1]) - f(results[i][0])) / (perRequest - 1)
	}
	request := func(i int, f func([]opLoad) float64) float64 { return f(results[i][0]) - perOp(i, f) }
	header, rule := fmt.Sprintf("| per %s: (%s − %s) / 9 | %s |", b.op, paths[1], paths[0], configs[0].name), "|---|---:|"
	for _, c := range configs[1:] {
		name, _, _ := strings.Cut(c.name, ":") // "traps alone"
		header, rule = header+" "+name+" | |", rule+"---:|---|"
	}
	fmt.Println(header)
	fmt.Println(rule)
	bareOp := perOp(0, lat)
	row := func(what, bare string, cell func(i int) (string, string)) {
		line := "| " + what + " | " + bare + " |"
		for i := 1; i < len(configs); i++ {
			v, note := cell(i)
			line += " " + v + " | " + note + " |"
		}
		fmt.Println(line)
	}
	row("median latency of a "+b.op, fmt.Sprintf("%.1f µs", bareOp), func(i int) (string, string) {
		return fmt.Sprintf("%.1f µs", perOp(i, lat)), fmt.Sprintf("%.2f×", perOp(i, lat)/bareOp)
	})
	row("**added per "+b.op+"**", "", func(i int) (string, string) {
		return fmt.Sprintf("**+%.1f µs**", perOp(i, lat)-bareOp), ""
	})
	row("uprobe hits per "+b.op, "", func(i int) (string, string) {
		return fmt.Sprintf("%.2f", perOp(i, hits)), ""
	})
	row(b.library+" program runs per "+b.op, "", func(i int) (string, string) {
		if configs[i].launcher == "" {
			return "", ""
		}
		runs := mean(results[i][1], func(l opLoad) float64 { return float64(l.libHits) / float64(max(1, l.reqs*perRequest)) })
		t := mean(results[i][1], func(l opLoad) float64 {
			return float64(l.libTime.Nanoseconds()) / 1e3 / float64(max(1, l.reqs*perRequest))
		})
		return fmt.Sprintf("%.2f", runs), fmt.Sprintf("%.1f µs of BPF program time", t)
	})
	row("its traps: an entry (emulated) and a RET (single-stepped)", "", func(i int) (string, string) {
		return fmt.Sprintf("%.1f µs", float64((trap+emulated).Nanoseconds())/1e3), ""
	})
	row(fmt.Sprintf("added per request apart from its %s: %s − 1 %s", b.op, paths[0], b.op), "", func(i int) (string, string) {
		return fmt.Sprintf("+%.1f µs", request(i, lat)-request(0, lat)), ""
	})
	row("uprobe hits per request apart from its "+b.op, "", func(i int) (string, string) {
		return fmt.Sprintf("%.2f", request(i, hits)), "the server span's"
	})
	fmt.Println()
	return nil
}

// alternating requests each of paths in turn on one keep-alive connection for d, one
// request at a time: each path's latencies.
func alternating(addr string, paths []string, d time.Duration) ([][]time.Duration, error) {
	client := &http.Client{Transport: http1Transport()}
	defer client.CloseIdleConnections()
	lat := make([][]time.Duration, len(paths))
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		for j, p := range paths {
			begin := time.Now()
			resp, err := client.Get("http://" + addr + p)
			if err != nil {
				return nil, err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return nil, fmt.Errorf("%s: %s", p, resp.Status)
			}
			lat[j] = append(lat[j], time.Since(begin))
		}
	}
	return lat, nil
}
