package main

import (
	"bufio"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// kafkaGoBench: what issue 32 asks of the kafka-go probe, at most 2 uprobe hits per
// produce call. The kafkaservice target (Go 1.26, kafka-go v0.4.51, its consuming
// workers off) answers GET /produce with one WriteMessages call of one message and GET
// /produce-each?n=10 with ten, against the tests' broker (kfake) on the loopback. A
// call waits for its batch to be written: the Writer's BatchTimeout, 5 ms, dominates
// its latency.
func kafkaGoBench(env *benchEnv) error {
	tgs, err := testenv.BuildKafkaGoErr(testenv.ModuleBuild{Version: testenv.KafkaGoDefault, Toolchain: "go1.26.8"})
	if err != nil {
		return err
	}
	const topic = "bench"
	broker, stop, err := startKafka(topic)
	if err != nil {
		return err
	}
	defer stop()
	return clientOpsBench(env, clientOps{
		library:  "kafka-go",
		op:       "produce call",
		heading:  "kafka-go (v0.4.51, kfake on the loopback, one small message a call, BatchTimeout 5 ms; Go 1.26",
		target:   tgs[0].Path,
		programs: []string{"write_", "fetch_"},
		paths:    [2]string{"/produce?value=v", "/produce-each?value=v&n=10"},
		argv: func(addr string, r, i int) []string {
			return []string{tgs[0].Path, "-addr", addr, "-broker", broker, "-topic", topic, "-consume=false"}
		},
	})
}

// startKafka runs the tests' Kafka-protocol broker (kfake, the kafkabroker target) on a
// free port of the loopback with topics made, and returns its address.
func startKafka(topics ...string) (addr string, stop func(), err error) {
	built, err := testenv.BuildTargetsErr("kafkabroker", []string{testenv.KafkaBrokerToolchain}, []testenv.Variant{testenv.Plain})
	if err != nil {
		return "", nil, fmt.Errorf("the Kafka broker (kfake, from the module proxy) did not build: %w", err)
	}
	cmd := exec.Command(built[0].Path, "-topics", strings.Join(topics, ","))
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start the Kafka broker %s: %w", built[0].Path, err)
	}
	stop = func() { cmd.Process.Kill(); cmd.Wait() }
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "ready "); ok {
				ready <- a
			}
		}
		close(ready)
	}()
	select {
	case a, ok := <-ready:
		if ok {
			return a, stop, nil
		}
	case <-time.After(30 * time.Second):
	}
	stop()
	return "", nil, errors.New("the Kafka broker was not ready in 30 s")
}
