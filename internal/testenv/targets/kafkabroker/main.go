// kafkabroker runs franz-go's kfake, an in-memory Kafka-protocol cluster of one
// broker, as a process of its own: the tests need a real broker and no Kafka server
// installs from Debian here. It listens on 127.0.0.1 (kfake binds there), creates the
// topics it is given, prints "ready ADDR" on stdout and serves until SIGINT or SIGTERM.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	port := flag.Int("port", 0, "port to listen on at 127.0.0.1 (0: any free port)")
	topics := flag.String("topics", "", "comma-separated topics to create")
	partitions := flag.Int("partitions", 1, "partitions of each topic created")
	flag.Parse()

	opts := []kfake.Opt{
		kfake.Ports(*port),
		// Clients that name a topic not created here (sarama's consumer groups ask
		// for __consumer_offsets through the group protocol, apps may write new
		// topics) get one instead of UNKNOWN_TOPIC_OR_PARTITION retries.
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(*partitions),
	}
	if *topics != "" {
		opts = append(opts, kfake.SeedTopics(int32(*partitions), strings.Split(*topics, ",")...))
	}
	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kafkabroker: start the kfake cluster on port %d: %v\n", *port, err)
		os.Exit(1)
	}
	defer cluster.Close()
	fmt.Printf("ready %s\n", cluster.ListenAddrs()[0])

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}
