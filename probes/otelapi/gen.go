package otelapi

// The BPF objects are generated and committed, so that go build and go install work
// without clang. make generate runs this.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I../../bpf/include" -target amd64,arm64 -type api_event -type api_attr -type api_link otelapi otelapi.bpf.c
