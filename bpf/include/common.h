/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* What every probe program includes. */
#pragma once

#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

#include "go_abi.h"
#include "go_types.h"

/* A field the target binary does not have (the loader sets it so). */
#define OFFSET_NONE ((__u64)-1)

/* Records lost because the ring buffer was full, summed by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost_events SEC(".maps");

/* Events to userspace. The loader sizes it (--ring-buffer). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

/* The reader drains the ring buffer on a timer (bpf/bpf.go): a wakeup is an interrupt
 * in the app and a thread hand-off in the launcher, so records do not wake it - until
 * the ring is half full: then every record does, so a launcher whose timer came late
 * (a busy machine) reads before the ring overflows, with half the ring left to fill
 * while it is scheduled. */
static __always_inline __u64 wakeup_flag(void)
{
	__u64 size = bpf_ringbuf_query(&events, BPF_RB_RING_SIZE);
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > size / 2 ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

/* count_lost counts a record the ring buffer had no room for. */
static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&lost_events, &zero);
	if (n)
		*n += 1;
}

static __always_inline void submit(void *rec, __u64 size)
{
	if (bpf_ringbuf_output(&events, rec, size, wakeup_flag()) != 0)
		count_lost();
}

/* new_entry creates map[key] as a copy of zero and returns it, to be filled in place:
 * a probe's state is too large for the BPF stack, and per-CPU scratch could be shared
 * by two requests on a preemptible kernel. */
static __always_inline void *new_entry(void *map, const void *key, const void *zero)
{
	if (bpf_map_update_elem(map, key, zero, BPF_ANY) != 0)
		return 0;
	return bpf_map_lookup_elem(map, key);
}
