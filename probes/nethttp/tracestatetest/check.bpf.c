// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/* The tracestate check of the server probes (bpf/include/tracestate.h), run alone on
 * the kernel (BPF_PROG_TEST_RUN) by this package's tests: in the test process, whose
 * memory the check reads as the probes read the app's. */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

#include "tracestate.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* A case: the fields as read from header fields (take), or the []string of an
 * http.Header (take_values); what is kept. */
struct ts_case {
	struct tracestate_scratch s;
	struct go_slice values;
	__u32 len;
	__u8 out[TRACESTATE_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ts_case);
} cases SEC(".maps");

SEC("syscall")
int take(void *ctx)
{
	__u32 zero = 0;
	struct ts_case *c = bpf_map_lookup_elem(&cases, &zero);
	if (c)
		c->len = tracestate_take(&c->s, &c->out);
	return 0;
}

SEC("syscall")
int take_values(void *ctx)
{
	__u32 zero = 0;
	struct ts_case *c = bpf_map_lookup_elem(&cases, &zero);
	if (!c)
		return 0;
	tracestate_of_values(&c->s, &c->values);
	c->len = tracestate_take(&c->s, &c->out);
	return 0;
}

/* take as an XDP program: BPF_PROG_TEST_RUN repeats those and times them in the
 * kernel (syscall programs it runs once), for the cost per request. */
SEC("xdp")
int take_timed(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct ts_case *c = bpf_map_lookup_elem(&cases, &zero);
	if (c)
		c->len = tracestate_take(&c->s, &c->out);
	return XDP_PASS;
}
