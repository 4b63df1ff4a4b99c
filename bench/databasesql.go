package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// sqlPrograms are the name prefixes of the database/sql probe's programs: their run
// counts are its uprobe hits.
var sqlPrograms = []string{"query_", "exec_", "prepare_", "stmt_"}

// sqlBench: what issue 16 asks of the database/sql probe - µs added per query, uprobe
// hits per operation. The dbservice target (Go 1.26, SQLite through modernc.org/sqlite,
// a file database, one connection) answers GET /query with one QueryRowContext and GET
// /queries with ten, in the handler: without the launcher, under it (spans exported to
// a counting receiver), and with only a counter at the launcher's sites (what the traps
// alone cost), interleaved round by round. A request's cost is its server span's plus
// its queries': /queries − /query is nine queries and nothing else, so a query's
// figures are that difference / 9, and /query less one query is the request's own.
func sqlBench(env *benchEnv) error {
	tgs, err := testenv.BuildTargetsErr("dbservice", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain})
	if err != nil {
		return err
	}
	path := tgs[0].Path
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
	dir, err := os.MkdirTemp("", "bench-sql-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	paths := []string{"/query", "/queries"}
	const perRequest = 10 // queries of /queries; /query makes 1
	type config struct {
		name     string
		launched bool
		traps    bool // a counter at the launcher's sites, no launcher
	}
	configs := []config{{"without launcher", false, false}, {"with launcher", true, false},
		{"traps alone: a counter at the same sites, no launcher", false, true}}
	// Latency is the median of every request made one at a time over all rounds, the
	// two paths alternating on one connection: a query's figure is a difference of two
	// latencies, which a drift between their measurements would swamp.
	const rounds, dur, conns = 5, 2 * time.Second, 8
	type sqlLoad struct {
		reqs          int
		hits, sqlHits uint64        // every site's; the database/sql programs' (launched)
		sqlTime       time.Duration // the database/sql programs' run time (launched)
		spans         int
		cpu           time.Duration // the launcher's own CPU time
		latency1      []time.Duration
	}
	// results[config][path]: the rounds' loads.
	results := make([][][]sqlLoad, len(configs))
	for i := range results {
		results[i] = make([][]sqlLoad, len(paths))
	}
	hitCount := func(sites *siteCounter) uint64 {
		if sites != nil {
			return sites.hits()
		}
		runs := probeRuns("server_")
		for _, p := range sqlPrograms {
			runs += probeRuns(p)
		}
		return runs
	}
	sqlStats := func() (uint64, time.Duration) {
		var runs uint64
		var t time.Duration
		for _, p := range sqlPrograms {
			r, d := probeStats(p)
			runs, t = runs+r, t+d
		}
		return runs, t
	}
	for r := 0; r < rounds; r++ {
		for i, c := range configs {
			launcher := ""
			if c.launched {
				launcher = env.launch
			}
			dsn := "file:" + filepath.Join(dir, "r"+strconv.Itoa(r)+"c"+strconv.Itoa(i)+".db") // a new database each start: the same empty table
			srv, err := startAppUnder(launcher, recv.Endpoint, func(addr string) []string {
				return []string{path, "-addr", addr, "-driver", "sqlite", "-dsn", dsn}
			})
			if err != nil {
				return err
			}
			sites, err := sitesIf(c.traps, env.launch, path, srv)
			if err != nil {
				return err
			}
			loads, err := func() ([]sqlLoad, error) {
				loads := make([]sqlLoad, len(paths))
				for _, p := range paths {
					if _, _, err := loadPath(srv.addr, p, 1, 200*time.Millisecond); err != nil { // warm up
						return nil, err
					}
				}
				for j, p := range paths {
					if c.launched {
						time.Sleep(time.Second) // the last run's spans arrive before counting starts
					}
					h0, s0 := hitCount(sites), recv.Received()
					q0, t0 := sqlStats()
					var c0 time.Duration
					if srv.launcher != 0 {
						c0 = cpuTime(srv.launcher)
					}
					n, _, err := loadPath(srv.addr, p, conns, dur)
					if err != nil {
						return nil, err
					}
					if c.launched {
						time.Sleep(500 * time.Millisecond) // let the last batch export
					}
					l := &loads[j]
					l.reqs, l.hits, l.spans = n, hitCount(sites)-h0, recv.Received()-s0
					if c.launched {
						q1, t1 := sqlStats()
						l.sqlHits, l.sqlTime = q1-q0, t1-t0
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

	mean := meanOf[sqlLoad]
	perReq := func(ls []sqlLoad, f func(sqlLoad) float64) float64 {
		return mean(ls, func(l sqlLoad) float64 { return f(l) / float64(max(1, l.reqs)) })
	}
	rps := func(ls []sqlLoad) float64 {
		return mean(ls, func(l sqlLoad) float64 { return float64(l.reqs) / dur.Seconds() })
	}
	lat := func(ls []sqlLoad) float64 {
		return medianMicros(ls, func(l sqlLoad) []time.Duration { return l.latency1 })
	}
	hits := func(ls []sqlLoad) float64 { return perReq(ls, func(l sqlLoad) float64 { return float64(l.hits) }) }

	fmt.Printf("### database/sql (SQLite through modernc.org/sqlite v1.62.0, a file database, 1 connection; Go 1.26; %d rounds, interleaved)\n\n", rounds)
	fmt.Printf("| request | | throughput, %d connections | | median latency, 1 at a time | | added per request | uprobe hits per request | spans per request | launcher CPU per span |\n", conns)
	fmt.Println("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	names := []string{"GET /query: 1 query", "GET /queries: 10 queries"}
	for j := range paths {
		bare := results[0][j]
		fmt.Printf("| %s | %s | %.0f /s | 1.00× | %.0f µs | 1.00× | | | | |\n", names[j], configs[0].name, rps(bare), lat(bare))
		for i := 1; i < len(configs); i++ {
			ls := results[i][j]
			spans, cpu := "", ""
			if configs[i].launched {
				spans = fmt.Sprintf("%.2f", perReq(ls, func(l sqlLoad) float64 { return float64(l.spans) }))
				cpu = fmt.Sprintf("%.1f µs", mean(ls, func(l sqlLoad) float64 { return float64(l.cpu.Nanoseconds()) / 1e3 / float64(max(1, l.spans)) }))
			}
			fmt.Printf("| | %s | %.0f /s | %.2f× | %.0f µs | %.2f× | +%.0f µs | %.2f | %s | %s |\n", configs[i].name, rps(ls), rps(ls)/rps(bare),
				lat(ls), lat(ls)/lat(bare), lat(ls)-lat(bare), hits(ls), spans, cpu)
		}
	}
	fmt.Println()

	// A query: (/queries − /query) / 9. The request apart from its query: /query less
	// one query.
	query := func(i int, f func([]sqlLoad) float64) float64 {
		return (f(results[i][1]) - f(results[i][0])) / (perRequest - 1)
	}
	request := func(i int, f func([]sqlLoad) float64) float64 { return f(results[i][0]) - query(i, f) }
	fmt.Println("| per query: (/queries − /query) / 9 | without launcher | with launcher | | traps alone | |")
	fmt.Println("|---|---:|---:|---|---:|---|")
	bareQ := query(0, lat)
	row := func(what, bare string, cell func(i int) (string, string)) {
		line := "| " + what + " | " + bare + " |"
		for i := 1; i < len(configs); i++ {
			v, note := cell(i)
			line += " " + v + " | " + note + " |"
		}
		fmt.Println(line)
	}
	row("median latency of a query", fmt.Sprintf("%.1f µs", bareQ), func(i int) (string, string) {
		return fmt.Sprintf("%.1f µs", query(i, lat)), fmt.Sprintf("%.2f×", query(i, lat)/bareQ)
	})
	row("**added per query**", "", func(i int) (string, string) {
		return fmt.Sprintf("**+%.1f µs**", query(i, lat)-bareQ), ""
	})
	row("uprobe hits per query", "", func(i int) (string, string) {
		return fmt.Sprintf("%.2f", query(i, hits)), ""
	})
	row("database/sql program runs per query", "", func(i int) (string, string) {
		if !configs[i].launched {
			return "", ""
		}
		runs := mean(results[i][1], func(l sqlLoad) float64 { return float64(l.sqlHits) / float64(max(1, l.reqs*perRequest)) })
		t := mean(results[i][1], func(l sqlLoad) float64 {
			return float64(l.sqlTime.Nanoseconds()) / 1e3 / float64(max(1, l.reqs*perRequest))
		})
		return fmt.Sprintf("%.2f", runs), fmt.Sprintf("%.1f µs of BPF program time", t)
	})
	row("its traps: an entry (emulated) and a RET (single-stepped)", "", func(i int) (string, string) {
		return fmt.Sprintf("%.1f µs", float64((trap+emulated).Nanoseconds())/1e3), ""
	})
	row("added per request apart from its query: /query − 1 query", "", func(i int) (string, string) {
		return fmt.Sprintf("+%.1f µs", request(i, lat)-request(0, lat)), ""
	})
	row("uprobe hits per request apart from its query", "", func(i int) (string, string) {
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
