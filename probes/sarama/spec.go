// Package sarama instruments github.com/IBM/sarama: a PRODUCER span per SyncProducer
// send (one message or a batch), parented by the server span of the request that
// sent it; in a program without a SyncProducer, a PRODUCER span per AsyncProducer
// message, with no parent; and a CONSUMER span per message a partition consumer
// receives, which joins the trace of a traceparent header the message carries. This
// file declares what the probes need from a target binary.
package sarama

import "github.com/otel-go-launcher/otel-go-launcher/offsets"

// Module is the instrumented module, and the oldest release supported: the first
// under the IBM module path (Shopify/sarama before).
const (
	Module     = "github.com/IBM/sarama"
	MinVersion = "v1.40.0"
)

// Functions the probes attach to.
//
// A SyncProducer's SendMessage and SendMessages: from the release that added the
// context variants they are one-line wrappers of SendMessageContext and
// SendMessagesContext (not inlined), which do the work: the probe attaches to those
// then, and to the wrappers only in the releases without them, so that a send is
// probed once. A partition consumer turns each fetch response into messages in
// parseResponse, in its own goroutine, whatever consumes them (a ConsumerGroup's
// handler, a PartitionConsumer read by the app).
const (
	sendMessage         = "github.com/IBM/sarama.(*syncProducer).SendMessage"         // (sp, msg)
	sendMessageContext  = "github.com/IBM/sarama.(*syncProducer).SendMessageContext"  // (sp, ctx, msg)
	sendMessages        = "github.com/IBM/sarama.(*syncProducer).SendMessages"        // (sp, msgs)
	sendMessagesContext = "github.com/IBM/sarama.(*syncProducer).SendMessagesContext" // (sp, ctx, msgs)
	parseResponse       = "github.com/IBM/sarama.(*partitionConsumer).parseResponse"  // (child, response) ([]*ConsumerMessage, error)
	producerSpecName    = "sarama.producer"
	consumerSpecName    = "sarama.consumer"
	asyncSpecName       = "sarama.async-producer"
)

// An AsyncProducer's messages, one by one: each new message is partitioned once, and
// its batch's result returned by one of two functions (a third, returnError, is
// inlined into its callers: nowhere to probe; returnErrors too in some builds).
const (
	partitionMessage = "github.com/IBM/sarama.(*topicProducer).partitionMessage" // (tp, msg) error
	returnSuccesses  = "github.com/IBM/sarama.(*asyncProducer).returnSuccesses"  // (p, batch)
	returnErrors     = "github.com/IBM/sarama.(*asyncProducer).returnErrors"     // (p, batch, err)
)

// syncSends are the SyncProducer's send functions: a program that has one sends
// through a SyncProducer, whose messages also go through the AsyncProducer's functions.
var syncSends = []string{sendMessageContext, sendMessage, sendMessagesContext, sendMessages}

// Fields the programs read: a produced message's topic; a consumed message's topic,
// partition, offset and headers, and a header's key and (for a traceparent) value.
// Never a message's Key or Value.
var (
	producerMessageTopic   = offsets.FieldRef{Struct: "github.com/IBM/sarama.ProducerMessage", Field: "Topic"}
	producerMessagePart    = offsets.FieldRef{Struct: "github.com/IBM/sarama.ProducerMessage", Field: "Partition"}
	producerMessageOffset  = offsets.FieldRef{Struct: "github.com/IBM/sarama.ProducerMessage", Field: "Offset"}
	consumerMessageHeaders = offsets.FieldRef{Struct: "github.com/IBM/sarama.ConsumerMessage", Field: "Headers"}
	consumerMessageTopic   = offsets.FieldRef{Struct: "github.com/IBM/sarama.ConsumerMessage", Field: "Topic"}
	consumerMessagePart    = offsets.FieldRef{Struct: "github.com/IBM/sarama.ConsumerMessage", Field: "Partition"}
	consumerMessageOffset  = offsets.FieldRef{Struct: "github.com/IBM/sarama.ConsumerMessage", Field: "Offset"}
	recordHeaderKey        = offsets.FieldRef{Struct: "github.com/IBM/sarama.RecordHeader", Field: "Key"}
	recordHeaderValue      = offsets.FieldRef{Struct: "github.com/IBM/sarama.RecordHeader", Field: "Value"}
)

// trackerProgram reaches the functions and types the probes read: the offsets tracker
// builds it with each sarama release (it never runs).
const trackerProgram = `package main

import "github.com/IBM/sarama"

func main() {
	cfg := sarama.NewConfig()
	cfg.Producer.Return.Successes = true
	p, err := sarama.NewSyncProducer([]string{"127.0.0.1:1"}, cfg)
	if err == nil {
		p.SendMessage(&sarama.ProducerMessage{Topic: "t"})
		p.SendMessages([]*sarama.ProducerMessage{{Topic: "t"}})
	}
	ap, err := sarama.NewAsyncProducer([]string{"127.0.0.1:1"}, cfg)
	if err == nil {
		ap.Input() <- &sarama.ProducerMessage{Topic: "t"}
		m := <-ap.Successes()
		println(m.Partition, m.Offset)
	}
	c, err := sarama.NewConsumer([]string{"127.0.0.1:1"}, cfg)
	if err == nil {
		if pc, err := c.ConsumePartition("t", 0, sarama.OffsetOldest); err == nil {
			m := <-pc.Messages()
			println(m.Offset, m.Partition, m.Topic, len(m.Headers), string(m.Headers[0].Key), string(m.Headers[0].Value))
		}
	}
}
`

// ProducerSpec: the entry and RETs of one send function per call, two hits per
// SendMessage or SendMessages. A program links only what it calls: both are optional.
var ProducerSpec = offsets.Spec{
	Name:       producerSpecName,
	Module:     Module,
	MinVersion: MinVersion,
	Functions: []offsets.FuncSpec{
		{Symbols: []string{sendMessageContext, sendMessage}, Returns: true, Optional: true},
		{Symbols: []string{sendMessagesContext, sendMessages}, Returns: true, Optional: true},
	},
	Fields:  []offsets.FieldSpec{{FieldRef: producerMessageTopic}},
	Program: trackerProgram,
}

// ConsumerSpec: the entry and RETs of parseResponse, two hits per fetch response,
// whatever number of messages it holds.
var ConsumerSpec = offsets.Spec{
	Name:       consumerSpecName,
	Module:     Module,
	MinVersion: MinVersion,
	Functions: []offsets.FuncSpec{
		{Symbols: []string{parseResponse}, Returns: true},
	},
	Fields: []offsets.FieldSpec{
		{FieldRef: consumerMessageHeaders},
		{FieldRef: consumerMessageTopic},
		{FieldRef: consumerMessagePart},
		{FieldRef: consumerMessageOffset},
		{FieldRef: recordHeaderKey},
		{FieldRef: recordHeaderValue},
	},
	Program: trackerProgram,
}

// AsyncProducerSpec: a span per AsyncProducer message, at most two hits each (its
// partitioning's entry, and its batch's result's), only in a program that has no
// SyncProducer send: there every SyncProducer message would trap there too.
var AsyncProducerSpec = offsets.Spec{
	Name:       asyncSpecName,
	Module:     Module,
	MinVersion: MinVersion,
	Functions: []offsets.FuncSpec{
		{Symbols: []string{partitionMessage}, Unless: syncSends},
		{Symbols: []string{returnSuccesses}},
		// Inlined into its callers in some builds (v1.40.1 with Go 1.22): the
		// messages whose batch fails are not ended there, as returnError's.
		{Symbols: []string{returnErrors}, Optional: true},
	},
	Fields: []offsets.FieldSpec{
		{FieldRef: producerMessageTopic},
		{FieldRef: producerMessagePart},
		{FieldRef: producerMessageOffset},
	},
	Program: trackerProgram,
}

// Specs are this package's probes.
var Specs = []offsets.Spec{ProducerSpec, AsyncProducerSpec, ConsumerSpec}
