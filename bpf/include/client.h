/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* A client span begun under the server span find_parent found (spans.h): its IDs, and
 * its parent's tracestate for userspace.
 *
 * A span has its parent's tracestate, as the SDK gives it: a server span the one its
 * request came with (tracestate.h), the calls made under it the same. The client's
 * event does not carry it - 512 bytes more in every call's state and record, for what
 * most requests have none of -: a call whose parent has one outputs a record of its own
 * when it begins, RECORD_TRACESTATE, which the probe kit keeps until the call's span
 * arrives behind it in the same ring buffer (probes/kit: traceStates). A client probe
 * includes common.h first: the record goes to its object's ring buffer. */
#pragma once

#include "common.h"
#include "spans.h"

/* The probe kit's record kind: above every library's own (EVENT_*, small numbers). */
#define RECORD_TRACESTATE 0x74730000

/* The tracestate of the span span_id: its parent's. */
struct tracestate_record {
	__u32 kind; /* RECORD_TRACESTATE */
	__u16 len;
	__u16 _pad;
	__u8 span_id[SPAN_ID_SIZE];
	__u8 tracestate[TRACESTATE_MAX];
};

/* In the object's BTF: the kit's test checks the layout it reads against it. */
const struct tracestate_record *unused_tracestate_record __attribute__((unused));

/* output_tracestate outputs the record of the span sc, whose parent is parent (not
 * null, with a tracestate). A global function: verified once, its copy not unrolled in
 * every client program. */
__noinline int output_tracestate(const struct span_ref *parent, const struct span_context *sc)
{
	if (!parent || !sc)
		return 0;
	struct tracestate_record *rec = bpf_ringbuf_reserve(&events, sizeof(*rec), 0);
	if (!rec) {
		count_lost();
		return 0;
	}
	rec->kind = RECORD_TRACESTATE;
	rec->len = parent->tracestate_len;
	rec->_pad = 0;
	__builtin_memcpy(rec->span_id, sc->span_id, SPAN_ID_SIZE);
	__builtin_memcpy(rec->tracestate, parent->tracestate, TRACESTATE_MAX);
	bpf_ringbuf_submit(rec, wakeup_flag());
	return 1;
}

/* start_client_span gives a client span its IDs: the trace of its parent (a server span
 * find_parent found), or a new trace without one, and a new span ID. has_parent and
 * trace_flags say what it was given (the parent's flags, for the sampler). A parent
 * with a tracestate gives it to the span too, if the span is sampled (output_tracestate). */
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
	/* Only for a span that is exported: the sampler's decision (trace.h), as the span's. */
	if (parent && parent->tracestate_len && sample(sc->trace_id, 1, parent->flags))
		output_tracestate(parent, sc);
}
