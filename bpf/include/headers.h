/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Capturing the headers the probes care about from an http.Header (or any Go
 * map[string][]string of header-like keys): W3C trace context and the user agent.
 * Keys compare without regard to case: Go canonicalizes ("Traceparent"), but a program
 * may set the map directly. The first value of each is kept, but for tracestate, whose
 * values (one per header line) are found here and checked and combined later, once the
 * traceparent is known to be valid (tracestate.h). */
#pragma once

#include "trace.h"

#define USER_AGENT_MAX 128

struct header_capture {
	__u8 traceparent[TRACEPARENT_LEN + 1]; /* the value's first bytes: enough to check it */
	__u8 found;                            /* HEADER_* bits */
	__u8 traceparent_len;                  /* the value's length, up to 255 */
	__u16 user_agent_len;
	__u8 user_agent[USER_AGENT_MAX];
	struct go_slice tracestate; /* the []string of its values, in the app */
};

#define HEADER_TRACEPARENT 1
#define HEADER_TRACESTATE 2
#define HEADER_USER_AGENT 4
#define HEADER_ALL 7

#define MAP_SCAN_CTX struct header_capture
#include "go_maps.h"

static __always_inline int equal_fold(const char *lower, const __u8 *s, int n)
{
	for (int i = 0; i < n; i++) {
		__u8 c = s[i];
		if (c >= 'A' && c <= 'Z')
			c += 'a' - 'A';
		if (c != (__u8)lower[i])
			return 0;
	}
	return 1;
}

/* map_slot looks at one header: the key, and the first of its values. A global
 * function: the verifier checks it once. */
__noinline int map_slot(__u64 key, __u64 elem, struct header_capture *hc)
{
	if (!hc)
		return 1;
	struct go_string k = {};
	if (read_user(&k, sizeof(k), key) != 0 || (k.len != 11 && k.len != 10))
		return 0;
	__u8 name[11] = {};
	if (read_user(name, k.len == 11 ? 11 : 10, k.ptr) != 0)
		return 0;
	__u8 which = 0;
	if (k.len == 11 && equal_fold("traceparent", name, 11))
		which = HEADER_TRACEPARENT;
	else if (k.len == 10 && equal_fold("tracestate", name, 10))
		which = HEADER_TRACESTATE;
	else if (k.len == 10 && equal_fold("user-agent", name, 10))
		which = HEADER_USER_AGENT;
	if (!which || (hc->found & which))
		return 0;

	struct go_slice values = {};
	struct go_string v = {};
	if (read_user(&values, sizeof(values), elem) != 0 || values.len < 1)
		return 0;
	if (which == HEADER_TRACESTATE) {
		hc->tracestate = values;
		hc->found |= which;
		return hc->found == HEADER_ALL;
	}
	if (read_user(&v, sizeof(v), values.ptr) != 0)
		return 0;
	switch (which) {
	case HEADER_TRACEPARENT:
		/* A byte past the four fields tells a valid longer (future) version from
		 * a version 00 value with more fields, which is invalid. */
		if (copy_go_string(hc->traceparent, TRACEPARENT_LEN + 1, &v) > 0)
			hc->traceparent_len = v.len > 255 ? 255 : v.len;
		break;
	case HEADER_USER_AGENT:
		hc->user_agent_len = copy_go_string(hc->user_agent, USER_AGENT_MAX, &v);
		break;
	}
	hc->found |= which;
	return hc->found == HEADER_ALL;
}

/* capture_headers fills hc from the header map at m. swiss: the map layout (a
 * compile-time constant; see go_maps.h). */
static __always_inline void capture_headers(__u64 m, struct header_capture *hc, const int swiss)
{
	scan_string_map(m, hc, swiss);
}
