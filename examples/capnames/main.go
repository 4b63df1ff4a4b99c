// Command capnames prints processes' capability sets by name, as /proc/PID/status has
// them in hex: what `make demo` shows of the launcher and of its app.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/otel-go-launcher/otel-go-launcher/internal/capability"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: capnames PID...")
		os.Exit(2)
	}
	launcher := capability.SetOf(capability.Launcher...)
	code := 0
	for _, arg := range os.Args[1:] {
		name, eff, bnd, err := read(arg)
		if err != nil {
			fmt.Fprintf(os.Stderr, "capnames: %v\n", err)
			code = 1
			continue
		}
		fmt.Printf("%s (pid %s): of the launcher's own capabilities (%s), it has %s\n", name, arg, launcher.Join(" "), list(eff&launcher))
		fmt.Printf("  effective: %s\n", list(eff))
		if bnd == eff {
			fmt.Printf("  bounding:  the same\n")
		} else {
			fmt.Printf("  bounding:  %s\n", list(bnd))
		}
	}
	os.Exit(code)
}

func list(s capability.Set) string {
	if s == 0 {
		return "none"
	}
	return s.Join(" ")
}

// read takes a process's name and its effective and bounding sets from /proc.
func read(pid string) (name string, eff, bnd capability.Set, err error) {
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return "", 0, 0, fmt.Errorf("reading process %s's capabilities: %w (is it still running?)", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		v = strings.TrimSpace(v)
		switch k {
		case "Name":
			name = v
		case "CapEff", "CapBnd":
			n, perr := strconv.ParseUint(v, 16, 64)
			if perr != nil {
				return "", 0, 0, fmt.Errorf("/proc/%s/status: %s %q is not a hex mask", pid, k, v)
			}
			if k == "CapEff" {
				eff = capability.Set(n)
			} else {
				bnd = capability.Set(n)
			}
		}
	}
	return name, eff, bnd, sc.Err()
}
