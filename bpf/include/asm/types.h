/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* linux/types.h wants the architecture's asm/types.h, which only the host's own
 * multiarch include directory has. BPF objects are built for amd64 and arm64 alike, and
 * both use the generic 64-bit integer types. */
#include <asm-generic/types.h>
