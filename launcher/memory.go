package launcher

import (
	"bufio"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// settle puts the launcher in its steady state once the app runs: its work is then a
// pipeline (ring buffers, encoding, export) that one core does at ~200,000 spans a
// second, so it runs on one P - a second only adds hand-offs between threads (futex
// wakes, spinning Ms) that cost the app's cores more than the work itself (8.5 → 5.5
// µs a span, docs/benchmarks.md). Analysis and loading, before, used every core to
// keep the gate short, and the memory they touched is given back (releaseStartup) a
// second later, when the probes' last programs are loaded and the exporters built.
func settle() {
	runtime.GOMAXPROCS(1)
	time.AfterFunc(time.Second, releaseStartup)
}

// releaseStartup gives back the memory start-up used and steady state does not:
//   - the heap's garbage (the app's symbols and DWARF, BPF objects), at once rather
//     than over minutes by the scavenger; and a heap held to 1.5× its live data, not
//     2× (its live data is ~3 MB, its allocation rate one small object a span);
//   - the launcher's own code and constants that start-up ran and read (most of a
//     22 MB executable, mapped in 64 KiB runs): their mappings are dropped, the page
//     cache keeps the pages, and what steady state runs maps back in on first use
//     (a minor fault). Only mappings that hold nothing but the file's own pages: a
//     read-only mapping can hold pages written before it became read-only (RELRO,
//     the relocated pointers of a position-independent build), which would come back
//     from the file unrelocated.
func releaseStartup() {
	debug.SetGCPercent(50)
	debug.FreeOSMemory()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return
	}
	defer f.Close()
	for _, m := range fileOnlyMappings(f, exe) {
		unix.Syscall(unix.SYS_MADVISE, uintptr(m.start), uintptr(m.end-m.start), unix.MADV_DONTNEED)
	}
}

type mapping struct{ start, end uint64 }

// fileOnlyMappings reads /proc/self/smaps and returns the read-only mappings of path
// whose pages are all the file's: none anonymous (copied on write, as relocation
// does), so that dropping them loses nothing.
func fileOnlyMappings(smaps io.Reader, path string) []mapping {
	var out []mapping
	var cur *mapping // a candidate whose Anonymous line is still to come
	sc := bufio.NewScanner(smaps)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if lo, hi, ok := strings.Cut(fields[0], "-"); ok && len(fields) >= 5 {
			// 00400000-00d1a000 r-xp 00000000 fd:01 1234 /path/to/launch
			cur = nil
			start, err1 := strconv.ParseUint(lo, 16, 64)
			end, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 == nil && err2 == nil && len(fields) >= 6 && fields[5] == path && !strings.ContainsRune(fields[1], 'w') {
				cur = &mapping{start, end}
			}
			continue
		}
		if cur != nil && fields[0] == "Anonymous:" {
			if len(fields) >= 2 && fields[1] == "0" {
				out = append(out, *cur)
			}
			cur = nil
		}
	}
	return out
}
