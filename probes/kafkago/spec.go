// Package kafkago instruments github.com/segmentio/kafka-go: a PRODUCER span per
// (*Writer).WriteMessages call and a CONSUMER span per message (*Reader).FetchMessage
// returns (ReadMessage calls it), with the messaging conventions. A consumed message
// that carries a traceparent header joins that trace. This file declares what the
// probe needs from a target binary.
package kafkago

import "github.com/otel-go-launcher/otel-go-launcher/offsets"

// Module is the instrumented module, and the oldest release supported: the first
// whose Writer has its own Topic (v0.4.0's keeps it in a WriterConfig); the fields
// read are in every release since (the offsets tracker measured each).
const (
	Module     = "github.com/segmentio/kafka-go"
	MinVersion = "v0.4.1"
)

// Functions the probe attaches to. A program links only what it calls: one that only
// produces lacks FetchMessage, one that only consumes WriteMessages.
const (
	writeMessages = "github.com/segmentio/kafka-go.(*Writer).WriteMessages" // (w, ctx, msgs ...Message) error
	fetchMessage  = "github.com/segmentio/kafka-go.(*Reader).FetchMessage"  // (r, ctx) (Message, error)
	specName      = "kafka-go"
)

// Fields the program reads: a Writer's topic; a Message's topic, partition, offset and
// headers (its Key and Value never), and its last field, Time, whose offset gives a
// Message's size (to step through a produce call's messages); a Header's key and
// value (the value of a traceparent header alone); a Reader's consumer group.
var (
	writerTopic      = offsets.FieldRef{Struct: Module + ".Writer", Field: "Topic"}
	messageTopic     = offsets.FieldRef{Struct: Module + ".Message", Field: "Topic"}
	messagePartition = offsets.FieldRef{Struct: Module + ".Message", Field: "Partition"}
	messageOffset    = offsets.FieldRef{Struct: Module + ".Message", Field: "Offset"}
	messageHeaders   = offsets.FieldRef{Struct: Module + ".Message", Field: "Headers"}
	messageTime      = offsets.FieldRef{Struct: Module + ".Message", Field: "Time"}
	readerConfig     = offsets.FieldRef{Struct: Module + ".Reader", Field: "config"}
	configGroupID    = offsets.FieldRef{Struct: Module + ".ReaderConfig", Field: "GroupID"}
	headerKey        = offsets.FieldRef{Struct: Module + "/protocol.Header", Field: "Key"}
	headerValue      = offsets.FieldRef{Struct: Module + "/protocol.Header", Field: "Value"}
)

// trackerProgram reaches the functions and types the probe reads: the offsets tracker
// builds it with each kafka-go release (it never runs).
const trackerProgram = `package main

import (
	"context"

	"github.com/segmentio/kafka-go"
)

func main() {
	ctx := context.Background()
	w := &kafka.Writer{Addr: kafka.TCP("127.0.0.1:1"), Topic: "t"}
	w.WriteMessages(ctx, kafka.Message{Headers: []kafka.Header{{Key: "k"}}})
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{"127.0.0.1:1"}, GroupID: "g", Topic: "t"})
	if m, err := r.FetchMessage(ctx); err == nil {
		println(m.Topic, m.Partition, m.Offset, len(m.Headers), m.Time.IsZero())
	}
	r.ReadMessage(ctx)
}
`

// Spec: the entry and RETs of WriteMessages and FetchMessage, two hits per produce call
// and per consumed message.
var Spec = offsets.Spec{
	Name:       specName,
	Module:     Module,
	MinVersion: MinVersion,
	Functions: []offsets.FuncSpec{
		{Symbols: []string{writeMessages}, Returns: true, Optional: true},
		{Symbols: []string{fetchMessage}, Returns: true, Optional: true},
	},
	Fields: []offsets.FieldSpec{
		{FieldRef: writerTopic},
		{FieldRef: messageTopic},
		{FieldRef: messagePartition},
		{FieldRef: messageOffset},
		{FieldRef: messageHeaders},
		{FieldRef: messageTime},
		{FieldRef: readerConfig},
		{FieldRef: configGroupID},
		{FieldRef: headerKey},
		{FieldRef: headerValue},
	},
	Program: trackerProgram,
}

// Specs are this package's probes.
var Specs = []offsets.Spec{Spec}
