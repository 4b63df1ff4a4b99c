/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Routes: the template a router matched, handed to the server span of its request.
 *
 * A router's probe (probes/chi, probes/gorillamux, probes/gin, probes/echo) runs in
 * the goroutine that serves the request, while net/http's server span is in flight
 * there: a router spec is a client by goroutine (spans.h), so the server registers
 * its span in inflight_goroutines. The probe files the template in inflight_routes
 * under that goroutine, with the span's ID; the server probe takes it at its return,
 * where it reads ServeMux's pattern, and a router's template wins: a ServeMux
 * catch-all ("/") around a router says nothing of the endpoint.
 *
 * Routers may nest (a gin engine mounted in a chi router): the deepest wins, the one
 * that chose the handler. Depth is the goroutine's stack in use where the probe ran
 * (g.stack.hi - SP), which a stack's move to a larger one keeps.
 *
 * An entry whose server span never took it (a handler that panicked, a router run
 * under a gRPC handler) stays until its goroutine's next request, whose span ID it
 * does not match: it is dropped then, never taken for another span's.
 *
 * A router's probe includes this header alone, not common.h: it outputs no events,
 * so its object has no ring buffer. */
#pragma once

#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

#include "go_abi.h"
#include "go_types.h"
#include "spans.h"

#ifndef OFFSET_NONE
#define OFFSET_NONE ((__u64)-1) /* as common.h: a field the target binary does not have */
#endif

#define INFLIGHT_ROUTES 4 /* inflight_wanted: some router files routes */
#define ROUTE_MAX 128

struct route_ref {
	__u8 span_id[SPAN_ID_SIZE]; /* the server span it names */
	__u64 depth;                /* stack bytes in use at the router's probe */
	__u16 len;
	__u8 _pad[6];
	/* Twice the room a route may take: a router that builds it from parts writes at
	 * a variable offset below ROUTE_MAX, up to ROUTE_MAX bytes. */
	__u8 route[2 * ROUTE_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct route_ref);
} inflight_routes SEC(".maps");

/* same_span compares two span IDs, as words: BPF has no memcmp. */
static __always_inline int same_span(const __u8 *a, const __u8 *b)
{
	__u64 x, y;
	__builtin_memcpy(&x, a, sizeof(x));
	__builtin_memcpy(&y, b, sizeof(y));
	return x == y;
}

/* runtime.g begins with its stack bounds, {lo, hi}: the runtime's assembly relies on
 * it in every release. */
#define G_STACK_HI 8

/* route_entry returns the entry where a router's probe, running in the goroutine of
 * ctx, files the template of the request that goroutine serves, emptied: 0 when no
 * server span is in flight there, or when a deeper router filed one for it already. */
static __always_inline struct route_ref *route_entry(const struct go_regs *ctx, const struct route_ref *zero)
{
	__u64 g = go_goroutine(ctx);
	struct span_ref *span = parent_by_goroutine(g);
	if (!span)
		return 0;
	__u64 hi = 0, sp = ctx->sp;
	if (read_user(&hi, sizeof(hi), g + G_STACK_HI) != 0 || hi < sp)
		return 0;
	__u64 depth = hi - sp;
	struct route_ref *r = bpf_map_lookup_elem(&inflight_routes, &g);
	if (r && same_span(r->span_id, span->sc.span_id) && r->depth > depth)
		return 0;
	if (bpf_map_update_elem(&inflight_routes, &g, zero, BPF_ANY) != 0)
		return 0;
	r = bpf_map_lookup_elem(&inflight_routes, &g);
	if (!r)
		return 0;
	__builtin_memcpy(r->span_id, span->sc.span_id, SPAN_ID_SIZE);
	r->depth = depth;
	return r;
}

/* take_route copies into route (ROUTE_MAX bytes) the template a router filed for the
 * server span span_id, which goroutine g serves, and forgets it; 0 if none. */
static __always_inline __u16 take_route(__u64 g, const __u8 *span_id, __u8 *route)
{
	struct route_ref *r = bpf_map_lookup_elem(&inflight_routes, &g);
	if (!r)
		return 0;
	__u16 n = 0;
	if (same_span(r->span_id, span_id) && r->len > 0 && r->len <= ROUTE_MAX) {
		__builtin_memcpy(route, r->route, ROUTE_MAX);
		n = r->len;
	}
	bpf_map_delete_elem(&inflight_routes, &g);
	return n;
}
