// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/* One record per run, output as every probe outputs its events (common.h). */
#include "common.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define RECORD_SIZE 248

struct record {
	__u64 seq;
	__u8 fill[RECORD_SIZE - 8];
};

/* A map value: too large for the stack. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct record);
} scratch SEC(".maps");

SEC("syscall")
int output(void *ctx)
{
	__u32 zero = 0;
	struct record *rec = bpf_map_lookup_elem(&scratch, &zero);
	if (!rec)
		return 0;
	rec->seq++;
	submit(rec, sizeof(*rec));
	return 0;
}
