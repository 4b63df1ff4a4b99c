/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* In-flight server spans, shared by every probe of one app.
 *
 * The probe kit's loader (probes/kit) gives the BPF object of every instrumented library
 * the same two maps below, so that a client span of any library (an HTTP call, a query)
 * finds the server span it was made under, whichever library made that one:
 *
 *   inflight_contexts    a request's context (an interface's data word) -> its server span
 *   inflight_goroutines  the goroutine serving a request -> its server span
 *
 * A server probe fills in a span_ref of its own (in its per-goroutine state), then calls
 * inflight_begin at its entry and inflight_end at its return. A client probe looks for
 * its parent with parent_by_context (the context the call carries, and its parents), or
 * parent_by_goroutine (the goroutine making the call, for libraries whose calls may
 * carry no context). A server registers only in the maps some enabled probe of the app
 * looks in (inflight_wanted, set by the loader): the net/http client looks by context
 * only, so an app traced by net/http alone pays one map update per request, as before
 * the maps were shared.
 *
 * Limit: a span whose return never came (its handler panicked) stays registered until
 * its goroutine or its context's address serves another request. */
#pragma once

#include "trace.h"

#define CONTEXT_DEPTH 16 /* context layers a call may sit below its request's */

/* What a server span gives the calls made under it. */
struct span_ref {
	struct span_context sc;
	__u8 flags; /* W3C flags with the kernel's sampling decision */
	__u8 _pad;
	__u16 tracestate_len;
	__u8 tracestate[TRACESTATE_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct span_ref);
} inflight_contexts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct span_ref);
} inflight_goroutines SEC(".maps");

/* Which maps servers register in (INFLIGHT_* bits), set by the loader from the enabled
 * client probes of the app: 0 when none looks for parents. */
#define INFLIGHT_BY_CONTEXT 1
#define INFLIGHT_BY_GOROUTINE 2
volatile __u64 inflight_wanted = 0;

/* inflight_begin registers ref, the span of the request goroutine g is about to serve
 * with the context ctx (0: none), and returns the INFLIGHT_* maps it is in, for
 * inflight_end. An entry left behind under the same key is replaced. */
static __always_inline __u8 inflight_begin(__u64 g, __u64 ctx, const struct span_ref *ref)
{
	__u64 wanted = inflight_wanted;
	__u8 in = 0;
	if ((wanted & INFLIGHT_BY_CONTEXT) && ctx && bpf_map_update_elem(&inflight_contexts, &ctx, ref, BPF_ANY) == 0)
		in |= INFLIGHT_BY_CONTEXT;
	if ((wanted & INFLIGHT_BY_GOROUTINE) && bpf_map_update_elem(&inflight_goroutines, &g, ref, BPF_ANY) == 0)
		in |= INFLIGHT_BY_GOROUTINE;
	return in;
}

/* inflight_end unregisters what inflight_begin registered. */
static __always_inline void inflight_end(__u64 g, __u64 ctx, __u8 in)
{
	if (in & INFLIGHT_BY_CONTEXT)
		bpf_map_delete_elem(&inflight_contexts, &ctx);
	if (in & INFLIGHT_BY_GOROUTINE)
		bpf_map_delete_elem(&inflight_goroutines, &g);
}

/* parent_by_goroutine is the server span goroutine g is serving, if any. */
static __always_inline struct span_ref *parent_by_goroutine(__u64 g)
{
	return bpf_map_lookup_elem(&inflight_goroutines, &g);
}

/* parent_by_context walks a context chain from ctx (an interface's data word) up to a
 * registered request context. The standard contexts (cancel, timer, value,
 * withoutCancel, afterFunc) have their parent Context as their first field. A chain
 * that leaves them reads words that match no registered context, and ends. */
static __always_inline struct span_ref *parent_by_context(__u64 ctx)
{
	for (int i = 0; i < CONTEXT_DEPTH && ctx; i++) {
		struct span_ref *ref = bpf_map_lookup_elem(&inflight_contexts, &ctx);
		if (ref)
			return ref;
		struct go_iface parent = {};
		if (read_user(&parent, sizeof(parent), ctx) != 0 || !parent.tab)
			return 0;
		ctx = parent.data;
	}
	return 0;
}

/* start_client_span gives a client span its IDs: the trace of its parent (a server span
 * found by parent_by_context or parent_by_goroutine), or a new trace without one, and a
 * new span ID. has_parent and trace_flags say what it was given (the parent's flags,
 * for the sampler). */
static __always_inline void start_client_span(const struct span_ref *parent, struct span_context *sc,
					      __u8 *parent_span_id, __u8 *has_parent, __u8 *trace_flags)
{
	if (parent) {
		__builtin_memcpy(sc->trace_id, parent->sc.trace_id, TRACE_ID_SIZE);
		__builtin_memcpy(parent_span_id, parent->sc.span_id, SPAN_ID_SIZE);
		*has_parent = 1;
		*trace_flags = parent->flags;
	} else {
		random_bytes(sc->trace_id, TRACE_ID_SIZE);
	}
	random_bytes(sc->span_id, SPAN_ID_SIZE);
}
