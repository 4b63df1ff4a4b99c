// Package ringtest outputs records with the probes' submit (bpf/include/common.h),
// alone on the kernel (BPF_PROG_TEST_RUN), for the tests of how the reader is woken.
// Nothing imports it.
package ringtest

// The BPF objects are generated and committed, as the probes' are. make generate runs this.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I../../../bpf/include" -target amd64,arm64 ring ring.bpf.c
