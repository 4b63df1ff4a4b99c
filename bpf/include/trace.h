/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* W3C trace context: IDs chosen in the kernel, and the traceparent header. */
#pragma once

#define TRACE_ID_SIZE 16
#define SPAN_ID_SIZE 8
#define TRACEPARENT_LEN 55 /* 00-<32 hex>-<16 hex>-<2 hex> */
#define TRACESTATE_MAX 512 /* kept of a tracestate: W3C's "at least 512 characters" (tracestate.h) */

struct span_context {
	__u8 trace_id[TRACE_ID_SIZE];
	__u8 span_id[SPAN_ID_SIZE];
};

static __always_inline void random_bytes(__u8 *buf, int n)
{
	for (int i = 0; i < n; i += 4) {
		__u32 r = bpf_get_prandom_u32();
		__builtin_memcpy(&buf[i], &r, 4);
	}
}

static __always_inline int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1; /* W3C: lowercase only */
}

static __always_inline int parse_hex(const char *s, __u8 *out, int n)
{
	__u8 any = 0;
	for (int i = 0; i < n; i++) {
		int hi = hex_value(s[2 * i]), lo = hex_value(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (hi << 4) | lo;
		any |= out[i];
	}
	return any ? 0 : -1; /* all-zero IDs are invalid */
}

/* parse_traceparent reads a W3C traceparent value: trace ID, parent span ID, flags. s
 * holds its first TRACEPARENT_LEN + 1 bytes (or all, if fewer); len is its length. */
static __always_inline int parse_traceparent(const char *s, __u32 len, __u8 *trace_id, __u8 *parent_id, __u8 *flags)
{
	if (len < TRACEPARENT_LEN || s[2] != '-' || s[35] != '-' || s[52] != '-')
		return -1;
	if (s[0] == 'f' && s[1] == 'f') /* version ff is forbidden */
		return -1;
	if (hex_value(s[0]) < 0 || hex_value(s[1]) < 0)
		return -1;
	/* Version 00 has exactly four fields; a later version may have more, after a '-'. */
	if (len > TRACEPARENT_LEN && ((s[0] == '0' && s[1] == '0') || s[TRACEPARENT_LEN] != '-'))
		return -1;
	if (parse_hex(s + 3, trace_id, TRACE_ID_SIZE) || parse_hex(s + 36, parent_id, SPAN_ID_SIZE))
		return -1;
	int hi = hex_value(s[53]), lo = hex_value(s[54]);
	if (hi < 0 || lo < 0)
		return -1;
	*flags = (hi << 4) | lo;
	return 0;
}

/* W3C trace context (OTEL_PROPAGATORS): join the trace of an incoming traceparent, and
 * send one with outgoing requests. Set by the loader. */
volatile __u64 trace_context = 1;

/* Sampling, decided in the kernel as the SDK's sampler (OTEL_TRACES_SAMPLER) decides it
 * in userspace: the flag goes on the wire with the outgoing traceparent. The loader
 * sets these. */
volatile __u64 sampler_root = 0;         /* 0 always_on, 1 always_off, 2 traceidratio */
volatile __u64 sampler_parent_based = 1; /* a remote or local parent's flag decides */
volatile __u64 sampler_ratio_bound = 0;  /* traceidratio: sampled when id[8:16]>>1 < bound */

#define FLAG_SAMPLED 1

static __always_inline __u8 sample(const __u8 *trace_id, int has_parent, __u8 parent_flags)
{
	if (has_parent && sampler_parent_based)
		return parent_flags & FLAG_SAMPLED;
	switch (sampler_root) {
	case 1:
		return 0;
	case 2: {
		__u64 x = 0;
		for (int i = 8; i < 16; i++)
			x = (x << 8) | trace_id[i];
		return (x >> 1) < sampler_ratio_bound ? FLAG_SAMPLED : 0;
	}
	}
	return FLAG_SAMPLED;
}

static __always_inline void hex_encode(__u8 *out, const __u8 *in, int n)
{
	const char digits[] = "0123456789abcdef";
	for (int i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0xf];
	}
}

/* format_traceparent writes the TRACEPARENT_LEN bytes of a version 00 traceparent. */
static __always_inline void format_traceparent(__u8 *out, const __u8 *trace_id, const __u8 *span_id, __u8 flags)
{
	out[0] = '0';
	out[1] = '0';
	out[2] = '-';
	hex_encode(out + 3, trace_id, TRACE_ID_SIZE);
	out[35] = '-';
	hex_encode(out + 36, span_id, SPAN_ID_SIZE);
	out[52] = '-';
	hex_encode(out + 53, &flags, 1);
}
