// Package goredis instruments github.com/redis/go-redis/v9: a client span per command
// and one per pipeline or transaction, parented by the server span of the request
// that made it. This file declares what the probe needs from a target binary.
package goredis

import "github.com/otel-go-launcher/otel-go-launcher/offsets"

// Module is the instrumented module, and the oldest release supported.
const (
	Module     = "github.com/redis/go-redis/v9"
	MinVersion = "v9.0.0"
)

// Functions the probe attaches to: the last step of every client's hook chain, in
// every v9 release. A command of a Client, Conn, Tx or of a cluster's or ring's node
// client runs process once, its retries included; a pipeline runs processPipeline, a
// MULTI/EXEC transaction processTxPipeline. Where process is only a call of
// processStartingAt (v9.23), the compiler inlines it: that one is probed then.
const (
	process           = "github.com/redis/go-redis/v9.(*baseClient).process"
	processStartingAt = "github.com/redis/go-redis/v9.(*baseClient).processStartingAt" // (c, ctx, cmd, startAttempt, start)
	processPipeline   = "github.com/redis/go-redis/v9.(*baseClient).processPipeline"
	processTxPipeline = "github.com/redis/go-redis/v9.(*baseClient).processTxPipeline"
	specName          = "go-redis"
)

// Fields the program reads: the client's options (its server and database index) and
// a command's arguments (the first is its name; the others, values, are never read).
var (
	clientOptions = offsets.FieldRef{Struct: "github.com/redis/go-redis/v9.baseClient", Field: "opt"}
	optionsAddr   = offsets.FieldRef{Struct: "github.com/redis/go-redis/v9.Options", Field: "Addr"}
	optionsDB     = offsets.FieldRef{Struct: "github.com/redis/go-redis/v9.Options", Field: "DB"}
	commandArgs   = offsets.FieldRef{Struct: "github.com/redis/go-redis/v9.baseCmd", Field: "args"}
)

// trackerProgram reaches the functions and types the probe reads: the offsets tracker
// builds it with each go-redis release (it never runs).
const trackerProgram = `package main

import (
	"context"

	"github.com/redis/go-redis/v9"
)

func main() {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DB: 1})
	rdb.Get(ctx, "k")
	rdb.Pipelined(ctx, func(p redis.Pipeliner) error { p.Get(ctx, "k"); return nil })
	rdb.TxPipelined(ctx, func(p redis.Pipeliner) error { p.Get(ctx, "k"); return nil })
}
`

// Spec: the entry and RETs of each function, two hits per command or pipeline. A
// program that never pipelines lacks processPipeline: all but process are optional.
var Spec = offsets.Spec{
	Name:       specName,
	Module:     Module,
	MinVersion: MinVersion,
	Functions: []offsets.FuncSpec{
		{Symbols: []string{process, processStartingAt}, Returns: true},
		{Symbols: []string{processPipeline}, Returns: true, Optional: true},
		{Symbols: []string{processTxPipeline}, Returns: true, Optional: true},
	},
	Fields: []offsets.FieldSpec{
		{FieldRef: clientOptions},
		{FieldRef: optionsAddr},
		{FieldRef: optionsDB},
		{FieldRef: commandArgs},
	},
	Program: trackerProgram,
}

// Specs are this package's probes.
var Specs = []offsets.Spec{Spec}
