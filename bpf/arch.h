/* SPDX-License-Identifier: GPL-2.0 */
/* What differs between the architectures the sensor is built for (bpf2go
 * -target amd64,arm64 defines __TARGET_ARCH_x86 or __TARGET_ARCH_arm64):
 * where a syscall's number and arguments are in struct pt_regs, and the
 * syscall numbers themselves.
 *
 * One numbering reaches the programs' judgement and user space: x86-64's.
 * syscall_id() maps the running architecture's number to it, so the hooks
 * switch on one set of numbers, and a record's syscall number (a mount or
 * module operation's arg) means the same on every architecture. Syscalls that
 * arm64 does not have (open, rename, chmod... which its libc implements with
 * the *at forms) simply never arrive there. */
#pragma once

#define SYSCALL_NONE_ (-1L)

#if defined(__TARGET_ARCH_arm64)

/* At sys_exit x0 holds the return value: the first argument is orig_x0. */
#define syscall_nr(regs) ((long)(regs)->syscallno)
#define syscall_args(regs, a0, a1, a2, a3, a4)                                      \
	((a0) = (regs)->orig_x0, (a1) = (regs)->regs[1], (a2) = (regs)->regs[2], \
	 (a3) = (regs)->regs[3], (a4) = (regs)->regs[4])
/* The same number from a pt_regs the program may only read through helpers. */
#define task_syscall_nr(regs) ((long)BPF_CORE_READ(regs, syscallno))

/* arm64 numbers (include/uapi/asm-generic/unistd.h) to x86-64's
 * (arch/x86/entry/syscalls/syscall_64.tbl), for every syscall a hook judges.
 * From 424 on both tables are one. */
static __always_inline long syscall_id(long nr)
{
	if (nr >= 424)
		return nr;
	switch (nr) {
	case 5: return 188;   /* setxattr */
	case 6: return 189;   /* lsetxattr */
	case 7: return 190;   /* fsetxattr */
	case 14: return 197;  /* removexattr */
	case 15: return 198;  /* lremovexattr */
	case 16: return 199;  /* fremovexattr */
	case 29: return 16;   /* ioctl */
	case 33: return 259;  /* mknodat */
	case 34: return 258;  /* mkdirat */
	case 35: return 263;  /* unlinkat */
	case 36: return 266;  /* symlinkat */
	case 37: return 265;  /* linkat */
	case 38: return 264;  /* renameat */
	case 39: return 166;  /* umount2 */
	case 40: return 165;  /* mount */
	case 45: return 76;   /* truncate */
	case 46: return 77;   /* ftruncate */
	case 47: return 285;  /* fallocate */
	case 52: return 91;   /* fchmod */
	case 53: return 268;  /* fchmodat */
	case 54: return 260;  /* fchownat */
	case 55: return 93;   /* fchown */
	case 56: return 257;  /* openat */
	case 64: return 1;    /* write */
	case 66: return 20;   /* writev */
	case 68: return 18;   /* pwrite64 */
	case 70: return 296;  /* pwritev */
	case 71: return 40;   /* sendfile */
	case 76: return 275;  /* splice */
	case 88: return 280;  /* utimensat */
	case 104: return 246; /* kexec_load */
	case 105: return 175; /* init_module */
	case 106: return 176; /* delete_module */
	case 117: return 101; /* ptrace */
	case 221: return 59;  /* execve */
	case 222: return 9;   /* mmap */
	case 226: return 10;  /* mprotect */
	case 265: return 304; /* open_by_handle_at */
	case 271: return 311; /* process_vm_writev */
	case 273: return 313; /* finit_module */
	case 276: return 316; /* renameat2 */
	case 280: return 321; /* bpf */
	case 281: return 322; /* execveat */
	case 285: return 326; /* copy_file_range */
	case 287: return 328; /* pwritev2 */
	case 294: return 320; /* kexec_file_load */
	default: return SYSCALL_NONE_;
	}
}

#elif defined(__TARGET_ARCH_x86)

#define syscall_nr(regs) ((long)(regs)->orig_ax)
#define syscall_args(regs, a0, a1, a2, a3, a4) \
	((a0) = (regs)->di, (a1) = (regs)->si, (a2) = (regs)->dx, (a3) = (regs)->r10, (a4) = (regs)->r8)
#define task_syscall_nr(regs) ((long)BPF_CORE_READ(regs, orig_ax))
#define syscall_id(nr) ((long)(nr))

#endif
