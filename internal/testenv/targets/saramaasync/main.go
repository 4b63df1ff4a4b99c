// Command saramaasync is an HTTP service that produces Kafka messages through
// IBM/sarama's AsyncProducer only - no SyncProducer is linked in -, for the sarama
// probe's tests of AsyncProducer spans: GET /produce-async?n= puts n messages on the
// producer's Input and answers once each is acknowledged.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"

	"github.com/IBM/sarama"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	broker := flag.String("broker", "127.0.0.1:9092", "the Kafka broker's host:port")
	topic := flag.String("topic", "orders", "the topic written")
	flag.Parse()

	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_1_0_0
	cfg.Producer.RequiredAcks = sarama.WaitForLocal
	cfg.Producer.Return.Successes = true // to answer each request once its messages are written
	producer, err := sarama.NewAsyncProducer([]string{*broker}, cfg)
	if err != nil {
		log.Fatalf("saramaasync: connect an AsyncProducer to %s: %v", *broker, err)
	}
	defer producer.Close()
	// Each message's result goes back to the request that sent it.
	var pendingMu sync.Mutex
	pending := map[*sarama.ProducerMessage]chan error{}
	answer := func(m *sarama.ProducerMessage, err error) {
		pendingMu.Lock()
		defer pendingMu.Unlock()
		if done, ok := pending[m]; ok {
			done <- err
		}
	}
	go func() {
		for m := range producer.Successes() {
			answer(m, nil)
		}
	}()
	go func() {
		for e := range producer.Errors() {
			answer(e.Msg, e.Err)
		}
	}()

	mux := http.NewServeMux()
	// ?n= messages (default 1) valued ?value=, keyed ?key= if given.
	mux.HandleFunc("/produce-async", func(w http.ResponseWriter, r *http.Request) {
		n := 1
		if s := r.URL.Query().Get("n"); s != "" {
			if n, _ = strconv.Atoi(s); n < 1 {
				http.Error(w, "n: want a count of messages, 1 or more", http.StatusBadRequest)
				return
			}
		}
		done := make(chan error, n)
		var msgs []*sarama.ProducerMessage
		for i := 0; i < n; i++ {
			m := &sarama.ProducerMessage{Topic: *topic, Value: sarama.StringEncoder(r.URL.Query().Get("value"))}
			if k := r.URL.Query().Get("key"); k != "" {
				m.Key = sarama.StringEncoder(k)
			}
			msgs = append(msgs, m)
		}
		pendingMu.Lock()
		for _, m := range msgs {
			pending[m] = done
		}
		pendingMu.Unlock()
		defer func() {
			pendingMu.Lock()
			for _, m := range msgs {
				delete(pending, m)
			}
			pendingMu.Unlock()
		}()
		for _, m := range msgs {
			producer.Input() <- m
		}
		for range msgs {
			if err := <-done; err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
		}
		fmt.Fprintln(w, "produced", n)
	})

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	srv := &http.Server{Addr: *addr, Handler: mux}
	go func() {
		<-ctx.Done()
		srv.Shutdown(context.Background())
	}()
	log.Printf("saramaasync: listening on %s (broker %s, topic %s)", *addr, *broker, *topic)
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
