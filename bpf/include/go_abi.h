/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Go's register ABI (ABIInternal, Go 1.17+) as a uprobe sees it.
 *
 * A uprobe program gets the user registers as the kernel saved them (struct pt_regs).
 * Go passes integer arguments in registers - amd64: RAX RBX RCX RDI RSI R8 R9 R10 R11;
 * arm64: X0..X15 - and keeps the current goroutine (g) in R14 / X28. Multi-word
 * arguments (strings, interfaces, small structs) take one register per word.
 * The register sets below are the kernel's UAPI layouts, written out so that no
 * kernel headers of the target architecture are needed. */
#pragma once

#if defined(__TARGET_ARCH_x86)
struct go_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	unsigned long ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};
static __always_inline unsigned long go_arg(const struct go_regs *r, int n)
{
	switch (n) {
	case 1: return r->ax;
	case 2: return r->bx;
	case 3: return r->cx;
	case 4: return r->di;
	case 5: return r->si;
	case 6: return r->r8;
	case 7: return r->r9;
	case 8: return r->r10;
	case 9: return r->r11;
	}
	return 0;
}
#define GO_G(r) ((r)->r14)
/* At a function's entry: the address it returns to, on the stack. */
static __always_inline unsigned long go_return_address(const struct go_regs *r)
{
	unsigned long ra = 0;
	bpf_probe_read_user(&ra, sizeof(ra), (void *)r->sp);
	return ra;
}
#elif defined(__TARGET_ARCH_arm64)
struct go_regs {
	unsigned long regs[31];
	unsigned long sp, pc, pstate;
};
static __always_inline unsigned long go_arg(const struct go_regs *r, int n)
{
	return (n >= 1 && n <= 16) ? r->regs[n - 1] : 0;
}
#define GO_G(r) ((r)->regs[28])
/* At a function's entry: the address it returns to, in the link register. */
static __always_inline unsigned long go_return_address(const struct go_regs *r)
{
	return r->regs[30];
}
#else
#error "define __TARGET_ARCH_x86 or __TARGET_ARCH_arm64"
#endif

/* go_stack_args is where, at a function's entry, the arguments the register ABI leaves
 * on the stack begin (a struct holding an array, say): past the return address on
 * amd64, past the slot the callee saves its link register in on arm64. */
static __always_inline unsigned long go_stack_args(const struct go_regs *r)
{
	return r->sp + 8;
}

/* go_goroutine identifies the running goroutine: the address of its g. It is the same
 * at a function's entry and at its returns, whichever thread runs it. */
static __always_inline __u64 go_goroutine(const struct go_regs *r)
{
	return GO_G(r);
}

/* go_current_goroutine is the goroutine of the app thread the kernel is running on
 * behalf of, in a program that is not a uprobe (an sk_msg program runs inside the
 * write system call): Go enters system calls with g still in its register, and the
 * kernel saved the user registers at entry. The kernel's pt_regs has the UAPI layout of
 * go_regs, so the read needs no relocation (CO-RE would make the loader parse the
 * kernel's BTF: 10 ms of the start gate); the verifier checks it against the kernel's
 * own type. */
static __always_inline __u64 go_current_goroutine(void)
{
	struct go_regs *regs = (struct go_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	return regs ? GO_G(regs) : 0;
}
