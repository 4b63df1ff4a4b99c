// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/* gorilla/mux: the route a request matched, for its server span (routes.h).
 *
 * One uprobe hit per matched request, on the call (*Router).ServeHTTP makes to
 * requestWithRoute(req, route) once its routes matched, before the handler runs: a
 * relative call, which the kernel emulates (one trap). route, the second argument
 * register, is the *Route matched - a subrouter's own route when one matched, whose
 * template carries the subrouter's prefix. Its path template is
 * route.routeConf.regexp.path.template, as GetPathTemplate() reads it ("/users/{id}",
 * "/files/{name:[a-z]+}"); a route without a path (a host or a method only) has none.
 * A request no route matched makes no such call. */
#include "routes.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by the loader (kit.VarName). */
volatile __u64 off_mux_Route_routeConf = OFFSET_NONE;        /* embedded routeConf */
volatile __u64 off_mux_routeConf_regexp = OFFSET_NONE;       /* routeRegexpGroup */
volatile __u64 off_mux_routeRegexpGroup_path = OFFSET_NONE;  /* *routeRegexp */
volatile __u64 off_mux_routeRegexp_template = OFFSET_NONE;   /* string */

/* Set last, once everything else is. */
volatile __u64 route_enabled = 0;

/* Zeroes to create entries from. Never written. */
struct route_ref zero_route;

SEC("uprobe/mux_Router_ServeHTTP_requestWithRoute")
int route_mux(struct go_regs *ctx)
{
	if (!route_enabled)
		return 0;
	__u64 route = go_arg(ctx, 2);
	if (!route)
		return 0;
	__u64 path = read_ptr(route + off_mux_Route_routeConf + off_mux_routeConf_regexp + off_mux_routeRegexpGroup_path);
	struct go_string tpl = {};
	if (!path || read_user(&tpl, sizeof(tpl), path + off_mux_routeRegexp_template) != 0 || tpl.len <= 0)
		return 0;
	struct route_ref *r = route_entry(ctx, &zero_route);
	if (!r)
		return 0;
	r->len = copy_go_string(r->route, ROUTE_MAX, &tpl);
	return 0;
}
