// Package tracestatetest runs the server probes' tracestate check
// (bpf/include/tracestate.h) alone on the kernel, for its tests. Nothing imports it.
package tracestatetest

// The BPF objects are generated and committed, as the probes' are. make generate runs this.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I../../../bpf/include" -target amd64,arm64 -type ts_case check check.bpf.c
