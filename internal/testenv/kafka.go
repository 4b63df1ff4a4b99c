package testenv

import (
	"bufio"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// KafkaBrokerToolchain builds the kafkabroker target: kfake needs Go 1.26.
const KafkaBrokerToolchain = "go1.26.8"

// StartKafka runs a Kafka-protocol broker (franz-go's kfake in the kafkabroker target,
// a process of its own) on a free port of the loopback with topics created, one
// partition each, stopped at the test's end or by stop (SIGKILL: its connections cut,
// its data gone), and returns its address. A broker that cannot be built (no module
// proxy) is a missing prerequisite.
func StartKafka(t testing.TB, topics ...string) (addr string, stop func()) {
	t.Helper()
	built, err := BuildTargetsErr("kafkabroker", []string{KafkaBrokerToolchain}, []Variant{Plain})
	Require(t, err == nil, "the Kafka broker for the tests (kfake, from the module proxy) did not build: %v", err)
	addr, stop, err = startKafka(built[0].Path, topics)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return addr, stop
}

// StartKafkaErr is StartKafka for the benchmarks: the caller stops it.
func StartKafkaErr(topics ...string) (addr string, stop func(), err error) {
	built, err := BuildTargetsErr("kafkabroker", []string{KafkaBrokerToolchain}, []Variant{Plain})
	if err != nil {
		return "", nil, fmt.Errorf("build the Kafka broker (kfake, from the module proxy): %w", err)
	}
	return startKafka(built[0].Path, topics)
}

func startKafka(path string, topics []string) (addr string, stop func(), err error) {
	var log SyncBuffer
	broker := exec.Command(path, "-topics", strings.Join(topics, ","))
	broker.Stderr = &log
	out, err := broker.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := broker.Start(); err != nil {
		return "", nil, fmt.Errorf("start the Kafka broker %s: %w", path, err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			broker.Process.Signal(syscall.SIGKILL)
			broker.Wait()
		})
	}
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
		stop()
		return "", nil, fmt.Errorf("the Kafka broker %s exited before it was ready:\n%s", path, log.String())
	case <-time.After(30 * time.Second):
		stop()
		return "", nil, fmt.Errorf("the Kafka broker %s was not ready in 30 s:\n%s", path, log.String())
	}
}
