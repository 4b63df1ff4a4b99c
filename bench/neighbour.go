package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/cilium/ebpf"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// neighbour: what traced apps cost a process beside them that is not traced - the
// launcher's socket programs must run on the app's own cgroup's connections only. A
// plain HTTP server in a cgroup of its own (a neighbouring container) is loaded with
// a new connection per request (socket programs act on connection events), with no
// traced app beside it, then five, in the same rounds:
//   - each traced app in a cgroup of its own (a container's): where the programs go;
//   - all in the host's root cgroup (a container whose runtime made it no cgroup v2
//     of its own, as on hybrid hosts): this launcher attaches nothing there, and
//     -baseline shows what a launcher that attached at the root cost.
func neighbour(env *benchEnv) error {
	tg, recv, stop, err := countedBench()
	if err != nil {
		return err
	}
	defer stop()
	own, mnt, err := benchCgroup()
	if err != nil {
		return err
	}
	mkCgroup := func(name string) (string, error) {
		dir := filepath.Join(own, name)
		if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
			return "", err
		}
		return dir, nil
	}
	// in starts a command in the cgroup dir ("" for the host's root) after an
	// optional leading "--" is dropped.
	const script = `echo $$ > "$0/cgroup.procs" && { [ "$1" = -- ] && shift; exec "$@"; }`
	in := func(dir string, argv ...string) []string {
		return append([]string{"sh", "-c", script, dir}, argv...)
	}
	neighbourDir, err := mkCgroup("neighbour")
	if err != nil {
		return err
	}
	defer os.Remove(neighbourDir)
	plain, err := startAppUnder(in(neighbourDir), recv.Endpoint, func(addr string) []string { return []string{tg, addr} })
	if err != nil {
		return err
	}
	defer plain.stop()

	type traced struct {
		name     string
		launcher string
		root     bool // in the host's root cgroup
	}
	cases := []traced{{"no traced app", "", false}, {"5 traced apps, each in its own cgroup", env.launch, false}, {"5 traced apps in the host's root cgroup", env.launch, true}}
	if env.baseline != "" {
		cases = append(cases, traced{"5 traced apps in the host's root cgroup, -baseline launcher", env.baseline, true})
	}
	const apps, dur, conns = 5, 3 * time.Second, 4
	rounds := min(env.rounds, 6)
	results := make([][]float64, len(cases))
	runs := make([]uint64, len(cases))     // socket program runs during the load
	requests := make([]uint64, len(cases)) // the neighbour's requests
	fresh := func() http.RoundTripper { return &http.Transport{DisableKeepAlives: true, DisableCompression: true} }
	loadPathOver(plain.addr, "/items/n", conns, dur, fresh) // warm up
	for r := 0; r < rounds; r++ {
		for k := range cases {
			i := (k + r) % len(cases) // each case first in turn
			c := cases[i]
			var started []*server
			for a := 0; a < apps && c.launcher != ""; a++ {
				dir := mnt
				if !c.root {
					if dir, err = mkCgroup("app" + strconv.Itoa(a)); err != nil {
						return err
					}
				}
				s, err := startAppUnder(in(dir, c.launcher), recv.Endpoint, func(addr string) []string { return []string{tg, addr} })
				if err != nil {
					return err
				}
				started = append(started, s)
			}
			time.Sleep(300 * time.Millisecond) // attached
			runs0 := programRuns("app_sockops")
			n, _, err := loadPathOver(plain.addr, "/items/n", conns, dur, fresh)
			for id, r := range programRuns("app_sockops") {
				runs[i] += r - runs0[id] // a program loaded meanwhile ran from 0
			}
			requests[i] += uint64(n)
			for _, s := range started {
				s.stop()
			}
			if len(started) > 0 {
				time.Sleep(time.Second) // the kernel detaches a dead launcher's programs in the background
			}
			if err != nil {
				return err
			}
			results[i] = append(results[i], float64(n)/dur.Seconds())
		}
	}
	for a := 0; a < apps; a++ {
		os.Remove(filepath.Join(own, "app"+strconv.Itoa(a)))
	}
	fmt.Printf("### A neighbour's throughput beside traced apps (%d rounds of %s, %d clients, a new connection per request)\n\n", rounds, dur, conns)
	fmt.Println("| beside the neighbour | socket program runs per neighbour request | neighbour req/s (median) | vs no traced app |")
	fmt.Println("|---|---:|---:|---:|")
	base := medianFloat(results[0])
	for i, c := range cases {
		m := medianFloat(results[i])
		fmt.Printf("| %s | %.2f | %.0f | %.3f× |\n", c.name, float64(runs[i])/float64(max(requests[i], 1)), m, m/base)
	}
	fmt.Println()
	return nil
}

// benchCgroup is the bench's own cgroup v2 directory (testenv.OwnCgroup made it) and
// the hierarchy's root, where they are mounted here.
func benchCgroup() (own, root string, err error) {
	rel, root, err := testenv.Cgroup2()
	if err != nil || rel == "/" {
		return "", "", fmt.Errorf("the bench is in no cgroup of its own (%q): %v", rel, err)
	}
	return filepath.Join(root, rel), root, nil
}

func medianFloat(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// programRuns are the run counts of the loaded BPF programs whose names start with
// prefix, by program ID.
func programRuns(prefix string) map[ebpf.ProgramID]uint64 {
	out := map[ebpf.ProgramID]uint64{}
	eachProgram(prefix, func(id ebpf.ProgramID, st *ebpf.ProgramStats) { out[id] = st.RunCount })
	return out
}
