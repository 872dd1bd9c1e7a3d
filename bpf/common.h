/* SPDX-License-Identifier: GPL-2.0 */
/* Record layout shared by every driftsensor program and mirrored in sensor/record.
 * Every record starts with struct rec_hdr; user space dispatches on hdr.kind. */
#ifndef DRIFT_COMMON_H
#define DRIFT_COMMON_H

#include "vmlinux.h"
#include "bpf/bpf_helpers.h"
#include "bpf/bpf_core_read.h"
#include "bpf/bpf_tracing.h"
#include "bpf/bpf_endian.h"
#include "arch.h"

#define DPATH_MAX 4096 /* longest path carried in a record */
#define DNAME_MAX 256  /* longest component / prefix key */
#define ARGS_MAX 1024  /* bounded argv bytes in exec records */

enum rec_kind {
	REC_FILE = 1,
	REC_EXEC = 2,
	REC_NET = 3,
};

/* Operations; the numbers are part of the record format. */
enum rec_op {
	DOP_OPEN = 1,
	DOP_TRUNCATE,
	DOP_RENAME,
	DOP_UNLINK,
	DOP_RMDIR,
	DOP_LINK,
	DOP_SYMLINK,
	DOP_MKDIR,
	DOP_MKNOD,
	DOP_CHMOD,
	DOP_CHOWN,
	DOP_SETXATTR,
	DOP_REMOVEXATTR,
	DOP_UTIMES,
	DOP_MOUNT,
	DOP_SETFLAGS, /* ioctl FS_IOC_SETFLAGS / FS_IOC_FSSETXATTR (chattr) */
	DOP_WRITE,    /* first write through a descriptor opened for writing */
	DOP_URING,    /* a file operation submitted through io_uring */
	DOP_KSETTING, /* a kernel setting opened for writing: /proc/sys, a /sys attribute (bpf/seal.h) */
	DOP_RAWDEV,   /* a raw device opened for writing: a block device under a protected file system, /dev/mem... */

	DOP_EXEC = 32,
	DOP_MODULE,
	DOP_KEXEC,
	DOP_BPF,
	DOP_PTRACE,
	DOP_URING_SETUP,
	DOP_SIGNAL, /* a signal aimed at the sensor (lsm enforce); arg = sig << 32 | target tgid */
	DOP_SELF_BPF,  /* a bpf() command by another process on the sensor's own map, program or link;
			* arg = cmd << 32 | object id (the command says what kind of object) */
	DOP_SELF_OPEN, /* another process opened one of the sensor's own files; arg = open flags */
	DOP_LEAVE_SCOPE, /* a process in the sealed scope moves itself or another out of it: a write to a
			  * cgroup.procs/cgroup.threads file outside, or clone3 into such a cgroup; arg =
			  * the destination cgroup id (bpf/seal.h) */

	DOP_BIND = 64,
	DOP_LISTEN,
};

/* hdr.flags. The enums here reach Go through bpf2go -type (sensor/record):
 * one definition of the record format. */
enum rec_flag {
	RF_DENIED = 1 << 0,   /* the kernel refused the operation */
	RF_TRUNC = 1 << 1,    /* a path or argv did not fit */
	RF_KILLED = 1 << 2,   /* the reflex killed the actor */
	RF_ATTEMPT = 1 << 3,  /* reported whether or not it succeeded */
	RF_LEXICAL = 1 << 4,  /* path resolved from the name given, not from the inode */
	RF_CORDONED = 1 << 5, /* the reflex set the host's cordon flag */
	RF_UNRESOLVED = 1 << 6, /* a /proc magic link in the name was not followed: the path is the name as given */
};

/* exec_rec.reasons */
enum exec_reason {
	EX_TAINTED = 1 << 0, /* file created or modified after sealing */
	EX_OUTSIDE_IMAGE = 1 << 1,
	EX_MEMFD = 1 << 2,
	EX_DELETED = 1 << 3,
};

/* file_rec.rule of the seal's own classes, beyond the policy's rule ids:
 * kernel settings and raw devices are drift whatever the path rules say
 * (bpf/seal.h), and so is a mutation through a /proc magic link the
 * tracepoint backend could not follow (bpf/path.h). */
enum seal_rule {
	RULE_KERNEL_SETTING = 0xfffffff0u,
	RULE_RAW_DEVICE = 0xfffffff1u,
	RULE_UNRESOLVED = 0xfffffff2u,
};

struct rec_hdr {
	__u16 kind;
	__u16 size; /* bytes in the whole record */
	__u16 op;
	__u16 flags;
	__u64 ktime;
	__u32 tgid;
	__u32 pid;
	__u32 ppid;
	__u32 uid;
	__u32 gid;
	__u32 ptag; /* process identity: start time and exec generation; 0 = unknown.
		     * User space reuses cached /proc data while it is unchanged. */
	__u64 cgroup_id;
	__u64 start;  /* start of the process (its leader), ns after boot as
		       * /proc/PID/stat counts it; 0 = unknown. With tgid it names the
		       * process exactly: user space tells it from one that took its pid. */
	__u64 pstart; /* the same of the parent (ppid), so user space need not read
		       * procfs to know a parent it has seen. */
	char comm[16];
};

/* A file mutation. data holds path, then path2 (rename/link target, symlink
 * name), then the symlink target, each NUL-terminated; lengths exclude NUL. */
struct file_rec {
	struct rec_hdr h;
	__s64 ret;
	__u64 dev;
	__u64 ino;
	__u32 mnt_id;
	__u32 flags; /* open flags, rename flags, ioctl cmd, io_uring opcode */
	__u32 mode;
	__u32 rule;
	__u16 path_len;
	__u16 path2_len;
	__u16 target_len;
	__u16 _pad;
	__u32 lpm_bits; /* scratch for prefix lookups: must sit right before data */
	char data[DPATH_MAX * 2 + DNAME_MAX * 2];
};

/* Execution drift and privileged kernel operations. data: path, then argv
 * (NUL-separated). */
struct exec_rec {
	struct rec_hdr h;
	__s64 ret;
	__u64 dev;
	__u64 ino;
	__u64 arg; /* bpf cmd, ptrace request and target, ... */
	__u32 mnt_id;
	__u32 reasons;
	__u16 path_len;
	__u16 args_len;
	__u32 rule;
	__u32 _pad;
	__u32 lpm_bits;
	char data[DPATH_MAX + ARGS_MAX + DNAME_MAX];
};

struct net_rec {
	struct rec_hdr h;
	__u16 family;
	__u16 protocol;
	__u16 port;
	__u16 _pad;
	__u8 addr[16];
};

/* Policy prefix trie value. */
struct rule_val {
	__u32 class; /* CLASS_* */
	__u32 id;
};
#define CLASS_PROTECT 1
#define CLASS_EXEMPT 2
#define CLASS_MASK 0xffff
#define CLASS_TAINT (1 << 16) /* flag: an exempt prefix inside the image paths; files written there are tainted */
#define CLASS_KALLOW (1 << 17) /* flag: a kernel setting the policy allows writing (kernel.allow_settings) */
#define CLASS_LEAF (1 << 18)  /* flag: no other rule lies under this prefix, so it decides every path below it */

/* Live configuration, written by user space. */
struct config {
	__u32 sealed;
	__u32 scope_cgroups; /* 0: whole host; otherwise only the cgroups in scope_map */
	__u32 reflex;        /* REFLEX_* */
	__u32 deny_binds;
	__u32 epoch; /* bumped at every seal: judgements from an earlier seal do not carry over */
};
#define REFLEX_KILL (1 << 0)
#define REFLEX_DENY (1 << 1) /* enforce mode (lsm): refuse findings with -EPERM */
#define REFLEX_CORDON (1 << 2) /* set the cordon gate's flag at detection */

/* Counters in the per-CPU stats array, summed by user space. */
enum stat_idx {
	STAT_LOST = 0,      /* records the ring buffer could not take */
	STAT_TAINT_FULL,    /* taint set full: an exec could go unjudged */
	STAT_TRUNC,         /* paths that did not fit */
	STAT_RECOVERED,     /* sys_exit runs the kernel skipped that the second copy judged */
	STAT_UNMARKED,      /* first sys_exit runs that could not mark their task */
	STAT_VMA_WALKED,    /* mprotects whose mapping was looked up without the mmap lock */
	STAT_VMA_UNFOUND,   /* executable mprotects whose mapping was gone when looked up: unjudged */
	STAT_MAX,
};

#endif
