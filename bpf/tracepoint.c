//go:build ignore
/* SPDX-License-Identifier: GPL-2.0 */
/* The tracepoint backend: runs where BPF-LSM is off. Detect-only for files and
 * exec (the mutation lands; the reflex can kill the actor); binds can be denied.
 *
 * File mutations are judged at sys_exit: the return value says whether the
 * mutation happened, the fd of a successful open gives the exact file, and the
 * syscall arguments are still in pt_regs (arch.h: where, per architecture).
 * One hook instead of two halves the cost every syscall pays. */

#include "common.h"
#include "path.h"
#include "maps.h"
#include "seal.h"
#include "vma.h"

char LICENSE[] SEC("license") = "GPL";

#define O_WRONLY_ 01
#define O_RDWR_ 02
#define O_CREAT_ 0100
#define O_TRUNC_ 01000
#define AT_REMOVEDIR_ 0x200
#define AT_EMPTY_PATH_ 0x1000
#define FMODE_WRITE_ 0x2
#define TCP_LISTEN_ 10
#define BPF_PROG_LOAD_ 5
#define NR_BPF_ 321
#define PTRACE_ATTACH_ 16
#define PTRACE_SEIZE_ 0x4206
#define FS_IOC_SETFLAGS_ 0x40086602
#define FS_IOC32_SETFLAGS_ 0x40046602
#define FS_IOC_FSSETXATTR_ 0x401c5820
#define PROT_EXEC_ 0x4
#define MAP_ANONYMOUS_ 0x20

/* A file by its identity, never by its struct file's address: the kernel
 * frees that at close and soon hands it to the next open, so a library the
 * loader maps right after one judged benign would pass unjudged. */
struct seen_key {
	__u64 ino;
	__u32 dev;
	__u32 tgid;
	__u32 epoch;
	__u32 _pad; /* zeroed: the key is hashed whole */
};

/* (process, file) pairs already judged in this seal, for writes through a
 * descriptor and for executable mappings: a repeated write costs the fd
 * lookup and this lookup only. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct seen_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
} seen SEC(".maps");

/* Exec generation per process, bumped at every exec: with the start time it
 * tells user space whether cached process data (exe, argv) is still right. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u32);
} execgen SEC(".maps");

/* proc_tag (judge.h): the start time and the exec generation, so user space
 * can tell whether cached process data (exe, argv) is still right. */
static __always_inline __u32 proc_tag(struct task_struct *t, __u32 tgid)
{
	__u32 *gen = bpf_map_lookup_elem(&execgen, &tgid);
	return ((__u32)t->start_time ^ ((gen ? *gen : 0) * 0x9E3779B9u)) | 1;
}

#include "judge.h"

/* seen_key_of fills k for file f of process tgid in seal epoch. */
static __always_inline void seen_key_of(struct seen_key *k, struct file *f, __u32 tgid, __u32 epoch)
{
	struct inode *ino = KLOAD(struct file, f, f_inode);
	struct super_block *sb = KLOAD(struct inode, ino, i_sb);
	k->ino = KLOAD(struct inode, ino, i_ino);
	k->dev = KLOAD(struct super_block, sb, s_dev);
	k->tgid = tgid;
	k->epoch = epoch;
	k->_pad = 0;
}

static __always_inline void mark_seen(struct config *cfg, struct file *f, __u32 tgid)
{
	struct seen_key k;
	seen_key_of(&k, f, tgid, cfg->epoch);
	__u8 one = 1;
	bpf_map_update_elem(&seen, &k, &one, BPF_ANY);
}

/* What a syscall asks us to judge, decoded from its number and registers. */
struct dreq {
	__u16 op;
	__u16 shape;
	int dfd;
	const char *name;
	int dfd2;
	const char *name2;
	int fd;
	__u32 flags;
	__u32 mode;
	__u64 arg;
};

enum shape {
	SH_OPEN = 1, /* the result is an fd: judge the file it names */
	SH_FD,       /* an fd argument: judge its file */
	SH_WRITE,    /* a write through fd: judge once per process and file */
	SH_NAME,     /* a name (dfd, name) */
	SH_NAME2,    /* two names: rename, link */
	SH_SYMLINK,  /* target string, link name (dfd2, name2) */
	SH_MOUNT,    /* a mount-table change: always drift */
	SH_PRIV,     /* module, kexec, bpf, ptrace, io_uring_setup: drift when attempted */
	SH_BPF,      /* any other bpf(2) command: tampering when it touches the sensor's objects */
	SH_OPEN_READ, /* an open without write intent: judged only for the sensor's own files */
	SH_CLONE,     /* clone3: drift when it puts the child in a cgroup outside the sealed scope */
	SH_MMAP,      /* an executable mapping of a file (mmap: fd; mprotect: the address in name) */
};

/* judge_name: a mutation named by the names the process passed, resolved
 * lexically (RF_LEXICAL) into the request judge_path judges. A symlink's
 * record names the link, with the target string as the process gave it. */
static __noinline int judge_name(struct config *cfg, struct dreq *q, long ret, int user)
{
	__u32 zero = 0;
	struct file_rec *r = bpf_map_lookup_elem(&frec_map, &zero);
	struct work *w = get_work();
	if (!r || !w)
		return 0;
	if (!q->name && q->shape != SH_MOUNT)
		return 0;
	struct judge_req j = {.ret = ret, .op = q->op, .flags = q->flags, .mode = q->mode,
			      .hflags = RF_LEXICAL, .always = q->shape == SH_MOUNT};
	w->unresolved = 0;
	if (q->shape == SH_SYMLINK) {
		if (!q->name2)
			return 0;
		j.len = resolve_name(q->dfd2, q->name2, 1, &r->lpm_bits, r->data);
		j.trunc = w->trunc;
		/* an absolute target is judged as the path it names */
		long tl = bpf_probe_read_user_str(w->in, DNAME_MAX, q->name);
		if (tl > 1 && w->in[0] == '/') {
			j.len2 = resolve_alt(q->dfd, (__u64)q->name, 1);
			j.trunc |= w->trunc;
			tl = bpf_probe_read_user_str(w->in, DNAME_MAX, q->name); /* resolving reused it */
		}
		j.tlen = tl > 1 ? tl - 1 : 0;
		if (w->unresolved)
			j.hflags |= RF_UNRESOLVED;
		return judge_path(cfg, &j);
	}
	if (q->name) {
		j.len = resolve_name(q->dfd, q->name, user, &r->lpm_bits, r->data);
		j.trunc = w->trunc;
	}
	if (q->shape == SH_NAME2 && q->name2) {
		j.len2 = resolve_alt(q->dfd2, (__u64)q->name2, user);
		j.trunc |= w->trunc;
	}
	if (w->unresolved)
		j.hflags |= RF_UNRESOLVED;
	return judge_path(cfg, &j);
}

static __noinline int judge_priv(struct config *cfg, struct dreq *q, long ret);

/* judge_file's and judge_seal's answer when the open leaves the scope:
 * judge_priv reports it, with q filled. */
#define JUDGE_LEAVE 2

/* judge_seal judges an open for writing, or a first write, of a file the seal
 * covers beyond the policy's paths (bpf/seal.h). Returns 1 when f is such a
 * file, reported or allowed: the path rules do not judge it again;
 * JUDGE_LEAVE when it leaves the scope. */
static __always_inline int judge_seal(struct config *cfg, struct dreq *q, struct file *f, int fd, long ret)
{
	__u64 arg = 0;
	__u16 op = seal_kind(cfg, f, &arg);
	if (!op)
		return 0;
	if (op == DOP_LEAVE_SCOPE) {
		/* reported by the caller's caller: a call deeper would overflow
		 * the 512 bytes of stack older verifiers (6.1) count */
		q->op = op, q->arg = arg, q->fd = fd;
		return JUDGE_LEAVE;
	}
	__u32 zero = 0;
	struct file_rec *r = bpf_map_lookup_elem(&frec_map, &zero);
	struct work *w = get_work();
	if (!r || !w)
		return 1;
	struct judge_req j = {.ret = ret, .op = op, .flags = q->flags, .mode = q->mode};
	j.len = resolve_file(w, f, r->data);
	j.trunc = w->trunc;
	req_file(&j, f);
	judge_path(cfg, &j);
	return 1;
}

/* judge_clone: a clone3 into a cgroup outside the sealed scope (the parent,
 * still in scope, at its exit; ret is the child). */
static __noinline int judge_clone(struct config *cfg, struct dreq *q, long ret)
{
	int fd = clone3_cgroup_fd(q->name);
	struct file *f = file_of(fd);
	if (!f)
		return 0;
	__u64 id = 0;
	if (!cgroup_outside(cfg, BPF_CORE_READ(f, f_path.dentry), &id))
		return 0;
	q->op = DOP_LEAVE_SCOPE, q->arg = id, q->fd = fd;
	return judge_priv(cfg, q, ret);
}

/* judge_mmap: an executable mapping of a file is code run without an exec of
 * its own (the dynamic loader running a binary, dlopen of a library), and so
 * is a script its interpreter opens (judge_script): drift when the file is
 * tainted or outside the image paths, as an exec would be. Judged once per
 * process and open file in a seal. arg = prot (0 for a script). */
static __noinline int judge_mmap(struct config *cfg, struct dreq *q)
{
	struct file *f = NULL;
	if (q->name) {
		struct vm_area_struct *vma = mapped_vma((__u64)q->name);
		if (vma)
			f = BPF_CORE_READ(vma, vm_file);
	} else {
		f = file_of(q->fd);
	}
	if (!f)
		return 0;
	/* the epoch's top bit keeps these apart from writes through f */
	struct seen_key k;
	seen_key_of(&k, f, bpf_get_current_pid_tgid() >> 32, cfg->epoch | 1u << 31);
	if (bpf_map_lookup_elem(&seen, &k))
		return 0;
	__u8 one = 1;
	bpf_map_update_elem(&seen, &k, &one, BPF_ANY);
	__u32 zero = 0;
	struct exec_rec *r = bpf_map_lookup_elem(&xrec_map, &zero);
	struct work *w = get_work();
	if (!r || !w)
		return 0;
	struct inode *ino = BPF_CORE_READ(f, f_inode);
	r->dev = BPF_CORE_READ(ino, i_sb, s_dev);
	r->ino = BPF_CORE_READ(ino, i_ino);
	__u32 l = resolve_file(w, f, r->data);
	__u32 reasons = code_reasons(r, l);
	if (!reasons)
		return 0;
	fill_hdr(&r->h, REC_EXEC, DOP_EXEC, 0);
	fill_task(&r->h);
	r->ret = 0;
	struct vfsmount *vm = BPF_CORE_READ(f, f_path.mnt);
	r->mnt_id = mnt_id_of(vm);
	r->reasons = reasons;
	r->arg = q->arg;
	r->rule = 0;
	r->args_len = 0;
	l = bound(l, 4095);
	r->path_len = l;
	r->data[l] = 0;
	r->data[bound(l + 1, 4095)] = 0;
	send_exec(cfg, r, w->trunc, 0);
	return 0;
}

/* judge_script: an interpreter the kernel started with a script argument
 * opening that script for reading runs it: judged like an exec (by place
 * and taint). Every other open for reading loads one counter, and looks a
 * hash up only while some interpreter waits for its script. */
static __always_inline int judge_script(struct dreq *q, long fd)
{
	if (!scripts_waiting())
		return 0;
	struct file *f = file_of(fd);
	if (!f || !script_opened(f))
		return 0;
	struct config *cfg = get_config();
	if (!cfg || !cfg->sealed || !in_scope(cfg))
		return 0;
	q->fd = fd, q->name = NULL, q->arg = 0;
	return judge_mmap(cfg, q);
}

/* judge_file judges an open file: after open (the new fd), an fd argument, or a
 * write through an fd. Cheap rejections come first; the record header is
 * filled only for a finding. */
static __noinline int judge_file(struct config *cfg, struct dreq *q, int fd, long ret)
{
	__u32 zero = 0;
	struct file *f = file_of(fd);
	if (!f)
		return 0;
	struct file_rec *r = bpf_map_lookup_elem(&frec_map, &zero);
	struct work *w = get_work();
	if (!r || !w)
		return 0;

	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (q->shape == SH_WRITE) {
		struct seen_key k;
		seen_key_of(&k, f, tgid, cfg->epoch);
		if (bpf_map_lookup_elem(&seen, &k))
			return 0;
	}
	struct inode *ino = KLOAD(struct file, f, f_inode);
	if (q->shape == SH_WRITE) {
		if ((KLOAD(struct inode, ino, i_mode) & S_IFMT_) != S_IFREG_ || !(KLOAD(struct file, f, f_mode) & FMODE_WRITE_))
			return 0;
	}
	/* Kernel settings, raw devices and cgroup.procs live under exempt
	 * prefixes (/proc, /sys, /dev): the seal judges them before the
	 * directory cache can dismiss the file. */
	if (q->shape == SH_OPEN || q->shape == SH_WRITE) {
		int sealed = judge_seal(cfg, q, f, fd, ret);
		if (sealed) {
			mark_seen(cfg, f, tgid);
			return sealed == JUDGE_LEAVE ? JUDGE_LEAVE : 0;
		}
	}
	if (file_exempt(f)) {
		/* With direct loads the directory check costs less than
		 * remembering the file; without, remember it at its first write. */
		if (!btf_loads && q->shape == SH_WRITE)
			mark_seen(cfg, f, tgid);
		return 0;
	}
	mark_seen(cfg, f, tgid);

	/* a write taints what could later run as part of the image (taintable) */
	struct judge_req j = {.ret = ret, .op = q->op, .flags = q->flags, .mode = q->mode,
			      .taint = q->shape == SH_OPEN || q->shape == SH_WRITE || q->op == DOP_TRUNCATE};
	j.len = resolve_file(w, f, r->data);
	j.trunc = w->trunc;
	req_file(&j, f);
	judge_path(cfg, &j);
	if (j.taint && is_regular_inode(ino))
		taint_id(j.dev, j.ino);
	return 0;
}

static __noinline int judge_priv(struct config *cfg, struct dreq *q, long ret)
{
	__u32 zero = 0;
	struct exec_rec *r = bpf_map_lookup_elem(&xrec_map, &zero);
	struct work *w = get_work();
	if (!r || !w)
		return 0;
	fill_hdr(&r->h, REC_EXEC, q->op, RF_ATTEMPT);
	fill_task(&r->h);
	r->ret = ret;
	r->arg = q->arg;
	r->dev = r->ino = 0;
	r->mnt_id = 0;
	r->reasons = 0;
	r->rule = 0;
	r->args_len = 0;
	__u32 l = 0;
	w->trunc = 0;
	if (q->fd >= 0) {
		struct file *f = file_of(q->fd);
		if (f) {
			l = resolve_file(w, f, r->data);
			r->dev = BPF_CORE_READ(f, f_inode, i_sb, s_dev);
			r->ino = BPF_CORE_READ(f, f_inode, i_ino);
		}
	}
	r->path_len = bound(l, 4095);
	r->data[bound(l, 4095)] = 0;
	r->data[bound(l + 1, 4095)] = 0;
	send_exec(cfg, r, w->trunc, 0);
	return 0;
}

/* send_self sends a tamper record: an act on the sensor itself, reported
 * whatever the seal and the scope (tampering matters wherever it comes
 * from) and never answered with the reflex (the actor may be outside the
 * sealed scope). */
static __always_inline void send_self(struct exec_rec *r, __u16 op, __u64 arg, long ret, __u16 flags)
{
	fill_hdr(&r->h, REC_EXEC, op, RF_ATTEMPT | flags);
	fill_task(&r->h);
	r->ret = ret;
	r->arg = arg;
	r->mnt_id = 0;
	r->reasons = 0;
	r->rule = 0;
	r->args_len = 0;
	__u64 size = offsetof(struct exec_rec, data) + r->path_len + 2;
	if (size > sizeof(*r))
		size = sizeof(*r);
	r->h.size = size;
	emit(r, size);
}

/* judge_bpf: a bpf(2) command other than a program load. The sensor's own
 * reads of its liveness map advance the counter; another process's command
 * on one of the sensor's maps, programs or links is tampering. */
static __noinline int judge_bpf(struct dreq *q, long ret)
{
	if (is_self()) {
		count_liveness(q->arg, q->name, 1);
		return 0;
	}
	__u64 key = self_bpf_key(q->arg, q->name, 1);
	if (!key)
		return 0;
	__u32 zero = 0;
	struct exec_rec *r = bpf_map_lookup_elem(&xrec_map, &zero);
	if (!r)
		return 0;
	r->dev = r->ino = 0;
	r->path_len = 0;
	r->data[0] = r->data[1] = 0;
	send_self(r, DOP_SELF_BPF, key, ret, 0);
	return 0;
}

/* judge_read: a successful open without write intent, of one of the
 * sensor's own files by another process, is tampering. */
static __noinline int judge_read(struct dreq *q, long fd)
{
	if (is_self())
		return 0;
	struct file *f = file_of(fd);
	if (!f)
		return 0;
	struct file_id id;
	if (!guarded_file(f, &id))
		return 0;
	__u32 zero = 0;
	struct exec_rec *r = bpf_map_lookup_elem(&xrec_map, &zero);
	struct work *w = get_work();
	if (!r || !w)
		return 0;
	w->trunc = 0;
	__u32 l = resolve_file(w, f, r->data);
	r->dev = id.dev;
	r->ino = id.ino;
	r->path_len = bound(l, 4095);
	r->data[bound(l, 4095)] = 0;
	r->data[bound(l + 1, 4095)] = 0;
	send_self(r, DOP_SELF_OPEN, q->flags, fd, w->trunc ? RF_TRUNC : 0);
	return 0;
}

static __always_inline int decode(struct pt_regs *regs, long id, struct dreq *q)
{
	__u64 a0, a1, a2, a3, a4;
	syscall_args(regs, a0, a1, a2, a3, a4);
	q->dfd = AT_FDCWD_;
	q->dfd2 = AT_FDCWD_;
	q->fd = -1;
	switch (id) {
	/* opens: judged only with write, create or truncate intent */
	case 2: /* open */
		q->name = (const char *)a0, q->flags = a1, q->mode = a2;
		goto open;
	case 85: /* creat */
		q->name = (const char *)a0, q->flags = O_CREAT_ | O_WRONLY_ | O_TRUNC_, q->mode = a1;
		goto open;
	case 257: /* openat */
		q->name = (const char *)a1, q->flags = a2, q->mode = a3;
		goto open;
	case 437: { /* openat2 */
		__u64 fl = 0;
		bpf_probe_read_user(&fl, sizeof(fl), (void *)a2);
		q->flags = fl;
		goto open;
	}
	case 304: /* open_by_handle_at */
		q->flags = a2;
		goto open;
	open:
		q->op = DOP_OPEN, q->shape = SH_OPEN;
		if (!(q->flags & (O_WRONLY_ | O_RDWR_ | O_CREAT_ | O_TRUNC_)))
			q->shape = SH_OPEN_READ; /* the sensor's own files; an interpreter's script */
		return 1;

	/* writes through a descriptor: first per process and file */
	case 1: case 18: case 20: case 296: case 328: case 285: /* write pwrite64 writev pwritev pwritev2 fallocate */
		q->fd = a0;
		goto write;
	case 40: /* sendfile(out_fd, ...) */
		q->fd = a0;
		goto write;
	case 275: case 326: /* splice, copy_file_range: fd_out is the third */
		q->fd = a2;
		goto write;
	write:
		q->op = DOP_WRITE, q->shape = SH_WRITE;
		return 1;

	case 76: /* truncate */
		q->op = DOP_TRUNCATE, q->shape = SH_NAME, q->name = (const char *)a0;
		return 1;
	case 77: /* ftruncate */
		q->op = DOP_TRUNCATE, q->shape = SH_FD, q->fd = a0;
		return 1;

	case 82: /* rename */
		q->op = DOP_RENAME, q->shape = SH_NAME2, q->name = (const char *)a0, q->name2 = (const char *)a1;
		return 1;
	case 264: case 316: /* renameat renameat2 */
		q->op = DOP_RENAME, q->shape = SH_NAME2, q->dfd = a0, q->name = (const char *)a1;
		q->dfd2 = a2, q->name2 = (const char *)a3, q->flags = id == 316 ? a4 : 0;
		return 1;
	case 87: /* unlink */
		q->op = DOP_UNLINK, q->shape = SH_NAME, q->name = (const char *)a0;
		return 1;
	case 84: /* rmdir */
		q->op = DOP_RMDIR, q->shape = SH_NAME, q->name = (const char *)a0;
		return 1;
	case 263: /* unlinkat */
		q->op = (a2 & AT_REMOVEDIR_) ? DOP_RMDIR : DOP_UNLINK, q->shape = SH_NAME;
		q->dfd = a0, q->name = (const char *)a1, q->flags = a2;
		return 1;
	case 86: /* link */
		q->op = DOP_LINK, q->shape = SH_NAME2, q->name = (const char *)a0, q->name2 = (const char *)a1;
		return 1;
	case 265: /* linkat */
		q->op = DOP_LINK, q->shape = SH_NAME2, q->dfd = a0, q->name = (const char *)a1;
		q->dfd2 = a2, q->name2 = (const char *)a3, q->flags = a4;
		return 1;
	case 88: /* symlink(target, linkpath) */
		q->op = DOP_SYMLINK, q->shape = SH_SYMLINK, q->name = (const char *)a0, q->name2 = (const char *)a1;
		return 1;
	case 266: /* symlinkat(target, newdirfd, linkpath) */
		q->op = DOP_SYMLINK, q->shape = SH_SYMLINK, q->name = (const char *)a0;
		q->dfd2 = a1, q->name2 = (const char *)a2;
		return 1;
	case 83: /* mkdir */
		q->op = DOP_MKDIR, q->shape = SH_NAME, q->name = (const char *)a0, q->mode = a1;
		return 1;
	case 258: /* mkdirat */
		q->op = DOP_MKDIR, q->shape = SH_NAME, q->dfd = a0, q->name = (const char *)a1, q->mode = a2;
		return 1;
	case 133: /* mknod */
		q->op = DOP_MKNOD, q->shape = SH_NAME, q->name = (const char *)a0, q->mode = a1;
		return 1;
	case 259: /* mknodat */
		q->op = DOP_MKNOD, q->shape = SH_NAME, q->dfd = a0, q->name = (const char *)a1, q->mode = a2;
		return 1;

	case 90: /* chmod */
		q->op = DOP_CHMOD, q->shape = SH_NAME, q->name = (const char *)a0, q->mode = a1;
		return 1;
	case 91: /* fchmod */
		q->op = DOP_CHMOD, q->shape = SH_FD, q->fd = a0, q->mode = a1;
		return 1;
	case 268: case 452: /* fchmodat fchmodat2 */
		q->op = DOP_CHMOD, q->dfd = a0, q->name = (const char *)a1, q->mode = a2;
		q->flags = id == 452 ? a3 : 0;
		goto name_or_fd;
	case 92: case 94: /* chown lchown */
		q->op = DOP_CHOWN, q->shape = SH_NAME, q->name = (const char *)a0, q->arg = a1 << 32 | (__u32)a2;
		return 1;
	case 93: /* fchown */
		q->op = DOP_CHOWN, q->shape = SH_FD, q->fd = a0, q->arg = a1 << 32 | (__u32)a2;
		return 1;
	case 260: /* fchownat */
		q->op = DOP_CHOWN, q->dfd = a0, q->name = (const char *)a1, q->flags = a4;
		goto name_or_fd;

	case 188: case 189: /* setxattr lsetxattr */
		q->op = DOP_SETXATTR, q->shape = SH_NAME, q->name = (const char *)a0;
		return 1;
	case 190: /* fsetxattr */
		q->op = DOP_SETXATTR, q->shape = SH_FD, q->fd = a0;
		return 1;
	case 463: /* setxattrat(dfd, path, at_flags, ...) */
		q->op = DOP_SETXATTR, q->dfd = a0, q->name = (const char *)a1, q->flags = a2;
		goto name_or_fd;
	case 197: case 198: /* removexattr lremovexattr */
		q->op = DOP_REMOVEXATTR, q->shape = SH_NAME, q->name = (const char *)a0;
		return 1;
	case 199: /* fremovexattr */
		q->op = DOP_REMOVEXATTR, q->shape = SH_FD, q->fd = a0;
		return 1;
	case 466: /* removexattrat */
		q->op = DOP_REMOVEXATTR, q->dfd = a0, q->name = (const char *)a1, q->flags = a2;
		goto name_or_fd;

	case 132: case 235: /* utime utimes */
		q->op = DOP_UTIMES, q->shape = SH_NAME, q->name = (const char *)a0;
		return 1;
	case 261: /* futimesat */
		q->op = DOP_UTIMES, q->shape = SH_NAME, q->dfd = a0, q->name = (const char *)a1;
		return 1;
	case 280: /* utimensat(dfd, path or NULL, times, flags) */
		q->op = DOP_UTIMES, q->dfd = a0, q->name = (const char *)a1, q->flags = a3;
		if (!a1) {
			q->shape = SH_FD, q->fd = a0;
			return 1;
		}
		goto name_or_fd;

	case 16: /* ioctl: only inode-flag changes (chattr) */
		if (a1 != FS_IOC_SETFLAGS_ && a1 != FS_IOC32_SETFLAGS_ && a1 != FS_IOC_FSSETXATTR_)
			return 0;
		q->op = DOP_SETFLAGS, q->shape = SH_FD, q->fd = a0, q->flags = a1;
		return 1;

	/* mount-table changes */
	case 165: /* mount(source, target, ...) */
		q->op = DOP_MOUNT, q->shape = SH_MOUNT, q->name = (const char *)a1, q->flags = a3, q->arg = id;
		return 1;
	case 166: /* umount2(target, flags) */
		q->op = DOP_MOUNT, q->shape = SH_MOUNT, q->name = (const char *)a0, q->flags = a1, q->arg = id;
		return 1;
	case 429: /* move_mount(from_dfd, from, to_dfd, to, flags) */
		q->op = DOP_MOUNT, q->shape = SH_MOUNT, q->dfd = a2, q->name = (const char *)a3, q->flags = a4, q->arg = id;
		return 1;
	case 428: case 433: /* open_tree fspick (dfd, path, flags) */
		q->op = DOP_MOUNT, q->shape = SH_MOUNT, q->dfd = a0, q->name = (const char *)a1, q->flags = a2, q->arg = id;
		return 1;
	case 442: /* mount_setattr(dfd, path, ...) */
		q->op = DOP_MOUNT, q->shape = SH_MOUNT, q->dfd = a0, q->name = (const char *)a1, q->arg = id;
		return 1;
	case 431: case 432: /* fsconfig fsmount */
		q->op = DOP_MOUNT, q->shape = SH_MOUNT, q->flags = a1, q->arg = id;
		return 1;

	/* privileged kernel operations: drift when attempted */
	case 175: case 176: /* init_module delete_module */
		q->op = DOP_MODULE, q->shape = SH_PRIV, q->arg = id;
		return 1;
	case 313: /* finit_module(fd) */
		q->op = DOP_MODULE, q->shape = SH_PRIV, q->fd = a0, q->arg = id;
		return 1;
	case 246: /* kexec_load */
		q->op = DOP_KEXEC, q->shape = SH_PRIV, q->arg = id;
		return 1;
	case 320: /* kexec_file_load(kernel_fd, ...) */
		q->op = DOP_KEXEC, q->shape = SH_PRIV, q->fd = a0, q->arg = id;
		return 1;
	case NR_BPF_: /* bpf(cmd, attr): program loads are drift; other commands are judged by their object */
		q->arg = a0;
		if (a0 != BPF_PROG_LOAD_) {
			q->shape = SH_BPF, q->name = (const char *)a1;
			return 1;
		}
		q->op = DOP_BPF, q->shape = SH_PRIV;
		return 1;
	case 101: /* ptrace(request, pid) */
		if (a0 != PTRACE_ATTACH_ && a0 != PTRACE_SEIZE_)
			return 0;
		q->op = DOP_PTRACE, q->shape = SH_PRIV, q->arg = a0 << 32 | (__u32)a1;
		return 1;
	case 311: /* process_vm_writev(pid, ...) */
		q->op = DOP_PTRACE, q->shape = SH_PRIV, q->arg = (__u64)id << 32 | (__u32)a0;
		return 1;
	case 9: /* mmap(addr, len, prot, flags, fd, off): executable mappings of files only */
		if (!(a2 & PROT_EXEC_) || (a3 & MAP_ANONYMOUS_))
			return 0;
		q->op = DOP_EXEC, q->shape = SH_MMAP, q->fd = a4, q->arg = a2;
		return 1;
	case 10: /* mprotect(addr, len, prot) */
		if (!(a2 & PROT_EXEC_))
			return 0;
		q->op = DOP_EXEC, q->shape = SH_MMAP, q->name = (const char *)a0, q->arg = a2;
		return 1;
	case NR_CLONE3_: /* clone3(args, size) */
		q->shape = SH_CLONE, q->name = (const char *)a0;
		return 1;
	case 425: /* io_uring_setup */
		q->op = DOP_URING_SETUP, q->shape = SH_PRIV, q->arg = a1;
		return 1;
	default:
		return 0;
	}
name_or_fd:
	if (q->flags & AT_EMPTY_PATH_) {
		char c = 0;
		bpf_probe_read_user(&c, 1, q->name);
		if (!c) {
			q->shape = SH_FD, q->fd = q->dfd;
			return 1;
		}
	}
	q->shape = SH_NAME;
	return 1;
}

/* Kernels that run syscall tracepoint programs preemptibly (7.2) skip a
 * program's run on a CPU where that program is preempted mid-run (counted in
 * its recursion_misses). The loader attaches a second copy of this program
 * after the first, with exit_role = EXIT_SECOND and scratch maps of its own,
 * and sets the first's to EXIT_FIRST (alone, it keeps no marks). The first
 * marks, on entry, its CPU with its task (exit_cpu_mark), and then the task
 * itself (exit_task_mark). The second consumes both, and leaves the syscall
 * only when both say the first ran for it:
 * - the first skipped: the CPU mark names the task preempted inside it (it
 *   wrote it on entry), not this one, so the second judges;
 * - the first ran: both marks are this task's, unless another task's first
 *   run came in between (the syscall is judged twice, never missed).
 * A syscall goes unjudged when both copies are skipped (any two tasks
 * preempted in them on its CPU), or, rarely, when the marks of the task's
 * previous syscall, whose second run was skipped, are both still there.
 * Counted: the second's judgements where the task bore no mark
 * (STAT_RECOVERED), each a syscall the first did not run for (or could not
 * mark: STAT_UNMARKED). So the first's skipped runs plus its unmarked ones,
 * less the recovered, bound the syscalls never judged from above, missing
 * none and overcounting only a judgement the task's leftover mark hid from
 * the count. User space reports that (sensor/tracepoint Stats). */
enum sys_exit_role {
	EXIT_ALONE,  /* no second copy is attached: no marks to keep */
	EXIT_FIRST,
	EXIT_SECOND,
};
const volatile enum sys_exit_role exit_role = EXIT_ALONE;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} exit_cpu_mark SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u8);
} exit_task_mark SEC(".maps");

/* exit_judged_first says, in the second copy, that the first ran for this
 * syscall; in the first, it marks and says no. */
static __always_inline bool exit_judged_first(void)
{
	__u32 zero = 0;
	__u64 *cpu = bpf_map_lookup_elem(&exit_cpu_mark, &zero);
	struct task_struct *t = bpf_get_current_task_btf();
	__u64 me = (__u64)t;
	if (exit_role == EXIT_FIRST) {
		if (cpu)
			*cpu = me;
		__u8 *m = bpf_task_storage_get(&exit_task_mark, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (m)
			*m = 1;
		else
			count(STAT_UNMARKED);
		return false;
	}
	bool on_cpu = cpu && *cpu == me;
	if (on_cpu)
		*cpu = 0;
	__u8 *m = bpf_task_storage_get(&exit_task_mark, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!m)
		return false; /* unknown: judge, uncounted */
	if (*m) {
		*m = 0;
		return on_cpu;
	}
	count(STAT_RECOVERED);
	return false;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(drift_sys_exit, struct pt_regs *regs, long ret)
{
	if (exit_role != EXIT_ALONE && exit_judged_first())
		return 0;
	struct dreq q = {};
	if (!decode(regs, syscall_id(syscall_nr(regs)), &q))
		return 0;
	/* Renames and mount changes move paths under cached directories: bump
	 * the generation for every one, sealed or not, in scope or not. */
	if (ret >= 0 && (q.op == DOP_RENAME || q.op == DOP_MOUNT))
		bump_path_generation();
	/* Acts on the sensor itself: whatever the seal and the scope. */
	if (q.shape == SH_BPF)
		return judge_bpf(&q, ret);
	if (q.shape == SH_OPEN_READ) {
		if (ret < 0)
			return 0;
		if (guard_files)
			judge_read(&q, ret);
		return judge_script(&q, ret);
	}
	if (q.shape == SH_OPEN && ret >= 0 && guard_files)
		judge_read(&q, ret);
	struct config *cfg = get_config();
	if (!cfg || !cfg->sealed)
		return 0;
	if (ret < 0 && q.shape != SH_PRIV)
		return 0;
	if (!in_scope(cfg))
		return 0;
	switch (q.shape) {
	case SH_OPEN:
		if (judge_file(cfg, &q, ret, ret) == JUDGE_LEAVE)
			return judge_priv(cfg, &q, ret);
		return 0;
	case SH_FD:
	case SH_WRITE:
		if (judge_file(cfg, &q, q.fd, ret) == JUDGE_LEAVE)
			return judge_priv(cfg, &q, ret);
		return 0;
	case SH_PRIV:
		return judge_priv(cfg, &q, ret);
	case SH_CLONE:
		return ret > 0 ? judge_clone(cfg, &q, ret) : 0;
	case SH_MMAP:
		return judge_mmap(cfg, &q);
	default:
		return judge_name(cfg, &q, ret, 1);
	}
}

/* Exec drift: the binary the kernel is about to run, judged by identity and
 * place. For a script, the interpreter is what bprm->file holds; the script's
 * own name is judged by place. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(drift_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32, one = 1;
	__u32 *gen = bpf_map_lookup_elem(&execgen, &tgid);
	if (gen)
		__sync_fetch_and_add(gen, 1);
	else
		bpf_map_update_elem(&execgen, &tgid, &one, BPF_ANY);

	struct config *cfg = get_config();
	if (!cfg || !cfg->sealed || !in_scope(cfg))
		return 0;
	__u32 zero = 0;
	struct exec_rec *r = bpf_map_lookup_elem(&xrec_map, &zero);
	struct work *w = get_work();
	if (!r || !w)
		return 0;

	struct file *f = BPF_CORE_READ(bprm, file);
	script_exec(f);
	struct inode *ino = BPF_CORE_READ(f, f_inode);
	r->dev = BPF_CORE_READ(ino, i_sb, s_dev);
	r->ino = BPF_CORE_READ(ino, i_ino);
	__u32 l = resolve_file(w, f, r->data);
	__u32 trunc = w->trunc;
	__u32 reasons = exec_reasons(r, l, BPF_CORE_READ(ino, __i_nlink) == 0);

	const char *fname = BPF_CORE_READ(bprm, filename);
	const char *interp = BPF_CORE_READ(bprm, interp);
	if (fname != interp && !(reasons & EX_OUTSIDE_IMAGE)) {
		/* a script: its own path decides */
		__u32 sl = resolve_alt(AT_FDCWD_, (__u64)fname, 0);
		trunc |= w->trunc;
		if (sl && !classify(&images, &w->alt_bits, sl)) {
			reasons |= EX_OUTSIDE_IMAGE;
			sl = bound(sl, 4095);
			bpf_probe_read_kernel(r->data, sl, w->alt);
			l = sl;
		}
	}
	if (!reasons)
		return 0;

	fill_hdr(&r->h, REC_EXEC, DOP_EXEC, 0);
	fill_task(&r->h);
	r->ret = 0;
	struct vfsmount *vm = BPF_CORE_READ(f, f_path.mnt);
	struct mount *mnt = container_of(vm, struct mount, mnt);
	r->mnt_id = BPF_CORE_READ(mnt, mnt_id);
	r->reasons = reasons;
	r->arg = 0;
	r->rule = 0;
	l = bound(l, 4095);
	r->path_len = l;
	r->data[l] = 0;

	/* bounded argv: we run in the new image, so its mm holds the arguments */
	struct task_struct *t = bpf_get_current_task_btf();
	__u64 as = BPF_CORE_READ(t, mm, arg_start), ae = BPF_CORE_READ(t, mm, arg_end);
	__u64 alen = ae > as ? ae - as : 0;
	if (alen > ARGS_MAX - 1) {
		alen = ARGS_MAX - 1;
		trunc = 1;
	}
	__u32 aoff = bound(l + 1, 4095);
	if (bpf_probe_read_user(r->data + aoff, bound(alen, 1023), (void *)as))
		alen = 0;
	r->args_len = alen;
	send_exec(cfg, r, trunc, 0);
	return 0;
}

/* Newer kernels (7.2 does, 6.18 does not) wrap io_uring's names in struct
 * delayed_filename (the same struct filename pointer inside); before, the
 * fields are the pointer. The flavours below name the wrapped fields, for
 * kernels that have them. */
struct delayed_filename___new {
	struct filename *__incomplete_filename;
} __attribute__((preserve_access_index));
struct io_open___new {
	struct delayed_filename___new filename;
} __attribute__((preserve_access_index));
struct io_unlink___new {
	struct delayed_filename___new filename;
} __attribute__((preserve_access_index));
struct io_mkdir___new {
	struct delayed_filename___new filename;
} __attribute__((preserve_access_index));
struct io_rename___new {
	struct delayed_filename___new oldpath, newpath;
} __attribute__((preserve_access_index));
struct io_link___new {
	struct delayed_filename___new newpath;
} __attribute__((preserve_access_index));

/* The user's name of an io_uring request's struct T field F, on either layout. */
#define URING_NAME(p, T, F)                                                                  \
	(bpf_core_type_exists(struct delayed_filename___new)                                     \
	     ? (const char *)BPF_CORE_READ((struct T##___new *)(p), F.__incomplete_filename, name) \
	     : (const char *)BPF_CORE_READ((struct T *)(p), F, name))

/* A task exits: the last one of its process forgets its script. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(drift_exit, struct task_struct *p)
{
	script_exit(p);
	return 0;
}

/* io_uring submits file operations without the syscalls we watch. */
SEC("tp_btf/io_uring_submit_req")
int BPF_PROG(drift_uring, struct io_kiocb *req)
{
	__u8 opc = BPF_CORE_READ(req, opcode);
	struct dreq q = {.op = DOP_URING, .flags = opc, .dfd = AT_FDCWD_, .dfd2 = AT_FDCWD_, .fd = -1};
	switch (opc) {
	case IORING_OP_OPENAT:
	case IORING_OP_OPENAT2: {
		struct io_open *o = (void *)&req->cmd;
		__u64 fl = BPF_CORE_READ(o, how.flags);
		if (!(fl & (O_WRONLY_ | O_RDWR_ | O_CREAT_ | O_TRUNC_)))
			return 0;
		q.dfd = BPF_CORE_READ(o, dfd);
		q.name = URING_NAME(o, io_open, filename);
		break;
	}
	case IORING_OP_UNLINKAT: {
		struct io_unlink *u = (void *)&req->cmd;
		q.dfd = BPF_CORE_READ(u, dfd);
		q.name = URING_NAME(u, io_unlink, filename);
		break;
	}
	case IORING_OP_MKDIRAT: {
		struct io_mkdir *m = (void *)&req->cmd;
		q.dfd = BPF_CORE_READ(m, dfd);
		q.name = URING_NAME(m, io_mkdir, filename);
		break;
	}
	case IORING_OP_RENAMEAT: {
		struct io_rename *rn = (void *)&req->cmd;
		bump_path_generation();
		q.dfd = BPF_CORE_READ(rn, old_dfd);
		q.name = URING_NAME(rn, io_rename, oldpath);
		q.dfd2 = BPF_CORE_READ(rn, new_dfd);
		q.name2 = URING_NAME(rn, io_rename, newpath);
		break;
	}
	case IORING_OP_SYMLINKAT:
	case IORING_OP_LINKAT: {
		struct io_link *lk = (void *)&req->cmd;
		q.dfd = BPF_CORE_READ(lk, new_dfd);
		q.name = URING_NAME(lk, io_link, newpath);
		break;
	}
	case IORING_OP_WRITE:
	case IORING_OP_WRITEV:
	case IORING_OP_WRITE_FIXED:
	case IORING_OP_FALLOCATE:
	case IORING_OP_FTRUNCATE:
	case IORING_OP_FSETXATTR:
		q.fd = BPF_CORE_READ(req, cqe.fd);
		break;
	default:
		return 0;
	}
	struct config *cfg = get_config();
	if (!cfg || !cfg->sealed || !in_scope(cfg))
		return 0;
	if (q.fd >= 0) {
		q.shape = SH_FD;
		return judge_file(cfg, &q, q.fd, 0);
	}
	q.shape = q.name2 ? SH_NAME2 : SH_NAME;
	return judge_name(cfg, &q, 0, 0);
}

static __always_inline int bind_common(struct bpf_sock_addr *ctx, __u16 family, __u8 *addr, __u32 alen)
{
	__u16 port = bpf_ntohs(ctx->user_port);
	if (port == 0)
		return 1;
	struct config *cfg = get_config();
	if (!cfg || !cfg->sealed || !in_scope(cfg))
		return 1;
	if (port_allowed(port))
		return 1;
	struct net_rec r = {};
	fill_hdr(&r.h, REC_NET, DOP_BIND, 0);
	r.h.size = sizeof(r);
	r.family = family;
	r.protocol = ctx->protocol;
	r.port = port;
	if (alen == 4) {
		__u32 a = ctx->user_ip4;
		__builtin_memcpy(r.addr, &a, 4);
	} else {
		__u32 a[4];
		a[0] = ctx->user_ip6[0], a[1] = ctx->user_ip6[1], a[2] = ctx->user_ip6[2], a[3] = ctx->user_ip6[3];
		__builtin_memcpy(r.addr, a, 16);
	}
	if (cfg->deny_binds)
		r.h.flags |= RF_DENIED;
	emit(&r, sizeof(r));
	return cfg->deny_binds ? 0 : 1;
}

SEC("cgroup/bind4")
int drift_bind4(struct bpf_sock_addr *ctx)
{
	return bind_common(ctx, 2, 0, 4);
}

SEC("cgroup/bind6")
int drift_bind6(struct bpf_sock_addr *ctx)
{
	return bind_common(ctx, 10, 0, 16);
}

/* A socket entering LISTEN on a port the policy does not allow. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(drift_listen, const struct sock *sk, int oldstate, int newstate)
{
	if (newstate != TCP_LISTEN_)
		return 0;
	struct config *cfg = get_config();
	if (!cfg || !cfg->sealed || !in_scope(cfg))
		return 0;
	__u32 port = BPF_CORE_READ(sk, __sk_common.skc_num);
	if (port_allowed(port))
		return 0;
	struct net_rec r = {};
	fill_hdr(&r.h, REC_NET, DOP_LISTEN, 0);
	fill_task(&r.h);
	r.h.size = sizeof(r);
	r.family = BPF_CORE_READ(sk, __sk_common.skc_family);
	r.protocol = BPF_CORE_READ(sk, sk_protocol);
	r.port = port;
	if (r.family == 2) {
		__u32 a = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__builtin_memcpy(r.addr, &a, 4);
	} else {
		BPF_CORE_READ_INTO(&r.addr, sk, __sk_common.skc_v6_rcv_saddr);
	}
	emit(&r, sizeof(r));
	return 0;
}

/* Keep the record types in the object's BTF: user space generates its Go
 * mirrors and checks their layout from it. */
const struct rec_hdr *_rec_hdr __attribute__((unused));
const struct file_rec *_file_rec __attribute__((unused));
const struct exec_rec *_exec_rec __attribute__((unused));
const struct net_rec *_net_rec __attribute__((unused));
const struct dirlink *_dirlink __attribute__((unused));
