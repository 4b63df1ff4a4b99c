// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

// chi v5: the route a request matched, for its server span (routes.h).
//
// One uprobe hit per request, on the call (*Mux).ServeHTTP makes to
// sync.(*Pool).Put(mx.pool, rctx) once the handler has returned: a relative call,
// which the kernel emulates (one trap, as an entry probe on its stack check). There
// the routing context rctx, a *chi.Context, is the data word of Put's argument (the
// third argument register), and its RoutePatterns hold the pattern each router on the
// request's way matched: a mounted router's "/api/*", then its own "/users/{id}". A
// mounted router's ServeHTTP finds the context there already and makes no such call:
// one hit per request, however deep the routers.
//
// The template is chi's RoutePattern() of them: joined, where a "/*" is followed by a
// pattern that starts with "/" the wildcard gives way ("/api/*" + "/users/{id}" =
// "/api/users/{id}", its replaceWildcards), then a trailing "//" and "/" go unless the
// template is "/" (since v5.0.8; v5.0.0-v5.0.7 kept a mounted router's root as
// "/api/"). Up to PATTERNS_MAX patterns and ROUTE_MAX bytes are read.
#include "routes.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by the loader (kit.VarName). */
volatile __u64 off_chi_Context_RoutePatterns = OFFSET_NONE; /* []string */

/* Set last, once everything else is. */
volatile __u64 route_enabled = 0;

#define PATTERNS_MAX 8 /* routers on one request's way */
#define MASK (2 * ROUTE_MAX - 1)

/* Zeroes to create entries from. Never written. */
struct route_ref zero_route;

// wildcard_ends reports whether the template's n bytes end in "/*".
static __always_inline int wildcard_ends(const struct route_ref *r, __u32 n)
{
	return n >= 2 && r->route[(n - 2) & MASK] == '/' && r->route[(n - 1) & MASK] == '*';
}

SEC("uprobe/chi_Mux_ServeHTTP_pool_Put")
int route_chi(struct go_regs *ctx)
{
	if (!route_enabled)
		return 0;
	__u64 rctx = go_arg(ctx, 3);
	struct go_slice patterns = {};
	if (!rctx || read_user(&patterns, sizeof(patterns), rctx + off_chi_Context_RoutePatterns) != 0 ||
	    patterns.len <= 0)
		return 0; /* no route matched */
	struct route_ref *r = route_entry(ctx, &zero_route);
	if (!r)
		return 0;
	__u32 n = 0;
	for (int i = 0; i < PATTERNS_MAX && i < patterns.len; i++) {
		struct go_string p = {};
		if (read_user(&p, sizeof(p), patterns.ptr + i * sizeof(p)) != 0 || p.len <= 0)
			continue;
		if (wildcard_ends(r, n)) {
			char first = 0;
			if (read_user(&first, 1, p.ptr) == 0 && first == '/')
				n -= 2;
		}
		if (n >= ROUTE_MAX)
			break;
		/* Masked where the compiler cannot drop it: the verifier bounds the write. */
		__u32 at = n;
		asm volatile("%0 &= %1" : "+r"(at) : "i"(ROUTE_MAX - 1));
		n = at + copy_go_string(&r->route[at], ROUTE_MAX - at, &p);
	}
	if (!(n == 1 && r->route[0] == '/')) {
		if (n >= 2 && r->route[(n - 2) & MASK] == '/' && r->route[(n - 1) & MASK] == '/')
			n -= 2;
		if (n >= 1 && r->route[(n - 1) & MASK] == '/')
			n -= 1;
	}
	r->len = n;
	return 0;
}
