// Command kafkaservice is an HTTP service that produces and consumes Kafka messages
// through segmentio/kafka-go, for the kafka-go probe's tests: its handlers write with
// Writer.WriteMessages (one message, a batch, a message carrying a traceparent header
// the app wrote, one too large, which it refuses, messages that name their topics), and
// two workers consume the topic, one with Reader.ReadMessage and one with
// Reader.FetchMessage, each in a consumer group of its own, and make an HTTP call for
// every message, so that a consumer span's children can be checked.
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
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
)

// consumed is what the workers received, for /consumed: one line per message.
type consumed struct {
	mu    sync.Mutex
	lines []string
}

func (c *consumed) add(worker string, m kafka.Message) {
	line := fmt.Sprintf("%s topic=%s partition=%d offset=%d value=%s", worker, m.Topic, m.Partition, m.Offset, m.Value)
	for _, h := range m.Headers {
		line += fmt.Sprintf(" header:%s=%s", h.Key, h.Value)
	}
	c.mu.Lock()
	c.lines = append(c.lines, line)
	c.mu.Unlock()
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	broker := flag.String("broker", "127.0.0.1:9092", "the Kafka broker's host:port")
	topic := flag.String("topic", "orders", "the topic written and consumed")
	consume := flag.Bool("consume", true, "run the consuming workers (the benchmark of produce calls runs none)")
	flag.Parse()

	// A short batch timeout: WriteMessages returns when its batch is written, and the
	// default (1 s) would make every request wait for it.
	writer := &kafka.Writer{
		Addr:         kafka.TCP(*broker),
		Topic:        *topic,
		BatchTimeout: 5 * time.Millisecond,
		RequiredAcks: kafka.RequireOne,
	}
	defer writer.Close()
	fail := func(w http.ResponseWriter, err error) { http.Error(w, err.Error(), http.StatusBadGateway) }
	// message is the message a request asks for: ?value=, keyed "k3y-s3cr3t-" and the
	// value (a key no exported byte may hold), and ?traceparent= as a record header the
	// app writes itself.
	message := func(r *http.Request, value string) kafka.Message {
		m := kafka.Message{Key: []byte("k3y-s3cr3t-" + value), Value: []byte(value)}
		if tp := r.URL.Query().Get("traceparent"); tp != "" {
			m.Headers = append(m.Headers, kafka.Header{Key: "traceparent", Value: []byte(tp)})
		}
		return m
	}

	mux := http.NewServeMux()
	// One message.
	mux.HandleFunc("/produce", func(w http.ResponseWriter, r *http.Request) {
		if err := writer.WriteMessages(r.Context(), message(r, r.URL.Query().Get("value"))); err != nil {
			fail(w, err)
			return
		}
		fmt.Fprintln(w, "produced 1")
	})
	// ?n= messages in one call, valued VALUE-0, VALUE-1...
	mux.HandleFunc("/produce-batch", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil || n < 1 {
			http.Error(w, "n: want a count of messages, 1 or more", http.StatusBadRequest)
			return
		}
		var msgs []kafka.Message
		for i := 0; i < n; i++ {
			msgs = append(msgs, message(r, fmt.Sprintf("%s-%d", r.URL.Query().Get("value"), i)))
		}
		if err := writer.WriteMessages(r.Context(), msgs...); err != nil {
			fail(w, err)
			return
		}
		fmt.Fprintln(w, "produced", n)
	})
	// ?n= calls of WriteMessages, one message each, valued VALUE-0, VALUE-1...
	mux.HandleFunc("/produce-each", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil || n < 1 {
			http.Error(w, "n: want a count of calls, 1 or more", http.StatusBadRequest)
			return
		}
		for i := 0; i < n; i++ {
			if err := writer.WriteMessages(r.Context(), message(r, fmt.Sprintf("%s-%d", r.URL.Query().Get("value"), i))); err != nil {
				fail(w, err)
				return
			}
		}
		fmt.Fprintln(w, "produced", n)
	})
	// ?topics=A,B...: a message to each topic, through a Writer that names none (the
	// messages do); the same name twice is two strings of the same bytes.
	anyWriter := &kafka.Writer{
		Addr:         kafka.TCP(*broker),
		BatchTimeout: 5 * time.Millisecond,
		RequiredAcks: kafka.RequireOne,
	}
	defer anyWriter.Close()
	mux.HandleFunc("/produce-topics", func(w http.ResponseWriter, r *http.Request) {
		var msgs []kafka.Message
		for i, t := range strings.Split(r.URL.Query().Get("topics"), ",") {
			m := message(r, fmt.Sprintf("%s-%d", r.URL.Query().Get("value"), i))
			m.Topic = t
			msgs = append(msgs, m)
		}
		if err := anyWriter.WriteMessages(r.Context(), msgs...); err != nil {
			fail(w, err)
			return
		}
		fmt.Fprintln(w, "produced", len(msgs))
	})
	// A message larger than the Writer's BatchBytes (1 MiB): WriteMessages refuses it
	// with a MessageTooLargeError, before any request.
	mux.HandleFunc("/produce-too-large", func(w http.ResponseWriter, r *http.Request) {
		err := writer.WriteMessages(r.Context(), kafka.Message{Value: make([]byte, 2<<20)})
		if err == nil {
			http.Error(w, "a 2 MiB message was written", http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "refused: %T\n", err)
	})
	// What the workers consumed so far.
	var got consumed
	mux.HandleFunc("/consumed", func(w http.ResponseWriter, r *http.Request) {
		got.mu.Lock()
		defer got.mu.Unlock()
		for _, l := range got.lines {
			fmt.Fprintln(w, l)
		}
	})
	// What a worker calls for each message it consumed.
	mux.HandleFunc("/after-consume", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	afterConsume := "http://" + *addr + "/after-consume"
	// Consumer groups named after the topic: a service that follows another on the
	// same broker would otherwise wait for the gone member's session to time out.
	reader := func(group string) *kafka.Reader {
		return kafka.NewReader(kafka.ReaderConfig{
			Brokers:     []string{*broker},
			GroupID:     group,
			Topic:       *topic,
			StartOffset: kafka.FirstOffset,
			MaxWait:     100 * time.Millisecond,
		})
	}
	// call is the HTTP call made for each consumed message, in the worker's goroutine.
	call := func(ctx context.Context) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, afterConsume, nil)
		if resp, err := http.DefaultClient.Do(req); err != nil {
			log.Printf("kafkaservice: call %s after a message: %v", afterConsume, err)
		} else {
			resp.Body.Close()
		}
	}
	var workers sync.WaitGroup
	if *consume {
		workers.Add(2)
		// ReadMessage: a consumer group's reader commits each message as it returns it.
		go func() {
			defer workers.Done()
			r := reader("kafkaservice-read-" + *topic)
			defer r.Close()
			for {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					if ctx.Err() == nil {
						log.Printf("kafkaservice: ReadMessage: %v", err)
					}
					return
				}
				got.add("read", m)
				call(ctx)
			}
		}()
		// FetchMessage: the app commits after handling the message.
		go func() {
			defer workers.Done()
			r := reader("kafkaservice-fetch-" + *topic)
			defer r.Close()
			for {
				m, err := r.FetchMessage(ctx)
				if err != nil {
					if ctx.Err() == nil {
						log.Printf("kafkaservice: FetchMessage: %v", err)
					}
					return
				}
				got.add("fetch", m)
				call(ctx)
				if err := r.CommitMessages(ctx, m); err != nil && ctx.Err() == nil {
					log.Printf("kafkaservice: CommitMessages: %v", err)
				}
			}
		}()

	}

	srv := &http.Server{Addr: *addr, Handler: mux}
	go func() {
		<-ctx.Done()
		srv.Shutdown(context.Background())
	}()
	log.Printf("kafkaservice: listening on %s (broker %s, topic %s)", *addr, *broker, *topic)
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		log.Fatal(err)
	}
	workers.Wait()
}
