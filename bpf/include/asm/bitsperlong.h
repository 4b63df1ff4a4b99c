/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* See asm/types.h: the generic definition, 64-bit. */
#define __BITS_PER_LONG 64
#include <asm-generic/bitsperlong.h>
