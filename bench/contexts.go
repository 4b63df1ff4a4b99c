package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
)

// contextsBench: what finding a client span's parent costs (the bpf_loop context walk). Service A (the
// test server, Go 1.26, under the launcher) calls B (the same, untraced) for each
// request: with the request's context (/proxy), from a goroutine with a context N
// layers above it (/deep?layers=N&go=1; the default mix of kinds, wrappers included;
// kinds=vtcw: the standard library's only - the app has wrapper types all the same, so
// each layer is also looked up among them),
// and with no context in the handler (/get: by goroutine). Per request, from the kernel's
// statistics of A's launcher's own programs: uprobe hits, the client entry's BPF time
// (the walk is in it) and all programs' BPF time. With -baseline, the other launcher in
// the same rounds, interleaved.
func contextsBench(env *benchEnv) error {
	tg, recv, stop, err := countedBench()
	if err != nil {
		return err
	}
	defer stop()
	paths := []string{"/proxy", "/deep?layers=1&go=1", "/deep?layers=8&go=1", "/deep?layers=64&go=1", "/deep?layers=64&kinds=vtcw&go=1", "/deep?layers=128&go=1", "/get"}
	launchers := []struct{ name, path string }{{"this launcher", env.launch}}
	if env.baseline != "" {
		launchers = append(launchers, struct{ name, path string }{"baseline", env.baseline})
	}
	const rounds, dur = 5, 2 * time.Second
	type result struct {
		reqs       int
		hits       uint64
		entry, all time.Duration // BPF run time: the client entry's, every program's
		entryRuns  uint64
	}
	// results[launcher][path]
	results := make([][][]result, len(launchers))
	for i := range results {
		results[i] = make([][]result, len(paths))
	}
	b, err := startServerUnder("", tg, recv.Endpoint)
	if err != nil {
		return err
	}
	defer b.stop()
	for r := 0; r < rounds; r++ {
		for i, l := range launchers {
			a, err := startServerUnder(l.path, tg, recv.Endpoint, "UPSTREAM=http://"+b.addr, "LAUNCH_PROPAGATE=false")
			if err != nil {
				return err
			}
			err = func() error {
				for j, p := range paths {
					if _, _, err := loadPath(a.addr, p, 1, 200*time.Millisecond); err != nil { // warm up
						return err
					}
					before := ownPrograms(a.launcher)
					n, _, err := loadPath(a.addr, p, 1, dur)
					if err != nil {
						return err
					}
					after := ownPrograms(a.launcher)
					res := result{reqs: n}
					for name, st := range after {
						d := st.sub(before[name])
						res.hits += d.runs
						res.all += d.time
						if strings.HasPrefix(name, "client_entry") {
							res.entry += d.time
							res.entryRuns += d.runs
						}
					}
					results[i][j] = append(results[i][j], res)
				}
				return nil
			}()
			a.stop()
			if err != nil {
				return err
			}
		}
	}
	fmt.Printf("### A client call's parent, through N layers of contexts (Go 1.26, A under the launcher, B untraced, no propagation; %d rounds of %s a path, 1 connection, interleaved)\n\n", rounds, dur)
	header, rule := "| A's request |", "|---|"
	for _, l := range launchers {
		header += fmt.Sprintf(" hits, %s | client entry BPF time, %s | all BPF time, %s |", l.name, l.name, l.name)
		rule += "---:|---:|---:|"
	}
	fmt.Println(header)
	fmt.Println(rule)
	for j, p := range paths {
		line := "| `" + p + "` |"
		for i := range launchers {
			var hits, entry, all float64
			var entryTimes []float64
			for _, res := range results[i][j] {
				reqs := float64(max(1, res.reqs))
				hits += float64(res.hits) / reqs
				all += float64(res.all.Nanoseconds()) / 1000 / reqs
				entry += float64(res.entry.Nanoseconds()) / 1000 / float64(max(1, res.entryRuns))
				entryTimes = append(entryTimes, float64(res.entry.Nanoseconds())/1000/float64(max(1, res.entryRuns)))
			}
			k := float64(len(results[i][j]))
			line += fmt.Sprintf(" %.2f | %.2f µs (median %.2f) | %.2f µs |", hits/k, entry/k, medianFloat(entryTimes), all/k)
		}
		fmt.Println(line)
	}
	fmt.Println()
	return nil
}

// progStat is a program's run count and run time.
type progStat struct {
	runs uint64
	time time.Duration
}

func (s progStat) sub(o progStat) progStat { return progStat{s.runs - o.runs, s.time - o.time} }

// ownPrograms are the statistics of the BPF programs process pid holds (a launcher's),
// by name: not those of any other process on the machine, whatever their names.
func ownPrograms(pid int) map[string]progStat {
	out := map[string]progStat{}
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fdinfo/*", pid))
	seen := map[ebpf.ProgramID]bool{}
	for _, fd := range fds {
		b, err := os.ReadFile(fd)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			v, ok := strings.CutPrefix(line, "prog_id:")
			if !ok {
				continue
			}
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err != nil || seen[ebpf.ProgramID(n)] {
				continue
			}
			seen[ebpf.ProgramID(n)] = true
			p, err := ebpf.NewProgramFromID(ebpf.ProgramID(n))
			if err != nil {
				continue
			}
			if info, err := p.Info(); err == nil {
				if st, err := p.Stats(); err == nil {
					s := out[info.Name]
					out[info.Name] = progStat{s.runs + st.RunCount, s.time + st.Runtime}
				}
			}
			p.Close()
		}
	}
	return out
}

// ownStats sums the run counts and times of the programs the processes pids hold
// (launchers; 0 for none) whose names start with one of prefixes.
func ownStats(pids []int, prefixes ...string) (runs uint64, runtime time.Duration) {
	for _, pid := range pids {
		if pid == 0 {
			continue
		}
		for name, st := range ownPrograms(pid) {
			for _, prefix := range prefixes {
				if strings.HasPrefix(name, prefix) {
					runs, runtime = runs+st.runs, runtime+st.time
					break
				}
			}
		}
	}
	return runs, runtime
}
