package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// container: the base image's size, and the time from `podman run` to the app's first
// log line, for examples/hello in an image FROM the base image: started directly, under
// the launcher with tracing off, and traced with the documented capabilities.
func container(env *benchEnv) error {
	const rounds = 15
	podmanEnv := os.Environ()
	dir, err := os.MkdirTemp("", "bench-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := testenv.ImageBinaries(dir, env.launch, "amd64"); err != nil {
		return err
	}
	const base = "localhost/otel-go-launcher-bench"
	image := exec.Command("scripts/image.sh")
	image.Env = append(podmanEnv, "BIN_DIR="+dir, "IMAGE="+base, "VERSION=bench", "PLATFORMS=linux/amd64", "CONTAINER_TOOL=podman")
	if out, err := image.CombinedOutput(); err != nil {
		return fmt.Errorf("base image: %v\n%s", err, out)
	}
	if podmanRuns(podmanEnv) != nil { // these VMs need the tests' configuration
		conf, _ := filepath.Abs("e2e/testdata/podman/containers.conf")
		podmanEnv = append(podmanEnv, "CONTAINERS_CONF="+conf)
		if err := podmanRuns(podmanEnv); err != nil {
			return err
		}
	}
	app, err := testenv.BuildProgram("./examples/hello", "CGO_ENABLED=0", "GOFLAGS=-trimpath -ldflags=-w")
	if err != nil {
		return err
	}
	if err := copyFile(app, filepath.Join(dir, "app")); err != nil {
		return err
	}
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM "+base+":bench\nCOPY app /app\nENTRYPOINT [\"launch\", \"--\", \"/app\"]\n"), 0o644)
	const svc = "localhost/otel-go-launcher-bench-hello:bench"
	if out, err := exec.Command("podman", "build", "-q", "-t", svc, dir).CombinedOutput(); err != nil {
		return fmt.Errorf("service image: %v\n%s", err, out)
	}
	size, _ := exec.Command("podman", "image", "inspect", base+":bench", "--format", "{{.Size}}").Output()
	st, _ := os.Stat(env.launch)

	const direct, directCaps, off, traced = 0, 1, 2, 3
	caps := []string{"--cap-add", "SYS_ADMIN,BPF,PERFMON,NET_ADMIN"}
	firstLine := func(how int) (time.Duration, error) {
		args := []string{"run", "--rm", "--network", "none", "-e", "OTEL_TRACES_EXPORTER=none"}
		switch how {
		case direct:
			args = append(args, "--entrypoint", "/app")
		case directCaps:
			args = append(append(args, caps...), "--entrypoint", "/app")
		case off:
			args = append(args, "-e", "OTEL_SDK_DISABLED=true")
		case traced:
			args = append(args, caps...)
		}
		name := fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), how)
		args = append(args, "--name", name, svc, "-addr", "127.0.0.1:8080")
		cmd := exec.Command("podman", args...)
		cmd.Env = podmanEnv
		stderr, err := cmd.StderrPipe()
		if err != nil {
			return 0, err
		}
		begin := time.Now()
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		defer func() {
			k := exec.Command("podman", "rm", "-f", "-t", "0", name)
			k.Env = podmanEnv
			k.Run()
			cmd.Wait()
		}()
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening on") {
				return time.Since(begin), nil
			}
		}
		return 0, fmt.Errorf("podman run (case %d): no log line", how)
	}
	times := make([][]time.Duration, 4)
	for i := 0; i < rounds; i++ {
		for how := range times {
			d, err := firstLine(how)
			if err != nil {
				return err
			}
			times[how] = append(times[how], d)
		}
	}
	fmt.Printf("### Containers (podman, %d rounds, interleaved)\n\n", rounds)
	fmt.Printf("Base image: %.1f MB (the launcher binary: %.1f MB; the rest is CA certificates).\n\n",
		mustFloat(strings.TrimSpace(string(size)))/1e6, float64(st.Size())/1e6)
	fmt.Println("| `podman run` to the app's first log line | median | p90 |")
	fmt.Println("|---|---:|---:|")
	fmt.Printf("| app started directly (`--entrypoint /app`) | %s | %s |\n", ms(median(times[direct])), ms(pct(times[direct], 90)))
	fmt.Printf("| app started directly, with the capabilities | %s | %s |\n", ms(median(times[directCaps])), ms(pct(times[directCaps], 90)))
	fmt.Printf("| under launch, tracing off (`OTEL_SDK_DISABLED=true`: the launcher as an init only) | %s | %s |\n", ms(median(times[off])), ms(pct(times[off], 90)))
	fmt.Printf("| under launch, traced (documented ENTRYPOINT and capabilities) | %s | %s |\n", ms(median(times[traced])), ms(pct(times[traced], 90)))
	fmt.Printf("| **added, traced** | **%s** | |\n\n", ms(median(times[traced])-median(times[direct])))
	return nil
}

// podmanRuns says whether podman runs a container with env's configuration.
func podmanRuns(env []string) error {
	cmd := exec.Command("podman", "run", "--rm", "--network", "none", "localhost/otel-go-launcher-bench:bench", "launch", "--version")
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

func mustFloat(s string) float64 {
	f, _ := strconv.ParseFloat(s, 64)
	return f
}
