/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* In-flight server spans, shared by every probe of one app.
 *
 * The probe kit's loader (probes/kit) gives the BPF object of every instrumented library
 * the same two maps below, so that a client span of any library (an HTTP call, a query)
 * finds the server span it was made under, whichever library made that one:
 *
 *   inflight_spans     goroutine serving a request -> its server span
 *   inflight_contexts  that request's context (an interface's data word) -> the goroutine
 *
 * A server probe calls inflight_begin at its entry and fills in the reference it gets,
 * and inflight_end at its return. A client probe looks for its parent with
 * parent_by_context (the context the call carries, and its parents), or
 * parent_by_goroutine (the goroutine making the call, for libraries whose calls may
 * carry no context). */
#pragma once

#include "trace.h"

#define CONTEXT_DEPTH 8 /* context layers a call may sit below its request's */

/* What a server span gives the calls made under it. */
struct span_ref {
	struct span_context sc;
	__u8 flags; /* W3C flags with the kernel's sampling decision */
	__u8 _pad;
	__u16 tracestate_len;
	__u8 _pad2[4];
	__u64 ctx; /* the request's context, 0 for none: checks inflight_contexts */
	__u8 tracestate[TRACESTATE_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct span_ref);
} inflight_spans SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, __u64);
} inflight_contexts SEC(".maps");

/* Set by the loader: nonzero when an enabled probe of the app looks for parents.
 * Until one does, server spans are not registered (two map updates saved). */
volatile __u64 inflight_wanted = 0;

/* Never written: new entries are created from it, then filled in place. */
struct span_ref inflight_zero;

/* inflight_begin registers the server span of the request goroutine g is about to
 * serve, whose context is ctx (0: none), and returns its reference to fill in; 0 when
 * no probe wants parents, or the map is full. An entry g left behind (its return never
 * came: the handler panicked) is replaced, and its context unregistered. */
static __always_inline struct span_ref *inflight_begin(__u64 g, __u64 ctx)
{
	if (!inflight_wanted)
		return 0;
	struct span_ref *stale = bpf_map_lookup_elem(&inflight_spans, &g);
	if (stale && stale->ctx && stale->ctx != ctx)
		bpf_map_delete_elem(&inflight_contexts, &stale->ctx);
	if (bpf_map_update_elem(&inflight_spans, &g, &inflight_zero, BPF_ANY) != 0)
		return 0;
	struct span_ref *ref = bpf_map_lookup_elem(&inflight_spans, &g);
	if (!ref)
		return 0;
	if (ctx && bpf_map_update_elem(&inflight_contexts, &ctx, &g, BPF_ANY) == 0)
		ref->ctx = ctx;
	return ref;
}

/* inflight_end unregisters the span inflight_begin registered for g. */
static __always_inline void inflight_end(__u64 g)
{
	struct span_ref *ref = bpf_map_lookup_elem(&inflight_spans, &g);
	if (!ref)
		return;
	if (ref->ctx)
		bpf_map_delete_elem(&inflight_contexts, &ref->ctx);
	bpf_map_delete_elem(&inflight_spans, &g);
}

/* parent_by_goroutine is the server span goroutine g is serving, if any. */
static __always_inline struct span_ref *parent_by_goroutine(__u64 g)
{
	return bpf_map_lookup_elem(&inflight_spans, &g);
}

/* parent_by_context walks a context chain from ctx (an interface's data word) up to a
 * registered request context. The standard contexts (cancel, timer, value,
 * withoutCancel, afterFunc) have their parent Context as their first field. A chain
 * that leaves them reads words that match no registered context, and ends. A context
 * whose goroutine now serves another request (a stale entry) is no parent. */
static __always_inline struct span_ref *parent_by_context(__u64 ctx)
{
	for (int i = 0; i < CONTEXT_DEPTH && ctx; i++) {
		__u64 *g = bpf_map_lookup_elem(&inflight_contexts, &ctx);
		if (g) {
			struct span_ref *ref = bpf_map_lookup_elem(&inflight_spans, g);
			if (ref && ref->ctx == ctx)
				return ref;
		}
		struct go_iface parent = {};
		if (read_user(&parent, sizeof(parent), ctx) != 0 || !parent.tab)
			return 0;
		ctx = parent.data;
	}
	return 0;
}
