/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Looking up entries of a Go map[string][]string (http.Header) from BPF.
 *
 * The runtime hashes keys with AES and a per-map seed, which BPF cannot reproduce, so
 * lookups scan the map's slots and compare keys. Two layouts exist:
 *
 *   Go < 1.24, runtime.hmap: 2^B buckets (and 2^(B-1) old buckets while growing), each
 *   {tophash [8]u8; keys [8]string; elems [8][]string; overflow *bucket}; a slot is in
 *   use when its tophash >= 5.
 *
 *   Go >= 1.24, Swiss tables (internal/runtime/maps): a small map (dirLen 0) is one group
 *   at dirPtr; a larger one has dirLen table pointers at dirPtr, each table holding
 *   lengthMask+1 groups. A group is {ctrl u64; slots [8]{key string; elem []string}}; a
 *   slot is in use when the top bit of its ctrl byte is clear.
 *
 * Field offsets of the map headers come from the target binary (globals the loader
 * sets); the bucket and group layouts follow from string and []string sizes.
 * Scans are bounded: far more slots than any real request has headers. */
#pragma once

#include "go_types.h"

/* The layout constants for map[string][]string. */
#define MAP_SLOTS 8
#define HMAP_KEYS 8                      /* after tophash */
#define HMAP_ELEMS (8 + MAP_SLOTS * 16)  /* 136 */
#define HMAP_OVERFLOW (HMAP_ELEMS + MAP_SLOTS * 24) /* 328 */
#define HMAP_BUCKET_SIZE (HMAP_OVERFLOW + 8)
#define SWISS_SLOT_SIZE 40               /* string + []string */
#define SWISS_GROUP_SIZE (8 + MAP_SLOTS * SWISS_SLOT_SIZE)

#define MAX_BUCKETS 16    /* 2^4 buckets: over 100 headers */
#define MAX_OVERFLOW 4
#define MAX_TABLES 4
#define MAX_GROUPS 32

/* Offsets in the app's runtime (named after the Go fields, as every offset a probe
 * reads), set by the loader for the layout of the app's Go release. */
volatile __u64 off_runtime_hmap_B = OFFSET_NONE;
volatile __u64 off_runtime_hmap_buckets = OFFSET_NONE;
volatile __u64 off_runtime_hmap_oldbuckets = OFFSET_NONE;
volatile __u64 off_maps_Map_dirPtr = OFFSET_NONE;
volatile __u64 off_maps_Map_dirLen = OFFSET_NONE;
volatile __u64 off_maps_table_groups = OFFSET_NONE; /* a groupsReference */
volatile __u64 off_maps_groupsReference_data = OFFSET_NONE;
volatile __u64 off_maps_groupsReference_lengthMask = OFFSET_NONE;

/* The program including this file defines MAP_SCAN_CTX (the state its slot function
 * works on) and map_slot (BPF has no function pointers): called with the addresses of
 * a slot's key (a string header) and elem (a []string header), it returns nonzero to
 * stop the scan. It is a global function, so the verifier checks it once, not at each
 * of the many places the scans call it. */
#ifndef MAP_SCAN_CTX
#error "define MAP_SCAN_CTX before including go_maps.h"
#endif
__noinline int map_slot(__u64 key, __u64 elem, MAP_SCAN_CTX *ctx);

struct bucket_scan {
	__u64 buckets;
	MAP_SCAN_CTX *ctx;
	int stop;
};

struct slot_scan {
	__u64 bucket;
	__u8 tophash[MAP_SLOTS];
	MAP_SCAN_CTX *ctx;
	int stop;
};

/* One slot of a bucket; bpf_loop bodies are verified once, not once per iteration. */
static long scan_hmap_slot(__u32 j, void *arg)
{
	struct slot_scan *s = arg;
	if (j >= MAP_SLOTS || s->tophash[j] < 5) /* empty or evacuated */
		return 0;
	if (map_slot(s->bucket + HMAP_KEYS + j * 16, s->bucket + HMAP_ELEMS + j * 24, s->ctx)) {
		s->stop = 1;
		return 1;
	}
	return 0;
}

static long scan_bucket(__u32 i, void *arg)
{
	struct bucket_scan *b = arg;
	struct slot_scan s = {.bucket = b->buckets + (__u64)i * HMAP_BUCKET_SIZE, .ctx = b->ctx};
	for (int chain = 0; chain < MAX_OVERFLOW && s.bucket; chain++) {
		if (read_user(s.tophash, sizeof(s.tophash), s.bucket) != 0)
			return 1;
		bpf_loop(MAP_SLOTS, scan_hmap_slot, &s, 0);
		if (s.stop) {
			b->stop = 1;
			return 1;
		}
		s.bucket = read_ptr(s.bucket + HMAP_OVERFLOW);
	}
	return 0;
}

static __always_inline void scan_hmap(__u64 m, MAP_SCAN_CTX *ctx)
{
	__u8 B = 0;
	read_user(&B, 1, m + off_runtime_hmap_B);
	if (B > 4)
		B = 4;
	struct bucket_scan s = {.buckets = read_ptr(m + off_runtime_hmap_buckets), .ctx = ctx};
	if (s.buckets)
		bpf_loop(1 << B, scan_bucket, &s, 0);
	/* While growing, entries not yet moved are in the old buckets. */
	s.buckets = read_ptr(m + off_runtime_hmap_oldbuckets);
	if (s.buckets && B > 0 && !s.stop)
		bpf_loop(1 << (B - 1), scan_bucket, &s, 0);
}

struct group_scan {
	__u64 groups;
	MAP_SCAN_CTX *ctx;
	int stop;
};

struct swiss_slot_scan {
	__u64 group;
	__u64 ctrl;
	MAP_SCAN_CTX *ctx;
	int stop;
};

static long scan_swiss_slot(__u32 j, void *arg)
{
	struct swiss_slot_scan *s = arg;
	if (j >= MAP_SLOTS || (s->ctrl >> (8 * j)) & 0x80) /* empty or deleted */
		return 0;
	__u64 slot = s->group + 8 + j * SWISS_SLOT_SIZE;
	if (map_slot(slot, slot + 16, s->ctx)) {
		s->stop = 1;
		return 1;
	}
	return 0;
}

static __always_inline int scan_one_group(__u64 g, MAP_SCAN_CTX *ctx)
{
	struct swiss_slot_scan s = {.group = g, .ctx = ctx};
	if (read_user(&s.ctrl, sizeof(s.ctrl), g) != 0)
		return 1;
	bpf_loop(MAP_SLOTS, scan_swiss_slot, &s, 0);
	return s.stop;
}

static long scan_group(__u32 i, void *arg)
{
	struct group_scan *s = arg;
	if (scan_one_group(s->groups + (__u64)i * SWISS_GROUP_SIZE, s->ctx)) {
		s->stop = 1;
		return 1;
	}
	return 0;
}

static __always_inline void scan_swiss(__u64 m, MAP_SCAN_CTX *ctx)
{
	__u64 dir = read_ptr(m + off_maps_Map_dirPtr);
	__s64 dirlen = (__s64)read_ptr(m + off_maps_Map_dirLen);
	if (!dir)
		return;
	if (dirlen == 0) { /* a small map: one group */
		scan_one_group(dir, ctx);
		return;
	}
	__u64 prev = 0;
	for (int t = 0; t < MAX_TABLES && t < dirlen; t++) {
		__u64 table = read_ptr(dir + t * 8);
		if (!table || table == prev) /* directory entries repeat a table */
			continue;
		prev = table;
		struct group_scan s = {
			.groups = read_ptr(table + off_maps_table_groups + off_maps_groupsReference_data),
			.ctx = ctx,
		};
		__u64 n = read_ptr(table + off_maps_table_groups + off_maps_groupsReference_lengthMask) + 1;
		if (n > MAX_GROUPS)
			n = MAX_GROUPS;
		if (s.groups)
			bpf_loop(n, scan_group, &s, 0);
		if (s.stop)
			return;
	}
}

/* scan_string_map calls map_slot for the slots in use of the map[string][]string at m
 * (the map header's address, as a map variable holds it) until it returns nonzero.
 * swiss is a compile-time constant: each program variant carries one layout only, and
 * the loader loads the variant the target's Go version needs. */
static __always_inline void scan_string_map(__u64 m, MAP_SCAN_CTX *ctx, const int swiss)
{
	if (!m)
		return;
	if (swiss)
		scan_swiss(m, ctx);
	else
		scan_hmap(m, ctx);
}
