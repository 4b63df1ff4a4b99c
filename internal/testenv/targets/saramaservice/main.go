// Command saramaservice is an HTTP service that produces and consumes Kafka messages
// through IBM/sarama, for the sarama probe's tests: its handlers send with a
// SyncProducer (SendMessage, and SendMessages for a batch) and an AsyncProducer, with
// and without a traceparent header the app wrote, and a ConsumerGroup's handler
// consumes the topic in ConsumeClaim, making an HTTP call for every message so that a
// consumer span's children can be checked.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/IBM/sarama"
)

// consumed is what the consumer group received, for /consumed: one line per message.
type consumed struct {
	mu    sync.Mutex
	lines []string
}

func (c *consumed) add(m *sarama.ConsumerMessage) {
	line := fmt.Sprintf("group topic=%s partition=%d offset=%d value=%s", m.Topic, m.Partition, m.Offset, m.Value)
	for _, h := range m.Headers {
		line += fmt.Sprintf(" header:%s=%s", h.Key, h.Value)
	}
	c.mu.Lock()
	c.lines = append(c.lines, line)
	c.mu.Unlock()
}

// groupHandler is the app's sarama.ConsumerGroupHandler.
type groupHandler struct {
	got  *consumed
	call func(context.Context)
}

func (groupHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (groupHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h groupHandler) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for m := range claim.Messages() {
		h.got.add(m)
		h.call(s.Context())
		s.MarkMessage(m, "")
	}
	return nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	broker := flag.String("broker", "127.0.0.1:9092", "the Kafka broker's host:port")
	topic := flag.String("topic", "orders", "the topic written and consumed")
	consume := flag.Bool("consume", true, "consume the topic in a consumer group (off for benchmarks of producing alone)")
	flag.Parse()

	cfg := sarama.NewConfig()
	// Record headers need the v2 record batch (Kafka 0.11 on); older sarama releases
	// default to an older protocol.
	cfg.Version = sarama.V2_1_0_0
	cfg.Producer.RequiredAcks = sarama.WaitForLocal
	cfg.Producer.Return.Successes = true // a SyncProducer needs them
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.MaxWaitTime = 100 * time.Millisecond
	brokers := []string{*broker}
	syncProducer, err := sarama.NewSyncProducer(brokers, cfg)
	if err != nil {
		log.Fatalf("saramaservice: connect a SyncProducer to %s: %v", *broker, err)
	}
	defer syncProducer.Close()
	asyncProducer, err := sarama.NewAsyncProducer(brokers, cfg)
	if err != nil {
		log.Fatalf("saramaservice: connect an AsyncProducer to %s: %v", *broker, err)
	}
	defer asyncProducer.Close()
	// The AsyncProducer's results go back to the request that sent the message.
	var pendingMu sync.Mutex
	pending := map[*sarama.ProducerMessage]chan error{}
	answer := func(m *sarama.ProducerMessage, err error) {
		pendingMu.Lock()
		defer pendingMu.Unlock()
		if done, ok := pending[m]; ok { // gone if its request was cancelled
			done <- err
		}
	}
	go func() {
		for m := range asyncProducer.Successes() {
			answer(m, nil)
		}
	}()
	go func() {
		for e := range asyncProducer.Errors() {
			answer(e.Msg, e.Err)
		}
	}()

	fail := func(w http.ResponseWriter, err error) { http.Error(w, err.Error(), http.StatusBadGateway) }
	// message is the message a request asks for: ?value=, padded to ?bytes= if given
	// (over Producer.MaxMessageBytes, 1 MB, it fails), ?key= if given, and
	// ?traceparent= as a record header the app writes itself.
	message := func(r *http.Request, value string) *sarama.ProducerMessage {
		if n, _ := strconv.Atoi(r.URL.Query().Get("bytes")); n > len(value) {
			value += strings.Repeat("x", n-len(value))
		}
		m := &sarama.ProducerMessage{Topic: *topic, Value: sarama.StringEncoder(value)}
		if k := r.URL.Query().Get("key"); k != "" {
			m.Key = sarama.StringEncoder(k)
		}
		if tp := r.URL.Query().Get("traceparent"); tp != "" {
			m.Headers = append(m.Headers, sarama.RecordHeader{Key: []byte("traceparent"), Value: []byte(tp)})
		}
		return m
	}

	mux := http.NewServeMux()
	// One message, SyncProducer.SendMessage; ?times= calls of it, one after the other.
	mux.HandleFunc("/produce", func(w http.ResponseWriter, r *http.Request) {
		times := 1
		if t := r.URL.Query().Get("times"); t != "" {
			if times, _ = strconv.Atoi(t); times < 1 {
				http.Error(w, "times: want a count of calls, 1 or more", http.StatusBadRequest)
				return
			}
		}
		for i := 0; i < times; i++ {
			if _, _, err := syncProducer.SendMessage(message(r, r.URL.Query().Get("value"))); err != nil {
				fail(w, err)
				return
			}
		}
		fmt.Fprintln(w, "produced", times)
	})
	// One message with the request's context, SendMessageContext where the release has
	// it (v1.62.0; SendMessage in v1.40.1), from a goroutine of the handler with
	// ?goroutine=1: where only the context leads to the request's span.
	mux.HandleFunc("/produce-ctx", func(w http.ResponseWriter, r *http.Request) {
		send := func() error {
			m := message(r, r.URL.Query().Get("value"))
			if p, ok := syncProducer.(interface {
				SendMessageContext(context.Context, *sarama.ProducerMessage) (int32, int64, error)
			}); ok {
				_, _, err := p.SendMessageContext(r.Context(), m)
				return err
			}
			_, _, err := syncProducer.SendMessage(m)
			return err
		}
		var err error
		if r.URL.Query().Get("goroutine") != "" {
			done := make(chan error)
			go func() { done <- send() }()
			err = <-done
		} else {
			err = send()
		}
		if err != nil {
			fail(w, err)
			return
		}
		fmt.Fprintln(w, "produced 1")
	})
	// ?n= messages in one SyncProducer.SendMessages call, valued VALUE-0, VALUE-1...;
	// ?clone=1, ?mixed=1 below.
	mux.HandleFunc("/produce-batch", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil || n < 1 {
			http.Error(w, "n: want a count of messages, 1 or more", http.StatusBadRequest)
			return
		}
		var msgs []*sarama.ProducerMessage
		for i := 0; i < n; i++ {
			m := message(r, fmt.Sprintf("%s-%d", r.URL.Query().Get("value"), i))
			switch {
			case r.URL.Query().Get("mixed") != "" && i == n-1:
				m.Topic = *topic + "-b" // ?mixed=1: the last to the topic's -b, a batch of two topics
			case r.URL.Query().Get("clone") != "":
				m.Topic = strings.Clone(m.Topic) // ?clone=1: one topic, a string of its own each
			}
			msgs = append(msgs, m)
		}
		if err := syncProducer.SendMessages(msgs); err != nil {
			fail(w, err)
			return
		}
		fmt.Fprintln(w, "produced", n)
	})
	// One message through the AsyncProducer's Input, answered when it is acknowledged.
	mux.HandleFunc("/produce-async", func(w http.ResponseWriter, r *http.Request) {
		m := message(r, r.URL.Query().Get("value"))
		done := make(chan error, 1)
		pendingMu.Lock()
		pending[m] = done
		pendingMu.Unlock()
		defer func() {
			pendingMu.Lock()
			delete(pending, m)
			pendingMu.Unlock()
		}()
		asyncProducer.Input() <- m
		select {
		case err := <-done:
			if err != nil {
				fail(w, err)
				return
			}
		case <-r.Context().Done():
			return
		}
		fmt.Fprintln(w, "produced 1")
	})
	var got consumed
	mux.HandleFunc("/consumed", func(w http.ResponseWriter, r *http.Request) {
		got.mu.Lock()
		defer got.mu.Unlock()
		for _, l := range got.lines {
			fmt.Fprintln(w, l)
		}
	})
	mux.HandleFunc("/after-consume", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	afterConsume := "http://" + *addr + "/after-consume"
	call := func(ctx context.Context) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, afterConsume, nil)
		if resp, err := http.DefaultClient.Do(req); err != nil {
			log.Printf("saramaservice: call %s after a message: %v", afterConsume, err)
		} else {
			resp.Body.Close()
		}
	}
	// A consumer group named after the topic: a service that follows another on the
	// same broker would otherwise wait for the gone member's session to time out.
	groupName := "saramaservice-" + *topic
	consumerDone := make(chan struct{})
	if !*consume {
		close(consumerDone)
	} else if group, err := sarama.NewConsumerGroup(brokers, groupName, cfg); err != nil {
		log.Fatalf("saramaservice: join consumer group %s at %s: %v", groupName, *broker, err)
	} else {
		defer group.Close()
		go func() {
			defer close(consumerDone)
			// Consume returns at each rebalance; the loop rejoins.
			for ctx.Err() == nil {
				if err := group.Consume(ctx, []string{*topic}, groupHandler{got: &got, call: call}); err != nil && !errors.Is(err, sarama.ErrClosedConsumerGroup) && ctx.Err() == nil {
					log.Printf("saramaservice: consume %s: %v", *topic, err)
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}

	srv := &http.Server{Addr: *addr, Handler: mux}
	go func() {
		<-ctx.Done()
		srv.Shutdown(context.Background())
	}()
	log.Printf("saramaservice: listening on %s (broker %s, topic %s)", *addr, *broker, *topic)
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		log.Fatal(err)
	}
	<-consumerDone
}
