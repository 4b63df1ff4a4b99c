// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/* A library's probe for the tests only: one span at the entry of each of two functions
 * of the httpserver test program (internal/testenv/targets/httpserver/work.go), its
 * parent looked up among the in-flight server spans (spans.h) that the net/http probe -
 * another BPF object - registers:
 *
 *   main.work(ctx context.Context, n int)   by the context (its data word: 2nd register)
 *   main.workHere(n int)                    by the goroutine */
#include "common.h"
#include "spans.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

volatile __u64 by_context_enabled = 0;
volatile __u64 by_goroutine_enabled = 0;

#define HOW_CONTEXT 1
#define HOW_GOROUTINE 2

struct work_event {
	__u32 how; /* HOW_* */
	__u8 has_parent;
	__u8 _pad[3];
	__u64 ns;
	struct span_context sc;
	__u8 parent_span_id[SPAN_ID_SIZE];
};

const struct work_event *unused_work_event __attribute__((unused)); /* bpf2go -type */

static __always_inline int output(__u32 how, struct span_ref *parent)
{
	struct work_event ev = {.how = how, .ns = bpf_ktime_get_ns()};
	if (parent) {
		__builtin_memcpy(ev.sc.trace_id, parent->sc.trace_id, TRACE_ID_SIZE);
		__builtin_memcpy(ev.parent_span_id, parent->sc.span_id, SPAN_ID_SIZE);
		ev.has_parent = 1;
	} else {
		random_bytes(ev.sc.trace_id, TRACE_ID_SIZE);
	}
	random_bytes(ev.sc.span_id, SPAN_ID_SIZE);
	submit(&ev, sizeof(ev));
	return 0;
}

SEC("uprobe/work")
int work_by_context(struct go_regs *ctx)
{
	if (!by_context_enabled)
		return 0;
	return output(HOW_CONTEXT, parent_by_context(go_arg(ctx, 1), go_arg(ctx, 2)));
}

SEC("uprobe/workHere")
int work_by_goroutine(struct go_regs *ctx)
{
	if (!by_goroutine_enabled)
		return 0;
	return output(HOW_GOROUTINE, parent_by_goroutine(go_goroutine(ctx)));
}
