package main

import (
	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// saramaBench: what the sarama probe costs, its target at most 2 uprobe hits per
// produce call. The saramaservice target (Go 1.26, sarama v1.62.0, its consumer group
// off: producing alone) answers GET /produce with one SyncProducer.SendMessage and
// GET /produce?times=10 with ten, one after the other, to the tests' broker (kfake,
// a process of its own on the loopback).
func saramaBench(env *benchEnv) error {
	tgs, err := testenv.BuildSaramaErr(testenv.ModuleBuild{Version: testenv.SaramaDefault, Toolchain: "go1.26.8"})
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
		library:  "sarama",
		op:       "SendMessage",
		heading:  "sarama (v1.62.0 SyncProducer.SendMessage of a 5-byte message to kfake on the loopback, acks from the leader; Go 1.26",
		target:   tgs[0].Path,
		programs: []string{"send_message_", "send_messages_"},
		paths:    [2]string{"/produce?value=bench", "/produce?value=bench&times=10"},
		argv: func(addr string, r, i int) []string {
			return []string{tgs[0].Path, "-addr", addr, "-broker", broker, "-topic", topic, "-consume=false"}
		},
	})
}

// saramaAsyncBench: the AsyncProducer's spans, at most 2 uprobe hits per message. The
// saramaasync target (Go 1.26, sarama v1.62.0, no SyncProducer) answers GET
// /produce-async with one message put on the producer's Input and acknowledged, and
// ?n=10 with ten at once (sarama batches them as it likes: the hits per message are one,
// and one per batch).
func saramaAsyncBench(env *benchEnv) error {
	tgs, err := testenv.BuildSaramaAsyncErr(testenv.ModuleBuild{Version: testenv.SaramaDefault, Toolchain: "go1.26.8"})
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
		library:  "sarama",
		op:       "message",
		heading:  "sarama AsyncProducer (v1.62.0, 5-byte messages to kfake on the loopback, acks from the leader; Go 1.26",
		target:   tgs[0].Path,
		programs: []string{"partition_message_", "return_successes_", "return_errors_"},
		paths:    [2]string{"/produce-async?value=bench", "/produce-async?value=bench&n=10"},
		argv: func(addr string, r, i int) []string {
			return []string{tgs[0].Path, "-addr", addr, "-broker", broker, "-topic", topic}
		},
	})
}
