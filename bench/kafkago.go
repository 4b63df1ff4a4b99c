package main

import (
	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// kafkaGoBench: what the kafka-go probe costs, its target at most 2 uprobe hits per
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
	broker, stop, err := testenv.StartKafkaErr(topic)
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
