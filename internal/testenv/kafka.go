package testenv

import (
	"bufio"
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
	var log SyncBuffer
	broker := exec.Command(built[0].Path, "-topics", strings.Join(topics, ","))
	broker.Stderr = &log
	out, err := broker.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := broker.Start(); err != nil {
		t.Fatalf("start the Kafka broker %s: %v", built[0].Path, err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			broker.Process.Signal(syscall.SIGKILL)
			broker.Wait()
		})
	}
	t.Cleanup(stop)
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
		if !ok {
			stop()
			t.Fatalf("the Kafka broker exited before it was ready:\n%s", log.String())
		}
		return a, stop
	case <-time.After(30 * time.Second):
		stop()
		t.Fatalf("the Kafka broker was not ready in 30 s:\n%s", log.String())
	}
	return "", nil
}
