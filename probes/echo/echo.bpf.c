// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/* echo v4: the route a request matched, for its server span (routes.h).
 *
 * One uprobe hit per request, on the call (*Echo).ServeHTTP makes to
 * sync.(*Pool).Put(e.pool, c) once the handler chain has returned: a relative call,
 * which the kernel emulates (one trap). There c, the request's *echo.context, is the
 * data word of Put's argument (the third argument register), and its path the route
 * the router matched, as registered with its group's prefix ("/api/orders/:order"),
 * or "" when it matched none. */
#include "routes.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by the loader (kit.VarName). */
volatile __u64 off_echo_context_path = OFFSET_NONE; /* string */

/* Set last, once everything else is. */
volatile __u64 route_enabled = 0;

/* Zeroes to create entries from. Never written. */
struct route_ref zero_route;

SEC("uprobe/echo_Echo_ServeHTTP_pool_Put")
int route_echo(struct go_regs *ctx)
{
	if (!route_enabled)
		return 0;
	__u64 c = go_arg(ctx, 3);
	struct go_string path = {};
	if (!c || read_user(&path, sizeof(path), c + off_echo_context_path) != 0 || path.len <= 0)
		return 0; /* no route matched */
	struct route_ref *r = route_entry(ctx, &zero_route);
	if (!r)
		return 0;
	r->len = copy_go_string(r->route, ROUTE_MAX, &path);
	return 0;
}
