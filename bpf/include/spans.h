/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* In-flight server spans, shared by every probe of one app.
 *
 * The probe kit's loader (probes/kit) gives the BPF object of every instrumented library
 * the same maps below, so that a client span of any library (an HTTP call, a query)
 * finds the server span it was made under, whichever library made that one:
 *
 *   inflight_contexts    a request's context (an interface's data word) -> its server span
 *   inflight_goroutines  the goroutine serving a request -> its span's key in the above
 *   context_parents      a context type whose parent is not its first word (its itab) ->
 *                        where its parent is (filled by the launcher from the binary)
 *
 * A server probe fills in a span_ref of its own (in its per-goroutine state), then calls
 * inflight_begin at its entry and inflight_end at its return. A client probe looks for
 * its parent with find_parent: by the context the call carries, up its chain of
 * parents, then, for the libraries that ask and only if that found none, by the
 * goroutine making the call (a call made without the request's context in the
 * handler's goroutine). A server registers only for the lookups some enabled probe of
 * the app makes (inflight_wanted, set by the loader): by context alone, one map update
 * a request; by goroutine too, one more (8 bytes).
 *
 * Limit: a span whose return never came (its handler panicked) stays registered until
 * its goroutine or its context's address serves another request. */
#pragma once

#include "trace.h"

/* Context layers a call's context may sit below its request's: a walk reads one
 * interface and makes one or two map lookups a layer, in a bpf_loop (verified once,
 * whatever the bound), so the bound costs nothing until a chain is that deep. */
#define CONTEXT_LAYERS 128

/* What a server span gives the calls made under it. */
struct span_ref {
	struct span_context sc;
	__u8 flags; /* W3C flags with the kernel's sampling decision */
	__u8 _pad;
	__u16 tracestate_len;
	__u8 tracestate[TRACESTATE_MAX];
};

/* Server spans in flight, by the request's context's data word (or, for a span
 * registered by goroutine only, its goroutine | SPAN_BY_GOROUTINE). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct span_ref);
} inflight_contexts SEC(".maps");

/* The goroutine serving a request -> its span's key in inflight_contexts. A key rather
 * than a copy: a request pays an 8-byte update here, not the span_ref's 540 bytes, and
 * a client finds every parent in one map, with one lookup (find_parent). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, __u64);
} inflight_goroutines SEC(".maps");

/* Which lookups servers register for (INFLIGHT_BY_* bits), set by the loader from the
 * enabled client probes of the app: 0 when none looks for parents. */
#define INFLIGHT_BY_CONTEXT 1
#define INFLIGHT_BY_GOROUTINE 2
volatile __u64 inflight_wanted = 0;

/* What inflight_begin registered (its result): INFLIGHT_BY_* and this one, the span
 * under its goroutine's key in inflight_contexts. */
#define INFLIGHT_SPAN_BY_GOROUTINE 4

/* Bit 63 is in no user address: a goroutine's key never equals a context's. */
#define SPAN_BY_GOROUTINE (1ULL << 63)

/* inflight_begin registers ref, the span of the request goroutine g is about to serve
 * with the context ctx (0: none), and returns what it registered, for inflight_end.
 * An entry left behind under the same key is replaced. A global function: verified
 * once, its branches not multiplied by the server program's. */
__noinline int inflight_begin(__u64 g, __u64 ctx, const struct span_ref *ref)
{
	if (!ref)
		return 0;
	__u64 wanted = inflight_wanted;
	int in = INFLIGHT_BY_CONTEXT;
	__u64 key = ctx;
	if (!(wanted & INFLIGHT_BY_CONTEXT) || !ctx) {
		if (!(wanted & INFLIGHT_BY_GOROUTINE))
			return 0;
		in = INFLIGHT_SPAN_BY_GOROUTINE;
		key = g | SPAN_BY_GOROUTINE;
	}
	if (bpf_map_update_elem(&inflight_contexts, &key, ref, BPF_ANY) != 0)
		return 0;
	if ((wanted & INFLIGHT_BY_GOROUTINE) && bpf_map_update_elem(&inflight_goroutines, &g, &key, BPF_ANY) == 0)
		in |= INFLIGHT_BY_GOROUTINE;
	return in;
}

/* inflight_end unregisters what inflight_begin registered. */
static __always_inline void inflight_end(__u64 g, __u64 ctx, __u8 in)
{
	if (in & INFLIGHT_BY_CONTEXT)
		bpf_map_delete_elem(&inflight_contexts, &ctx);
	if (in & INFLIGHT_SPAN_BY_GOROUTINE) {
		__u64 key = g | SPAN_BY_GOROUTINE;
		bpf_map_delete_elem(&inflight_contexts, &key);
	}
	if (in & INFLIGHT_BY_GOROUTINE)
		bpf_map_delete_elem(&inflight_goroutines, &g);
}

/* parent_by_goroutine is the server span goroutine g is serving, if any. */
static __always_inline struct span_ref *parent_by_goroutine(__u64 g)
{
	__u64 *key = bpf_map_lookup_elem(&inflight_goroutines, &g);
	if (!key)
		return 0;
	__u64 k = *key;
	return bpf_map_lookup_elem(&inflight_contexts, &k);
}

/* Context types whose parent Context is not their first word, by the address of their
 * itab for context.Context: where the parent interface is, from the value the
 * interface's data word points to - at offset off, or, where hop is not 0, at offset
 * off of what the pointer at offset hop - 1 points to (an embedded pointer: Go 1.20's
 * timerCtx embeds *cancelCtx). The launcher fills it from the binary's type descriptors
 * (offsets.ContextParents); the contexts whose parent is first are not in it. */
struct context_parent {
	__u32 hop;
	__u32 off;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct context_parent);
} context_parents SEC(".maps");

/* Whether context_parents has entries for this app (set by the loader): without any,
 * a walk makes no lookup there. */
volatile __u64 context_wrappers = 0;

struct context_walk {
	struct go_iface ctx; /* the layer the walk is at */
	__u64 found;         /* the registered context's data word; 0: none yet */
	__u64 wrappers;
};

/* context_step moves up one layer, to the parent of the layer looked at - its first
 * word, or where context_parents says - and ends the walk there if it is a registered
 * request context. */
static long context_step(__u32 i, void *arg)
{
	struct context_walk *w = arg;
	__u64 at = w->ctx.data;
	if (w->wrappers) {
		struct context_parent *where = bpf_map_lookup_elem(&context_parents, &w->ctx.tab);
		if (where) {
			if (where->hop)
				at = read_ptr(at + where->hop - 1);
			at += where->off;
		}
	}
	struct go_iface parent = {};
	if (bpf_probe_read_user(&parent, sizeof(parent), (const void *)at) != 0 || !parent.tab || !parent.data)
		return 1; /* context.Background(), or not a context: the chain ends */
	if (bpf_map_lookup_elem(&inflight_contexts, &parent.data)) {
		w->found = parent.data;
		return 1;
	}
	w->ctx = parent;
	return 0;
}

/* parent_key is the key in inflight_contexts of the span a client call is made under:
 * its context's, the interface (tab, data) or, if at is not 0, the one at address at;
 * or the first registered one among that context's parents; or, with by_goroutine, the
 * span goroutine g is serving; 0 for none. A global function: verified once per
 * program, and it leaves its caller a number, whatever path it took, so that the
 * caller's paths (found or not) are walked once each. */
__noinline __u64 parent_key(__u64 tab, __u64 data, __u64 at, __u64 g, __u64 by_goroutine)
{
	struct context_walk w = {.ctx = {.tab = tab, .data = data}, .wrappers = context_wrappers};
	if (at && bpf_probe_read_user(&w.ctx, sizeof(w.ctx), (const void *)at) != 0)
		w.ctx.data = 0;
	if (w.ctx.data) {
		/* The request's own context, the commonest case, without a walk. */
		if (bpf_map_lookup_elem(&inflight_contexts, &w.ctx.data))
			return w.ctx.data;
		bpf_loop(CONTEXT_LAYERS, context_step, &w, 0);
		if (w.found)
			return w.found;
	}
	if (by_goroutine) {
		__u64 *key = bpf_map_lookup_elem(&inflight_goroutines, &g);
		if (key)
			return *key;
	}
	return 0;
}

/* find_parent is the server span a client call is made under, if any: by the call's
 * context (tab, data: an interface's words; or the interface at address at, if not
 * 0), walking its chain of parents up to a registered request context, at most
 * CONTEXT_LAYERS layers above it; then, with by_goroutine and only if that found none,
 * by the goroutine making the call (g). The standard contexts (cancel, timer, value,
 * withoutCancel, afterFunc, and the stop contexts of signal.NotifyContext) keep their
 * parent Context as their first word; other types the binary has are in
 * context_parents. A chain that leaves them reads words that match no registered
 * context, and ends. */
static __always_inline struct span_ref *find_parent(__u64 tab, __u64 data, __u64 at, __u64 g, __u64 by_goroutine)
{
	/* Looked up even when 0 (no entry has that key): a branch here would be a path
	 * more for the verifier through all the caller does with the parent. */
	__u64 key = parent_key(tab, data, at, g, by_goroutine);
	return bpf_map_lookup_elem(&inflight_contexts, &key);
}

/* parent_by_context is find_parent by the context alone. */
static __always_inline struct span_ref *parent_by_context(__u64 tab, __u64 data)
{
	return find_parent(tab, data, 0, 0, 0);
}
