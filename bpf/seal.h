/* SPDX-License-Identifier: GPL-2.0 */
/* What the seal covers beyond the policy's paths, judged alike by both
 * backends: leaving the sealed scope (a write to a cgroup.procs or
 * cgroup.threads file of a cgroup outside it, a clone3 into such a cgroup),
 * kernel settings (/proc/sys and /sys attributes) and raw devices (a block
 * device under a protected file system, /dev/mem, /dev/kmem, /dev/port).
 * The backends build and send the records; this file only says what a file
 * is. */
#ifndef DRIFT_SEAL_H
#define DRIFT_SEAL_H

#include "maps.h"

#define CGROUP2_SUPER_MAGIC_ 0x63677270
#define SYSFS_MAGIC_ 0x62656572
#define PROC_SUPER_MAGIC_ 0x9fa0
#define SEAL_S_IFMT 00170000
#define SEAL_S_IFREG 0100000
#define SEAL_S_IFBLK 0060000
#define SEAL_S_IFCHR 0020000
#define CLONE_INTO_CGROUP_ 0x200000000ULL
#define NR_CLONE3_ 435
#define CLONE_ARGS_CGROUP_OFF 80 /* struct clone_args.cgroup */

/* Raw devices whose opening for writing is drift: (S_IFBLK or S_IFCHR) << 32
 * | the kernel's dev_t. Filled by user space at seal: the block devices under
 * the protected file systems mounted then, /dev/mem, /dev/kmem, /dev/port,
 * less the devices the policy allows. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u64);
	__type(value, __u8);
} rawdevs SEC(".maps");

/* cgroup_of_dentry: the cgroup a cgroup2 directory dentry stands for (its
 * kernfs node's private data), or NULL. */
static __always_inline struct cgroup *cgroup_of_dentry(struct dentry *d)
{
	struct kernfs_node *kn = BPF_CORE_READ(d, d_inode, i_private);
	if (!kn)
		return NULL;
	return BPF_CORE_READ(kn, priv);
}

/* cgroup_in_scope: the cgroup or an ancestor (16 levels, as in_scope) is a
 * scope cgroup. */
static __always_inline int cgroup_in_scope(struct cgroup *cg)
{
	int level = BPF_CORE_READ(cg, level);
	for (int i = 0; i < 16; i++) {
		if (i > level)
			break;
		struct cgroup *a = NULL;
		bpf_probe_read_kernel(&a, sizeof(a), &cg->ancestors[i]);
		__u64 id = BPF_CORE_READ(a, kn, id);
		if (bpf_map_lookup_elem(&scope_map, &id))
			return 1;
	}
	return 0;
}

/* in_proc_sys: the dentry lies under "sys" directly below the root of its
 * proc mount, wherever proc is mounted. */
static __always_inline int in_proc_sys(struct dentry *d)
{
	struct dentry *root = BPF_CORE_READ(d, d_sb, s_root);
	for (int i = 0; i < 16; i++) {
		struct dentry *p = BPF_CORE_READ(d, d_parent);
		if (p == d)
			return 0;
		if (p == root) {
			char n[4] = {};
			bpf_probe_read_kernel(n, sizeof(n), BPF_CORE_READ(d, d_name.name));
			return n[0] == 's' && n[1] == 'y' && n[2] == 's' && n[3] == 0;
		}
		d = p;
	}
	return 0;
}

/* is_procs_file: the name is cgroup.procs or cgroup.threads. */
static __always_inline int is_procs_file(struct dentry *d)
{
	char n[16] = {};
	bpf_probe_read_kernel(n, sizeof(n), BPF_CORE_READ(d, d_name.name));
	if (n[0] != 'c' || n[1] != 'g' || n[2] != 'r' || n[3] != 'o' || n[4] != 'u' || n[5] != 'p' || n[6] != '.')
		return 0;
	if (n[7] == 'p' && n[8] == 'r' && n[9] == 'o' && n[10] == 'c' && n[11] == 's' && n[12] == 0)
		return 1;
	return n[7] == 't' && n[8] == 'h' && n[9] == 'r' && n[10] == 'e' && n[11] == 'a' && n[12] == 'd' &&
	       n[13] == 's' && n[14] == 0;
}

/* cgroup_outside: the cgroup2 directory dentry d is a cgroup outside the
 * sealed scope (never, when the scope is the whole host); *id gets its id. */
static __always_inline int cgroup_outside(struct config *cfg, struct dentry *d, __u64 *id)
{
	if (!cfg->scope_cgroups)
		return 0;
	struct cgroup *cg = cgroup_of_dentry(d);
	if (!cg)
		return 0;
	*id = BPF_CORE_READ(cg, kn, id);
	return !cgroup_in_scope(cg);
}

/* seal_kind says what opening f for writing touches beyond the policy's
 * paths: DOP_LEAVE_SCOPE (arg: the destination cgroup id), DOP_KSETTING,
 * DOP_RAWDEV (arg: the device number), or 0. Two loads for most files. */
static __always_inline __u16 seal_kind(struct config *cfg, struct file *f, __u64 *arg)
{
	struct inode *ino = BPF_CORE_READ(f, f_inode);
	__u32 fmt = BPF_CORE_READ(ino, i_mode) & SEAL_S_IFMT;
	if (fmt == SEAL_S_IFBLK || fmt == SEAL_S_IFCHR) {
		__u32 rdev = BPF_CORE_READ(ino, i_rdev);
		__u64 key = (__u64)fmt << 32 | rdev;
		if (!bpf_map_lookup_elem(&rawdevs, &key))
			return 0;
		*arg = rdev;
		return DOP_RAWDEV;
	}
	if (fmt != SEAL_S_IFREG)
		return 0;
	unsigned long magic = BPF_CORE_READ(ino, i_sb, s_magic);
	struct dentry *d = BPF_CORE_READ(f, f_path.dentry);
	if (magic == SYSFS_MAGIC_)
		return DOP_KSETTING;
	if (magic == PROC_SUPER_MAGIC_)
		return in_proc_sys(d) ? DOP_KSETTING : 0;
	if (magic == CGROUP2_SUPER_MAGIC_ && is_procs_file(d) && cgroup_outside(cfg, BPF_CORE_READ(d, d_parent), arg))
		return DOP_LEAVE_SCOPE;
	return 0;
}

/* clone3_cgroup_fd: the cgroup descriptor of a clone3 with CLONE_INTO_CGROUP
 * whose arguments are at uargs (user memory), or -1. */
static __always_inline int clone3_cgroup_fd(const void *uargs)
{
	__u64 flags = 0, fd = 0;
	if (bpf_probe_read_user(&flags, sizeof(flags), uargs) || !(flags & CLONE_INTO_CGROUP_))
		return -1;
	if (bpf_probe_read_user(&fd, sizeof(fd), uargs + CLONE_ARGS_CGROUP_OFF))
		return -1;
	return (int)fd;
}

/* ---- scripts handed to an interpreter ---- */

/* An interpreter by the name of its binary, trailing digits and dots cut
 * (python3.11 is python): written by user space from exec.interpreters. */
struct interp_key {
	char name[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct interp_key);
	__type(value, __u8);
} interps SEC(".maps");

/* The script an interpreter the kernel just started was given, by the name
 * of its last component, per process: the first file the interpreter opens
 * for reading by that name is its program, judged like an exec. */
struct script_name {
	__u32 len;
	char name[64];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct script_name);
} scripts SEC(".maps");

/* How many entries scripts holds: every open for reading loads it (an array
 * load the verifier inlines) before any hash lookup, so where no interpreter
 * waits for its script the check costs next to nothing. Bumped before an
 * entry is added, dropped after one is deleted: it may run high (an LRU
 * eviction, a moment between the two), which only keeps the gate open; it
 * is never below the entries there are, so no script is missed. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __s64);
} scripts_live SEC(".maps");

static __always_inline __s64 *scripts_count(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&scripts_live, &zero);
}

/* scripts_waiting: whether any process may have a script to open. */
static __always_inline int scripts_waiting(void)
{
	__s64 *n = scripts_count();
	return n && *n > 0;
}

/* script_forget deletes tgid's entry, if it has one (none when no process
 * waits for a script: no delete tried then). */
static __always_inline void script_forget(__u32 tgid)
{
	__s64 *n = scripts_count();
	if (n && *n > 0 && bpf_map_delete_elem(&scripts, &tgid) == 0)
		__sync_fetch_and_add(n, -1);
}

struct script_scan {
	__u32 n;     /* bytes of argv in w->in */
	__u32 start; /* start of the current argument */
	__u32 base;  /* start of its last component */
	__u32 idx;   /* its index */
	__u32 found; /* 1: [base, end) names the script */
	__u32 end;
	struct interp_key key; /* the program's name, trailing digits and dots cut */
};

/* The scan's state: in a map, not on the stack, so the verifier treats it
 * as opaque and the bpf_loop callback converges (as path.h's walk state). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct script_scan);
} scan_map SEC(".maps");

/* scan_arg walks argv (NUL-separated in w->in) to the script argument: the
 * first one after argv[0] that is no option. An inline-code option (-c, -e,
 * -E, -m, -p, -r) before it means there is no script file. */
static long scan_arg(__u32 i, void *unused)
{
	__u32 zero = 0;
	struct work *w = get_work();
	struct script_scan *c = bpf_map_lookup_elem(&scan_map, &zero);
	if (!w || !c || i >= c->n || i >= 1024)
		return 1;
	char ch = w->in[bound(i, 1023)];
	if (ch == '/') {
		c->base = i + 1;
		return 0;
	}
	if (ch != 0)
		return 0;
	__u32 s = c->start, b = c->base;
	c->start = c->base = i + 1;
	if (c->idx++ == 0 || i == s)
		return 0;
	if (w->in[bound(s, 1023)] == '-') {
		char o = w->in[bound(s + 1, 1023)];
		if (i - s == 2 && (o == 'c' || o == 'e' || o == 'E' || o == 'm' || o == 'p' || o == 'r'))
			return 1;
		return 0;
	}
	c->found = 1, c->base = b, c->end = i;
	return 1;
}

/* script_exec runs at every exec in a sealed scope: when the new program is
 * an interpreter, it remembers the name of its script argument. */
static __noinline int script_exec(struct file *f)
{
	struct work *w = get_work();
	if (!w)
		return 0;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32, zero = 0;
	struct script_scan *c = bpf_map_lookup_elem(&scan_map, &zero);
	if (!c)
		return 0;
	/* in the map value, the bytes cut are opaque to the verifier: on the
	 * stack each combination would be a state of its own */
	__builtin_memset(&c->key, 0, sizeof(c->key));
	bpf_probe_read_kernel_str(c->key.name, sizeof(c->key.name), BPF_CORE_READ(f, f_path.dentry, d_name.name));
	for (int i = 15; i > 0; i--) {
		char ch = c->key.name[i];
		if (ch == 0)
			continue;
		if ((ch >= '0' && ch <= '9') || ch == '.')
			c->key.name[i] = 0;
		else
			break;
	}
	if (!bpf_map_lookup_elem(&interps, &c->key)) {
		script_forget(tgid);
		return 0;
	}
	struct task_struct *t = bpf_get_current_task_btf();
	__u64 as = BPF_CORE_READ(t, mm, arg_start), ae = BPF_CORE_READ(t, mm, arg_end);
	__u32 n = ae > as ? ae - as : 0;
	if (n > 1023)
		n = 1023;
	if (bpf_probe_read_user(w->in, bound(n, 1023), (void *)as))
		return 0;
	w->in[bound(n, 1023)] = 0;
	c->n = n + 1, c->start = c->base = c->idx = c->found = c->end = 0;
	bpf_loop(1024, scan_arg, NULL, 0);
	if (!c->found || c->end <= c->base)
		return 0;
	struct script_name sn = {};
	__u32 len = c->end - c->base;
	sn.len = len;
	bpf_probe_read_kernel(sn.name, bound(len < 63 ? len : 63, 63), w->in + bound(c->base, 1023));
	/* an exec is the only task of its process by now (the kernel ended the
	 * others): nothing adds or deletes tgid's entry meanwhile */
	__s64 *live = scripts_count();
	if (!live)
		return 0;
	if (!bpf_map_lookup_elem(&scripts, &tgid))
		__sync_fetch_and_add(live, 1);
	bpf_map_update_elem(&scripts, &tgid, &sn, BPF_ANY);
	return 0;
}

/* script_opened says whether f, opened for reading, is the script the
 * current process's interpreter was started with (and forgets it then). */
static __always_inline int script_opened(struct file *f)
{
	if (!scripts_waiting())
		return 0;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct script_name *sn = bpf_map_lookup_elem(&scripts, &tgid);
	if (!sn)
		return 0;
	struct qstr q = BPF_CORE_READ(f, f_path.dentry, d_name);
	if (q.len != sn->len)
		return 0;
	char n[64] = {};
	bpf_probe_read_kernel_str(n, sizeof(n), q.name);
	for (int i = 0; i < 63; i++) {
		if (n[i] != sn->name[i])
			return 0;
		if (n[i] == 0)
			break;
	}
	script_forget(tgid);
	return 1;
}

/* script_exit forgets the script of a process whose last task exits without
 * having opened it: the gate closes again, and a process that reuses the pid
 * is not judged by it. */
static __always_inline void script_exit(struct task_struct *p)
{
	if (BPF_CORE_READ(p, signal, live.counter) == 0)
		script_forget(BPF_CORE_READ(p, tgid));
}

#endif
