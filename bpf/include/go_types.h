/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Go values as they sit in memory (64-bit), and reading them from the app. */
#pragma once

struct go_string {
	__u64 ptr;
	__s64 len;
};

struct go_slice {
	__u64 ptr;
	__s64 len;
	__s64 cap;
};

struct go_iface {
	__u64 tab;
	__u64 data;
};

/* read_user reads size bytes at addr in the app, or zeroes dst. */
static __always_inline int read_user(void *dst, __u32 size, __u64 addr)
{
	if (!addr)
		return -1;
	return bpf_probe_read_user(dst, size, (const void *)addr);
}

static __always_inline __u64 read_ptr(__u64 addr)
{
	__u64 v = 0;
	read_user(&v, sizeof(v), addr);
	return v;
}

/* copy_go_string copies the string s into buf, at most max bytes, and returns how many
 * it copied. The barrier keeps the compiler from dropping the clamp the verifier needs
 * to see before the variable-size read. */
static __always_inline __u32 copy_go_string(void *buf, __u32 max, const struct go_string *s)
{
	if (s->len <= 0 || !s->ptr)
		return 0;
	__u32 n = s->len < (__s64)max ? (__u32)s->len : max;
	asm volatile("" : "+r"(n));
	if (n > max)
		return 0;
	if (bpf_probe_read_user(buf, n, (const void *)s->ptr) != 0)
		return 0;
	return n;
}

/* read_go_string copies the Go string whose header is at addr. */
static __always_inline __u32 read_go_string(void *buf, __u32 max, __u64 addr)
{
	struct go_string s = {};
	if (read_user(&s, sizeof(s), addr) != 0)
		return 0;
	return copy_go_string(buf, max, &s);
}
