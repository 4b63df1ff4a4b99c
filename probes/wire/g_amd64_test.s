#include "textflag.h"

// func currentG() uintptr: the running goroutine's g, from the register Go keeps it in
// (R14, ABIInternal), where the socket programs read it at a system call. The
// ABI0 wrapper that calls this leaves R14 as it was.
TEXT ·currentG(SB),NOSPLIT,$0-8
	MOVQ R14, ret+0(FP)
	RET
