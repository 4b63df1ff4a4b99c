/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Goroutines inside a database/sql operation, so that a driver's own probe (pgx) makes
 * no second span for it: pgx's database/sql adapter runs (*pgx.Conn).Query and Exec
 * inside database/sql's queryDC and execDC, in the same goroutine. database/sql's entry
 * marks the goroutine, its RET unmarks it; pgx's entry makes no span for a marked one.
 * Shared by every object of an app (kit.SharedMaps). database/sql marks only when the
 * app links pgx (sql_mark_goroutines): other apps pay nothing. */
#ifndef SQL_GOROUTINES_H
#define SQL_GOROUTINES_H

#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH); /* a mark whose RET never came must not fill it */
	__uint(max_entries, 16384);
	__type(key, __u64);   /* the goroutine */
	__type(value, __u8);
} sql_goroutines SEC(".maps");

#endif
