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

/* Set by the launcher once every probe is attached and enabled. */
volatile __u64 released = 0;
/* Stops sent: the launcher continues the app if any was. */
__u64 stops = 0;

SEC("uprobe/hold")
int hold(void *ctx)
{
	if (released)
		return 0;
	/* The signal first, then the count: a count the launcher reads means the stop
	 * was sent already, and its SIGCONT comes after it. */
	if (bpf_send_signal(SIGSTOP) == 0)
		__sync_fetch_and_add(&stops, 1);
	return 0;
}
