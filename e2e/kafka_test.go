package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// kafkaTraceparent is the header the services' apps write themselves on some messages.
const kafkaTraceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

// kafkaService is a Kafka test service and what it does.
type kafkaService struct {
	builds  func(t testing.TB) []testenv.Target
	workers []string // the names its /consumed lines start with: one per consumer
	async   bool     // it has /produce-async
}

var kafkaServices = map[string]kafkaService{
	"kafka-go": {
		builds:  func(t testing.TB) []testenv.Target { return testenv.BuildKafkaGo(t, testenv.KafkaGoBuilds...) },
		workers: []string{"read", "fetch"},
	},
	"sarama": {
		builds:  func(t testing.TB) []testenv.Target { return testenv.BuildSarama(t, testenv.SaramaBuilds...) },
		workers: []string{"group"},
		async:   true,
	},
}

// The Kafka test services, run bare (no launcher), against the tests' broker (kfake):
// every release of each library produces from a handler (one message, a batch, through
// sarama's AsyncProducer, with and without a traceparent header the app wrote), and
// each of its consumers receives every message once, with the header where it was
// written and nowhere else. What the probes' tests will build on.
func TestKafkaServicesBare(t *testing.T) {
	for _, lib := range []string{"kafka-go", "sarama"} {
		svc := kafkaServices[lib]
		targets := svc.builds(t)
		var topics []string
		for _, tg := range targets {
			topics = append(topics, kafkaTopic(tg))
		}
		// Topics made before the services start: consumers that subscribe to a topic
		// not there yet wait for a metadata refresh (sarama: 10 s), and kafka-go's
		// Writer before v0.4.34 cannot ask for one to be created.
		broker, _ := testenv.StartKafka(t, topics...)
		for _, tg := range targets {
			t.Run(lib+"/"+tg.Toolchain+"/"+tg.Variant.Name, func(t *testing.T) { kafkaServiceBare(t, svc, tg, broker) })
		}
	}
}

func kafkaServiceBare(t *testing.T, svc kafkaService, tg testenv.Target, broker string) {
	addr := freeAddr(t)
	topic := kafkaTopic(tg)
	r := start(t, opts{stdin: strings.NewReader("")}, tg.Path, "-addr", addr, "-broker", broker, "-topic", topic)
	firstRequest(t, addr, "/consumed")
	get := func(path string) { t.Helper(); getOK(t, r, addr, path) }

	// value -> whether the app wrote a traceparent on it.
	want := map[string]bool{}
	get("/produce?value=plain")
	want["plain"] = false
	get("/produce?value=carried&traceparent=" + kafkaTraceparent)
	want["carried"] = true
	get("/produce-batch?value=batch&n=3")
	for i := 0; i < 3; i++ {
		want[fmt.Sprintf("batch-%d", i)] = false
	}
	get("/produce-batch?value=carriedbatch&n=2&traceparent=" + kafkaTraceparent)
	for i := 0; i < 2; i++ {
		want[fmt.Sprintf("carriedbatch-%d", i)] = true
	}
	if svc.async {
		get("/produce-async?value=async")
		want["async"] = false
		get("/produce-async?value=carriedasync&traceparent=" + kafkaTraceparent)
		want["carriedasync"] = true
	}

	var lines []string
	ok := eventually(60*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/consumed")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		lines = strings.FieldsFunc(string(b), func(r rune) bool { return r == '\n' })
		return len(lines) >= len(want)*len(svc.workers)
	})
	if !ok {
		t.Fatalf("consumed %d of %d messages in 60 s:\n%s\n%s", len(lines), len(want)*len(svc.workers), strings.Join(lines, "\n"), r.stderr)
	}
	if len(lines) != len(want)*len(svc.workers) {
		t.Errorf("consumed %d messages, want %d:\n%s", len(lines), len(want)*len(svc.workers), strings.Join(lines, "\n"))
	}
	for _, worker := range svc.workers {
		for value, carried := range want {
			line := consumedLine(lines, worker, value)
			switch {
			case line == "":
				t.Errorf("%s: message %q not consumed:\n%s", worker, value, strings.Join(lines, "\n"))
			case !strings.Contains(line, " topic="+topic+" "):
				t.Errorf("%s: message %q from another topic: %s", worker, value, line)
			case carried != strings.Contains(line, " header:traceparent="+kafkaTraceparent):
				t.Errorf("%s: message %q: traceparent written %v, consumed as %s", worker, value, carried, line)
			}
		}
	}
}

// kafkaTopic is the topic of a service's build: one each, the broker is shared.
func kafkaTopic(tg testenv.Target) string {
	return strings.NewReplacer("/", "-", ".", "-").Replace(tg.String())
}

// consumedLine is the line of /consumed for worker's message of value, or "".
func consumedLine(lines []string, worker, value string) string {
	for _, l := range lines {
		if strings.HasPrefix(l, worker+" ") && strings.Contains(l+" ", " value="+value+" ") {
			return l
		}
	}
	return ""
}
