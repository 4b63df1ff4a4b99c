package main

import (
	"fmt"
	"regexp"
	"strconv"
	"time"
)

// stall: no span lost to a collector that keeps up on average but not at every
// moment. The test HTTP server under the launcher at a fixed rate (open loop), spans
// to the bench's receiver made slow: paused for 2 s mid-run, or taking 90 ms for every
// export (a disk that fsyncs each); with the launcher's queue bound (--max-queue's
// default) and with the SDK's 2048 (OTEL_BSP_MAX_QUEUE_SIZE=2048). Counted: requests
// answered, spans received, spans the launcher says it dropped, its peak RSS.
func stall(env *benchEnv) error {
	tg, recv, err := serverAndReceiver()
	if err != nil {
		return err
	}
	defer recv.Stop()
	const perSecond, dur, workers = 5000, 8 * time.Second, 64
	type slowness struct {
		name  string
		apply func()
	}
	keepsUp := slowness{"keeps up", func() {}}
	paused := slowness{"paused 2 s, 2 s in", func() {
		time.AfterFunc(2*time.Second, func() { recv.Pause(2 * time.Second) })
	}}
	fsync := slowness{"90 ms an export", func() { recv.Latency(90 * time.Millisecond) }}
	cases := []struct {
		collector slowness
		queue     string // OTEL_BSP_MAX_QUEUE_SIZE, "" for the launcher's default
	}{{keepsUp, ""}, {paused, ""}, {paused, "2048"}, {fsync, ""}, {fsync, "2048"}}

	fmt.Printf("### A slow collector (%d req/s for %s, open loop; Go 1.26 net/http under the launcher)\n\n", perSecond, dur)
	fmt.Println("| collector | queue bound | requests answered | spans received | received / answered | said dropped | launcher peak RSS |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|")
	for _, c := range cases {
		recv.Pause(0)
		recv.Latency(0)
		var extra []string
		queue := "32768 (default)"
		if c.queue != "" {
			extra = append(extra, "OTEL_BSP_MAX_QUEUE_SIZE="+c.queue)
			queue = c.queue + " (the SDK's)"
		}
		s, err := startServer(env, tg, true, recv.Endpoint, extra...)
		if err != nil {
			return err
		}
		load(s.addr, 1, 200*time.Millisecond)
		time.Sleep(time.Second) // the warm-up's spans arrive before counting starts
		base := recv.Received()
		c.collector.apply()
		_, ok, _ := openLoop(s.addr, perSecond, dur, workers)
		recv.Latency(0) // the last batches go at once: what is lost was lost during the run
		time.Sleep(3 * time.Second)
		peak := peakRSSKiB(s.launcher)
		s.stop()
		got := recv.Received() - base
		dropped := saidDropped(s.stderr.String())
		fmt.Printf("| %s | %s | %d | %d | **%.4f** | %d | %.1f MiB |\n", c.collector.name, queue, ok, got,
			float64(got)/float64(ok), dropped, float64(peak)/1024)
	}
	fmt.Println()
	return nil
}

// saidDropped sums the launcher's "N spans dropped" warnings.
func saidDropped(stderr string) int {
	n := 0
	for _, m := range regexp.MustCompile(`(\d+) spans dropped`).FindAllStringSubmatch(stderr, -1) {
		v, _ := strconv.Atoi(m[1])
		n += v
	}
	return n
}
