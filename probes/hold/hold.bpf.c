// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/* The hold: one small program at the first instruction of every function the probes
 * instrument, attached before the app is let go while the probes' own programs are
 * still being verified. The first of those functions the app reaches stops it
 * (SIGSTOP, sent by the kernel: nothing is written to the app) until the launcher
 * says the probes are in place; the launcher then continues it (SIGCONT).
 *
 * Why the first instruction: an entry probe sits on the stack check's branch, after
 * it (offsets.EntryProbeOffset). The signal is taken as the thread returns to user
 * space, once the probed instruction has run: the thread stops on the branch, before
 * the entry probe's address, so a call held is traced whole. The launcher uses the
 * hold only when no entry probe is at its function's first instruction. */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define SIGSTOP 19

/* The hold points' groups, their attach cookies: GROUP_CORE is released once the
 * probes are attached and enabled; GROUP_LATER (the HTTP/2 clients' connection set-up,
 * with propagation) once the socket programs follow HTTP/2, which the launcher does
 * only when the app first reaches one of those points (later_reached says when). */
#define GROUP_CORE 0
#define GROUP_LATER 1

/* The groups released: 0 none, 1 the core, 2 both. */
volatile __u64 released = 0;
/* Runs begun and ended, and stops sent by group: once released is set, the launcher
 * waits for the runs that began before (left catches up with entered), then continues
 * the app if it stopped, unless it stopped at a point still held. */
__u64 entered = 0;
__u64 left = 0;
__u64 stops_core = 0;
__u64 stops_later = 0;
/* Runs that should have stopped the app and could not (bpf_send_signal refused): the
 * call went on, perhaps before its entry probe was in place. The launcher says so. */
__u64 send_failures = 0;

/* A record for each stop at a later point: wakes the launcher (never many). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} later_reached SEC(".maps");

/* count adds one to *c with a fetching atomic, which is fully ordered on every
 * architecture (a plain atomic add is relaxed on arm64); the fetched value is used
 * only so that it stays a fetch (2^64 runs never come). */
static __always_inline void count(__u64 *c)
{
	if (__sync_fetch_and_add(c, 1) == ~0ULL)
		*c = 0;
}

SEC("uprobe/hold")
int hold(void *ctx)
{
	/* released is read after entered counts this run, and the launcher reads entered
	 * after setting released (Dekker's pattern): a run it does not see begun sees
	 * released. */
	count(&entered);
	__u64 group = bpf_get_attach_cookie(ctx);
	/* The signal first, then the count, then left: a run that ended has counted the
	 * stop it sent. */
	if (group >= released) {
		if (bpf_send_signal(SIGSTOP) != 0) {
			count(&send_failures);
		} else if (group == GROUP_CORE) {
			count(&stops_core);
		} else {
			count(&stops_later);
			bpf_ringbuf_output(&later_reached, &group, sizeof(group), BPF_RB_FORCE_WAKEUP);
		}
	}
	count(&left);
	return 0;
}
