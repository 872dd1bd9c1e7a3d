//go:build ignore
/* SPDX-License-Identifier: GPL-2.0 */
/* The lsm backend: BPF-LSM hooks judge every mutation before it lands, so in
 * enforce mode they can refuse it (-EPERM, RF_DENIED); in detect mode they
 * report it. Records and maps are the tracepoint backend's (common.h), so user
 * space decodes and fills both alike.
 *
 * Paths: bpf_d_path where the kernel allows it (only hooks in its sleepable
 * set: file_open, file_ioctl, bprm_check_security, mmap_file,
 * kernel_read_file, sb_mount); elsewhere a dentry walk (path.h), which is just
 * as canonical because the kernel has already resolved the name. Records carry
 * RF_ATTEMPT: the hook runs before the operation, so ret is the verdict (0 or
 * -EPERM), not the syscall's result.
 *
 * Two programs exist in two versions, and the loader (sensor/lsm) keeps the one
 * the running kernel fits: inode_setattr gained an idmap argument in 6.8
 * (drift_inode_setattr / drift_inode_setattr_old), and io_uring_setup has an
 * LSM hook only since 6.16 (drift_uring_allowed; before it the io_uring_create
 * tracepoint, drift_uring_create, reports the rings that were set up). */

#include "common.h"
/* path.h also resolves names passed by a process, which hooks never need */
#pragma clang diagnostic ignored "-Wunused-function"
#include "path.h"
#include "maps.h"
#include "seal.h"

char LICENSE[] SEC("license") = "GPL";


#define O_CREAT_ 0100
#define O_TRUNC_ 01000
#define FMODE_WRITE_ 0x2
#define FMODE_CREATED_ 0x100000
#define MAY_WRITE_ 0x2
#define MAY_APPEND_ 0x8
#define PROT_EXEC_ 0x4
#define AF_INET_ 2
#define AF_INET6_ 10
#define BPF_PROG_LOAD_ 5
#define PTRACE_MODE_ATTACH_ 0x02
#define FS_IOC_SETFLAGS_ 0x40086602
#define FS_IOC32_SETFLAGS_ 0x40046602
#define FS_IOC_FSSETXATTR_ 0x401c5820
#define ATTR_MODE_ (1 << 0)
#define ATTR_UID_ (1 << 1)
#define ATTR_GID_ (1 << 2)
#define ATTR_SIZE_ (1 << 3)
#define ATTR_ATIME_ (1 << 4)
#define ATTR_MTIME_ (1 << 5)
#define NR_EXECVE_ 59
#define NR_EXECVEAT_ 322
#define ARGV_MAX 64 /* arguments read; ARGS_MAX bounds their bytes */

#define SEEN_WRITE 0  /* judged for writes through a descriptor */
#define SEEN_EXEC 1   /* reported as exec drift: the loader's mmap is the same finding */
#define SEEN_OTRUNC 2 /* reported as open(O_TRUNC): the truncate that follows is the same finding */
#define SEEN_MAPPED 3 /* mapped executable and judged benign */

struct seen_key {
	__u64 dev;
	__u64 ino;
	__u32 tgid;
	__u32 kind; /* SEEN_* | seal epoch << 2 */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct seen_key);
	__type(value, __u8);
} seen SEC(".maps");

/* proc_tag (judge.h): no exec generation here; user space validates cached
 * process data against /proc. */
static __always_inline __u32 proc_tag(struct task_struct *t, __u32 tgid)
{
	return 0;
}

#include "judge.h"

/* Kernels before 6.8 chain a superblock's mounts on a list. */
struct super_block___old {
	struct list_head s_mounts;
};
struct mount___old {
	struct list_head mnt_instance;
};
/* Later ones point at a mount (named so for headers of either kind: arm64's). */
struct super_block___new {
	struct mount *s_mounts;
};

/* active returns the config when the host is sealed and the task in scope. */
static __always_inline struct config *active(void)
{
	struct config *cfg = get_config();
	if (!cfg || !cfg->sealed || !in_scope(cfg))
		return NULL;
	return cfg;
}

static __always_inline int enforcing(struct config *cfg)
{
	return cfg->reflex & REFLEX_DENY;
}

/* seen_kind adds the seal epoch to a mark: a new seal judges afresh, as in
 * the tracepoint backend. */
static __always_inline __u32 seen_kind(__u32 kind)
{
	struct config *cfg = get_config();
	return kind | (cfg ? cfg->epoch : 0) << 2;
}

static __always_inline int seen_get(__u64 dev, __u64 ino, __u32 kind)
{
	struct seen_key k = {.dev = dev, .ino = ino, .tgid = bpf_get_current_pid_tgid() >> 32, .kind = seen_kind(kind)};
	return bpf_map_lookup_elem(&seen, &k) != NULL;
}

static __always_inline void seen_set(__u64 dev, __u64 ino, __u32 kind)
{
	struct seen_key k = {.dev = dev, .ino = ino, .tgid = bpf_get_current_pid_tgid() >> 32, .kind = seen_kind(kind)};
	__u8 one = 1;
	bpf_map_update_elem(&seen, &k, &one, BPF_ANY);
}

/* seen_take reports and clears a one-shot mark. */
static __always_inline int seen_take(__u64 dev, __u64 ino, __u32 kind)
{
	struct seen_key k = {.dev = dev, .ino = ino, .tgid = bpf_get_current_pid_tgid() >> 32, .kind = seen_kind(kind)};
	return bpf_map_delete_elem(&seen, &k) == 0;
}

static __always_inline struct file_rec *get_frec(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&frec_map, &zero);
}

static __always_inline struct exec_rec *get_xrec(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&xrec_map, &zero);
}

static __always_inline struct exec_rec *xrec_init(__u16 op, __u64 arg)
{
	struct exec_rec *r = get_xrec();
	if (!r)
		return NULL;
	fill_hdr(&r->h, REC_EXEC, op, RF_ATTEMPT);
	fill_task(&r->h);
	r->ret = 0;
	r->dev = r->ino = 0;
	r->arg = arg;
	r->mnt_id = 0;
	r->reasons = 0;
	r->rule = 0;
	r->path_len = 0;
	r->args_len = 0;
	r->data[0] = 0;
	r->data[1] = 0;
	return r;
}

/* dpath walks (dentry, mnt) into out; the root is "/". */
static __always_inline __u32 dpath(struct work *w, struct dentry *d, struct vfsmount *mnt, char *out)
{
	__u32 l = walk_path(w, d, mnt, out);
	if (l == 0) {
		out[0] = '/';
		out[1] = 0;
		l = 1;
	}
	return l;
}

/* first_mount finds a mount of the dentry's superblock, for hooks that get a
 * dentry only (xattrs). With bind mounts the path is the first mount's. */
static __always_inline struct vfsmount *first_mount(struct dentry *d)
{
	struct super_block *sb = BPF_CORE_READ(d, d_sb);
	struct mount *m;
	if (bpf_core_field_exists(struct mount___old, mnt_instance)) {
		struct super_block___old *o = (void *)sb;
		struct list_head *n = BPF_CORE_READ(o, s_mounts.next);
		m = (void *)n - bpf_core_field_offset(struct mount___old, mnt_instance);
	} else {
		m = BPF_CORE_READ((struct super_block___new *)sb, s_mounts);
	}
	if (!m)
		return NULL;
	return &m->mnt;
}

/* A mutation named by dentries: one object, or two (rename, link: either side
 * protected is drift), or a symlink with its target string. */
struct jreq {
	struct dentry *d;
	struct vfsmount *mnt;
	struct dentry *d2;
	struct vfsmount *mnt2;
	const char *target;
	__u32 op;
	__u32 flags;
	__u32 mode;
	__u32 always; /* a finding whatever the rules say (mount-table changes) */
	__u32 taint;  /* in: the operation writes the file; out: it is to be tainted */
};

/* judge_at: a mutation named by dentries, walked into the paths of the
 * request judge_path judges. */
static __noinline int judge_at(struct config *cfg, struct jreq *q)
{
	struct file_rec *r = get_frec();
	struct work *w = get_work();
	if (!r || !w || !q->d || !q->mnt)
		return 0;
	/* names in exempt directories are benign, decided without their paths
	 * (a symlink's target still needs its string) */
	if (!q->always && !q->target && dentry_exempt(q->d, q->mnt) &&
	    (!q->d2 || !q->mnt2 || dentry_exempt(q->d2, q->mnt2))) {
		q->taint = 0;
		return 0;
	}
	struct judge_req j = {.op = q->op, .flags = q->flags, .mode = q->mode, .hflags = RF_ATTEMPT,
			      .always = q->always, .taint = q->taint, .pre = 1};
	w->trunc = 0;
	j.len = dpath(w, q->d, q->mnt, r->data);
	if (q->d2 && q->mnt2)
		j.len2 = dpath(w, q->d2, q->mnt2, w->alt);
	if (q->target) {
		/* the kernel has not resolved the target: an absolute one is
		 * judged as the path its string names */
		long tl = bpf_probe_read_kernel_str(w->in, DNAME_MAX, q->target);
		j.tlen = tl > 1 ? tl - 1 : 0;
		if (tl > 1 && w->in[0] == '/') {
			long l2 = bpf_probe_read_kernel_str(w->alt, DNAME_MAX, q->target);
			j.len2 = l2 > 1 ? l2 - 1 : 0;
		}
	}
	j.trunc = w->trunc;
	struct dentry *d = q->d; /* not inside BPF_CORE_READ: jreq is ours, not the kernel's */
	struct inode *ino = BPF_CORE_READ(d, d_inode);
	if (ino) {
		j.dev = BPF_CORE_READ(ino, i_sb, s_dev);
		j.ino = BPF_CORE_READ(ino, i_ino);
	}
	j.mnt_id = mnt_id_of(q->mnt);
	int v = judge_path(cfg, &j);
	q->taint = j.taint;
	return v;
}

/* walk_file writes an open file's path with an uncached dentry walk. Not
 * path.h's resolve_file: its directory cache is trusted only while a
 * generation the tracepoint backend bumps after every rename and mount change
 * holds, and an LSM hook runs before the rename, too early to bump it. */
static __always_inline __u32 walk_file(struct work *w, struct file *f, char *out)
{
	w->trunc = 0;
	return dpath(w, BPF_CORE_READ(f, f_path.dentry), BPF_CORE_READ(f, f_path.mnt), out);
}

/* file_path writes an open file's path: bpf_d_path where the hook allows it
 * (use_dpath is a constant, so the helper call is only in those programs),
 * unless the task is chrooted (d_path stops at the task's root; paths are
 * the mount namespace's) or the file has no link (d_path appends " (deleted)";
 * an O_TMPFILE file is "#<inode>" in its directory, as the walk gives it). */
static __always_inline __u32 file_path(struct work *w, struct file *f, char *out, int use_dpath)
{
	if (use_dpath && root_is_ns_root(bpf_get_current_task_btf()) && BPF_CORE_READ(f, f_inode, __i_nlink)) {
		long n = bpf_d_path((struct path *)&f->f_path, out, DPATH_MAX);
		if (n > 1)
			return n - 1;
	}
	return walk_file(w, f, out);
}

/* judge_file judges a mutation through an open file. write says the file's
 * content changes (open for writing, write, truncate): that taints it. otrunc
 * says an open(O_TRUNC) is reported: the truncate the kernel does next as part
 * of the same open is not a second finding (a later ftruncate is). */
static __always_inline int judge_file(struct config *cfg, struct file *f, __u16 op, __u32 flags, __u32 mode,
				      int write, int use_dpath, int otrunc)
{
	struct file_rec *r = get_frec();
	struct work *w = get_work();
	if (!r || !w)
		return 0;
	struct inode *ino = BPF_CORE_READ(f, f_inode);
	__u64 dev = BPF_CORE_READ(ino, i_sb, s_dev);
	__u64 ino_nr = BPF_CORE_READ(ino, i_ino);
	int regular = is_regular_inode(ino);
	if (file_exempt(f)) {
		/* With direct loads the directory check costs less than
		 * remembering the file for its writes. */
		if (write && regular && !btf_loads)
			seen_set(dev, ino_nr, SEEN_WRITE);
		return 0;
	}

	struct judge_req j = {.op = op, .flags = flags, .mode = mode, .hflags = RF_ATTEMPT, .pre = 1,
			      .taint = write && regular, .dev = dev, .ino = ino_nr};
	w->trunc = 0;
	j.len = file_path(w, f, r->data, use_dpath);
	j.trunc = w->trunc;
	j.mnt_id = mnt_id_of(BPF_CORE_READ(f, f_path.mnt));
	int v = judge_path(cfg, &j);
	if (v)
		return v; /* refused: nothing changes */
	if (write && regular) {
		if (j.taint)
			taint_id(dev, ino_nr);
		seen_set(dev, ino_nr, SEEN_WRITE);
	}
	if (otrunc && j.sent)
		seen_set(dev, ino_nr, SEEN_OTRUNC);
	return 0;
}

/* send_self sends a tamper record (an act on the sensor itself by another
 * process): reported whatever the seal and the scope, refused in enforce
 * mode, never answered with the kill reflex (the actor may be outside the
 * sealed scope). */
static __always_inline int send_self(struct config *cfg, struct exec_rec *r)
{
	int v = 0;
	if (enforcing(cfg)) {
		r->h.flags |= RF_DENIED;
		v = -EPERM_;
	}
	r->ret = v;
	__u64 size = offsetof(struct exec_rec, data) + r->path_len + 2;
	if (size > sizeof(*r))
		size = sizeof(*r);
	r->h.size = size;
	emit(r, size);
	return v;
}

/* judge_guarded: opening one of the sensor's own files (credentials, state,
 * spool) from another process is tampering. */
static __noinline int judge_guarded(struct file *file)
{
	struct file_id id;
	if (!guarded_file(file, &id))
		return 0;
	struct config *cfg = get_config();
	struct work *w = get_work();
	struct exec_rec *r = xrec_init(DOP_SELF_OPEN, BPF_CORE_READ(file, f_flags));
	if (!cfg || !w || !r)
		return 0;
	w->trunc = 0;
	__u32 l = file_path(w, file, r->data, 1);
	r->dev = id.dev;
	r->ino = id.ino;
	l = bound(l, 4095);
	r->path_len = l;
	r->data[l] = 0;
	r->data[bound(l + 1, 4095)] = 0;
	if (w->trunc)
		r->h.flags |= RF_TRUNC;
	return send_self(cfg, r);
}

/* leave_rec fills a leave-scope record's identity and path from the
 * destination's file (a cgroup.procs file, a cgroup directory). */
static __always_inline void leave_rec(struct work *w, struct exec_rec *r, struct file *f, int use_dpath)
{
	struct inode *ino = BPF_CORE_READ(f, f_inode);
	r->dev = BPF_CORE_READ(ino, i_sb, s_dev);
	r->ino = BPF_CORE_READ(ino, i_ino);
	r->mnt_id = mnt_id_of(BPF_CORE_READ(f, f_path.mnt));
	__u32 l = bound(file_path(w, f, r->data, use_dpath), 4095);
	r->path_len = l;
	r->data[l] = 0;
	r->data[bound(l + 1, 4095)] = 0;
}

/* judge_seal judges an open for writing of a file the seal covers beyond the
 * policy's paths (bpf/seal.h). Returns 1 when f is no such file; otherwise
 * the hook's verdict (an allowed kernel setting: 0). */
static __always_inline int judge_seal(struct config *cfg, struct file *f)
{
	__u64 arg = 0;
	__u16 op = seal_kind(cfg, f, &arg);
	if (!op)
		return 1;
	struct work *w = get_work();
	if (!w)
		return 0;
	w->trunc = 0;
	if (op == DOP_LEAVE_SCOPE) {
		struct exec_rec *x = xrec_init(op, arg);
		if (!x)
			return 0;
		leave_rec(w, x, f, 1);
		return send_exec(cfg, x, w->trunc, 1);
	}
	struct file_rec *r = get_frec();
	if (!r)
		return 0;
	struct judge_req j = {.op = op, .flags = BPF_CORE_READ(f, f_flags), .hflags = RF_ATTEMPT, .pre = 1};
	j.len = file_path(w, f, r->data, 1);
	j.trunc = w->trunc;
	req_file(&j, f);
	return judge_path(cfg, &j);
}

/* ---- file mutations ---- */

static __always_inline int judge_code(struct file *file, unsigned long prot, int use_dpath);

SEC("lsm/file_open")
int BPF_PROG(drift_file_open, struct file *file)
{
	__u32 fmode = BPF_CORE_READ(file, f_mode);
	if (guard_files && !is_self()) {
		int v = judge_guarded(file);
		if (v)
			return v;
	}
	if (!(fmode & (FMODE_WRITE_ | FMODE_CREATED_)))
		return script_opened(file) ? judge_code(file, 0, 1) : 0;
	struct config *cfg = active();
	if (!cfg)
		return 0;
	if (fmode & FMODE_WRITE_) {
		int v = judge_seal(cfg, file);
		if (v != 1)
			return v;
	}
	/* f_flags lost O_CREAT by now: FMODE_CREATED says this open made the file */
	__u32 flags = BPF_CORE_READ(file, f_flags);
	__u32 mode = 0;
	if (fmode & FMODE_CREATED_) {
		flags |= O_CREAT_;
		mode = BPF_CORE_READ(file, f_inode, i_mode);
	}
	int otrunc = (flags & O_TRUNC_) && !(fmode & FMODE_CREATED_);
	return judge_file(cfg, file, DOP_OPEN, flags, mode, fmode & FMODE_WRITE_, 1, otrunc);
}

/* Writes through descriptors opened before sealing (or passed in from outside
 * the scope): judged once per process and file, like the tracepoint backend;
 * in enforce mode every write to a protected file is refused. */
SEC("lsm/file_permission")
int BPF_PROG(drift_file_perm, struct file *file, int mask)
{
	if (!(mask & (MAY_WRITE_ | MAY_APPEND_)))
		return 0;
	struct inode *ino = BPF_CORE_READ(file, f_inode);
	if (!is_regular_inode(ino))
		return 0;
	struct config *cfg = active();
	if (!cfg)
		return 0;
	if (seen_get(BPF_CORE_READ(ino, i_sb, s_dev), BPF_CORE_READ(ino, i_ino), SEEN_WRITE))
		return 0;
	return judge_file(cfg, file, DOP_WRITE, BPF_CORE_READ(file, f_flags), 0, 1, 0, 0);
}

SEC("lsm/file_ioctl")
int BPF_PROG(drift_file_ioctl, struct file *file, unsigned int cmd, unsigned long arg)
{
	if (cmd != FS_IOC_SETFLAGS_ && cmd != FS_IOC32_SETFLAGS_ && cmd != FS_IOC_FSSETXATTR_)
		return 0;
	struct config *cfg = active();
	if (!cfg)
		return 0;
	return judge_file(cfg, file, DOP_SETFLAGS, cmd, 0, 0, 1, 0);
}

/* ftruncate and open(O_TRUNC) on kernels that have the hook (6.2+; older
 * ones call path_truncate). */
SEC("lsm/file_truncate")
int BPF_PROG(drift_file_truncate, struct file *file)
{
	struct config *cfg = active();
	if (!cfg)
		return 0;
	struct inode *ino = BPF_CORE_READ(file, f_inode);
	if (seen_take(BPF_CORE_READ(ino, i_sb, s_dev), BPF_CORE_READ(ino, i_ino), SEEN_OTRUNC))
		return 0;
	return judge_file(cfg, file, DOP_TRUNCATE, 0, 0, 1, 0, 0);
}

SEC("lsm/path_truncate")
int BPF_PROG(drift_path_truncate, const struct path *path)
{
	struct config *cfg = active();
	if (!cfg)
		return 0;
	struct dentry *d = BPF_CORE_READ(path, dentry);
	struct inode *ino = BPF_CORE_READ(d, d_inode);
	__u64 dev = BPF_CORE_READ(ino, i_sb, s_dev), nr = BPF_CORE_READ(ino, i_ino);
	/* the truncate of a reported open(O_TRUNC): one finding, not two */
	if (seen_take(dev, nr, SEEN_OTRUNC))
		return 0;
	struct jreq q = {.d = d, .mnt = BPF_CORE_READ(path, mnt), .op = DOP_TRUNCATE, .taint = 1};
	int v = judge_at(cfg, &q);
	if (!v && q.taint && is_regular_inode(ino))
		taint_id(dev, nr);
	return v;
}

SEC("lsm/path_unlink")
int BPF_PROG(drift_path_unlink, const struct path *dir, struct dentry *dentry)
{
	struct config *cfg = active();
	if (!cfg)
		return 0;
	struct jreq q = {.d = dentry, .mnt = BPF_CORE_READ(dir, mnt), .op = DOP_UNLINK};
	return judge_at(cfg, &q);
}

SEC("lsm/path_rmdir")
int BPF_PROG(drift_path_rmdir, const struct path *dir, struct dentry *dentry)
{
	struct config *cfg = active();
	if (!cfg)
		return 0;
	struct jreq q = {.d = dentry, .mnt = BPF_CORE_READ(dir, mnt), .op = DOP_RMDIR};
	return judge_at(cfg, &q);
}

SEC("lsm/path_mkdir")
int BPF_PROG(drift_path_mkdir, const struct path *dir, struct dentry *dentry, umode_t mode)
{
	struct config *cfg = active();
	if (!cfg)
		return 0;
	struct jreq q = {.d = dentry, .mnt = BPF_CORE_READ(dir, mnt), .op = DOP_MKDIR, .mode = mode};
	return judge_at(cfg, &q);
}

/* mknod, and open(O_CREAT) of a new file: the kernel asks path_mknod for both.
 * A new regular file is an open finding; in detect mode file_open reports it
 * (with its identity), so only enforce mode judges it here, to refuse it. */
SEC("lsm/path_mknod")
int BPF_PROG(drift_path_mknod, const struct path *dir, struct dentry *dentry, umode_t mode, unsigned int dev)
{
	struct config *cfg = active();
	if (!cfg)
		return 0;
	int reg = (mode & S_IFMT_) == S_IFREG_ || (mode & S_IFMT_) == 0;
	if (reg && !enforcing(cfg))
		return 0;
	struct jreq q = {.d = dentry, .mnt = BPF_CORE_READ(dir, mnt), .op = reg ? DOP_OPEN : DOP_MKNOD, .mode = mode};
	if (reg)
		q.flags = O_CREAT_;
	return judge_at(cfg, &q);
}

SEC("lsm/path_rename")
int BPF_PROG(drift_path_rename, const struct path *old_dir, struct dentry *old_dentry, const struct path *new_dir,
	     struct dentry *new_dentry, unsigned int flags)
{
	struct config *cfg = active();
	if (!cfg)
		return 0;
	struct jreq q = {
		.d = old_dentry,
		.mnt = BPF_CORE_READ(old_dir, mnt),
		.d2 = new_dentry,
		.mnt2 = BPF_CORE_READ(new_dir, mnt),
		.op = DOP_RENAME,
		.flags = flags,
	};
	return judge_at(cfg, &q);
}

SEC("lsm/path_link")
int BPF_PROG(drift_path_link, struct dentry *old_dentry, const struct path *new_dir, struct dentry *new_dentry)
{
	struct config *cfg = active();
	if (!cfg)
		return 0;
	struct vfsmount *mnt = BPF_CORE_READ(new_dir, mnt); /* links never cross mounts */
	struct jreq q = {.d = old_dentry, .mnt = mnt, .d2 = new_dentry, .mnt2 = mnt, .op = DOP_LINK};
	return judge_at(cfg, &q);
}

SEC("lsm/path_symlink")
int BPF_PROG(drift_path_symlink, const struct path *dir, struct dentry *dentry, const char *old_name)
{
	struct config *cfg = active();
	if (!cfg)
		return 0;
	struct jreq q = {.d = dentry, .mnt = BPF_CORE_READ(dir, mnt), .target = old_name, .op = DOP_SYMLINK};
	return judge_at(cfg, &q);
}

SEC("lsm/path_chmod")
int BPF_PROG(drift_path_chmod, const struct path *path, umode_t mode)
{
	struct config *cfg = active();
	if (!cfg)
		return 0;
	struct jreq q = {.d = BPF_CORE_READ(path, dentry), .mnt = BPF_CORE_READ(path, mnt), .op = DOP_CHMOD, .mode = mode};
	return judge_at(cfg, &q);
}

/* uid and gid arrive as structs by value, which older kernels cannot hand to
 * a program: only the path is read. */
SEC("lsm/path_chown")
int BPF_PROG(drift_path_chown, const struct path *path)
{
	struct config *cfg = active();
	if (!cfg)
		return 0;
	struct jreq q = {.d = BPF_CORE_READ(path, dentry), .mnt = BPF_CORE_READ(path, mnt), .op = DOP_CHOWN};
	return judge_at(cfg, &q);
}

SEC("lsm/inode_setxattr")
int BPF_PROG(drift_setxattr, void *idmap, struct dentry *dentry)
{
	struct config *cfg = active();
	if (!cfg)
		return 0;
	struct jreq q = {.d = dentry, .mnt = first_mount(dentry), .op = DOP_SETXATTR};
	return judge_at(cfg, &q);
}

SEC("lsm/inode_removexattr")
int BPF_PROG(drift_removexattr, void *idmap, struct dentry *dentry)
{
	struct config *cfg = active();
	if (!cfg)
		return 0;
	struct jreq q = {.d = dentry, .mnt = first_mount(dentry), .op = DOP_REMOVEXATTR};
	return judge_at(cfg, &q);
}

/* Timestamps set by hand (utimes, utimensat, futimens: timestomping). Only
 * notify_change calls that set atime or mtime and nothing else judged here:
 * truncate (ATTR_SIZE), chmod and chown have hooks of their own, and writes
 * update times without notify_change. The hook names a dentry only: the path
 * is the superblock's first mount's, as for xattrs. */
static __always_inline int judge_setattr(struct dentry *dentry, struct iattr *attr)
{
	__u32 valid = BPF_CORE_READ(attr, ia_valid);
	if (!(valid & (ATTR_ATIME_ | ATTR_MTIME_)) || (valid & (ATTR_SIZE_ | ATTR_MODE_ | ATTR_UID_ | ATTR_GID_)))
		return 0;
	struct config *cfg = active();
	if (!cfg)
		return 0;
	struct jreq q = {.d = dentry, .mnt = first_mount(dentry), .op = DOP_UTIMES, .flags = valid};
	return judge_at(cfg, &q);
}

/* 6.8 and later: (idmap, dentry, attr). */
SEC("lsm/inode_setattr")
int BPF_PROG(drift_inode_setattr, void *idmap, struct dentry *dentry, struct iattr *attr)
{
	return judge_setattr(dentry, attr);
}

/* Before 6.8: (dentry, attr). */
SEC("lsm/inode_setattr")
int BPF_PROG(drift_inode_setattr_old, struct dentry *dentry, struct iattr *attr)
{
	return judge_setattr(dentry, attr);
}

/* ---- mount-table changes: always drift ---- */

SEC("lsm/sb_mount")
int BPF_PROG(drift_sb_mount, const char *dev_name, const struct path *path, const char *type, unsigned long flags)
{
	struct config *cfg = active();
	if (!cfg)
		return 0;
	struct file_rec *r = get_frec();
	struct work *w = get_work();
	if (!r || !w)
		return 0;
	w->trunc = 0;
	long n = root_is_ns_root(bpf_get_current_task_btf()) ? bpf_d_path((struct path *)path, r->data, DPATH_MAX) : 0;
	struct judge_req j = {.op = DOP_MOUNT, .flags = flags, .hflags = RF_ATTEMPT, .always = 1, .pre = 1};
	j.len = n > 1 ? n - 1 : dpath(w, BPF_CORE_READ(path, dentry), BPF_CORE_READ(path, mnt), r->data);
	j.trunc = w->trunc;
	j.mnt_id = mnt_id_of(BPF_CORE_READ(path, mnt));
	return judge_path(cfg, &j);
}

SEC("lsm/sb_umount")
int BPF_PROG(drift_sb_umount, struct vfsmount *mnt, int flags)
{
	struct config *cfg = active();
	if (!cfg)
		return 0;
	struct jreq q = {.d = BPF_CORE_READ(mnt, mnt_root), .mnt = mnt, .op = DOP_MOUNT, .flags = flags, .always = 1};
	return judge_at(cfg, &q);
}

SEC("lsm/move_mount")
int BPF_PROG(drift_move_mount, const struct path *from_path, const struct path *to_path)
{
	struct config *cfg = active();
	if (!cfg)
		return 0;
	struct jreq q = {.d = BPF_CORE_READ(to_path, dentry), .mnt = BPF_CORE_READ(to_path, mnt), .op = DOP_MOUNT, .always = 1};
	return judge_at(cfg, &q);
}

SEC("lsm/sb_pivotroot")
int BPF_PROG(drift_sb_pivotroot, const struct path *old_path, const struct path *new_path)
{
	struct config *cfg = active();
	if (!cfg)
		return 0;
	struct jreq q = {.d = BPF_CORE_READ(new_path, dentry), .mnt = BPF_CORE_READ(new_path, mnt), .op = DOP_MOUNT, .always = 1};
	return judge_at(cfg, &q);
}

/* ---- execution drift ---- */

/* exec_file fills an exec record's identity and path from a file, with
 * bpf_d_path (every caller is a hook that allows it) where file_path can. A
 * file with no links left (deleted, memfd) gets the name it had, as the
 * tracepoint backend reports it. */
static __always_inline __u32 exec_file(struct work *w, struct exec_rec *r, struct file *f)
{
	struct inode *ino = BPF_CORE_READ(f, f_inode);
	r->dev = BPF_CORE_READ(ino, i_sb, s_dev);
	r->ino = BPF_CORE_READ(ino, i_ino);
	r->mnt_id = mnt_id_of(BPF_CORE_READ(f, f_path.mnt));
	w->trunc = 0;
	__u32 l = bound(file_path(w, f, r->data, 1), 4095);
	r->path_len = l;
	r->data[l] = 0;
	r->data[bound(l + 1, 4095)] = 0;
	return l;
}

/* exec_argv appends the arguments to an exec record's path, NUL-separated and
 * bounded like the tracepoint backend's (ARGS_MAX bytes). bprm_check_security
 * runs before the new image exists: the copies the kernel made live in pages
 * of the new mm that no helper can read, so they are read where the caller
 * passed them, in the current (old) mm: argv of execve/execveat, found in the
 * syscall's registers. Execs started by the kernel (no such syscall) carry no
 * argv; user space then reads /proc. */
static __always_inline void exec_argv(struct work *w, struct exec_rec *r, struct linux_binprm *bprm, __u32 l)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	long nr = syscall_id(task_syscall_nr(regs));
	const char *const *argv;
	if (nr == NR_EXECVE_)
		argv = (const char *const *)PT_REGS_PARM2_CORE_SYSCALL(regs);
	else if (nr == NR_EXECVEAT_)
		argv = (const char *const *)PT_REGS_PARM3_CORE_SYSCALL(regs);
	else
		return;
	int argc = BPF_CORE_READ(bprm, argc);
	__u32 used = 0;
	int i;
	for (i = 0; i < ARGV_MAX && i < argc; i++) {
		const char *p = NULL;
		if (bpf_probe_read_user(&p, sizeof(p), &argv[i]) || !p)
			break;
		__u32 room = ARGS_MAX - 1 - used;
		if (room == 0)
			break;
		/* staged in w->in: a bounded offset the verifier can follow */
		long n = bpf_probe_read_user_str(w->in + bound(used, 1023), bound(room, 1023), p);
		if (n <= 0)
			break;
		if (n == room) /* it may not have fitted */
			w->trunc = 1;
		used += n;
	}
	if (i < argc)
		w->trunc = 1;
	used = bound(used, 1023);
	__u32 aoff = bound(l + 1, 4095);
	if (bpf_probe_read_kernel(r->data + aoff, used, w->in))
		used = 0;
	r->args_len = used;
}

/* Every file the kernel is about to execute: the binary, a script, then the
 * script's interpreter, each judged by identity and place. */
SEC("lsm/bprm_check_security")
int BPF_PROG(drift_bprm_check, struct linux_binprm *bprm)
{
	struct config *cfg = active();
	if (!cfg)
		return 0;
	struct file *f = bprm->file;
	struct work *w = get_work();
	if (!f || !w)
		return 0;
	struct exec_rec *r = xrec_init(DOP_EXEC, 0);
	if (!r)
		return 0;
	__u32 l = exec_file(w, r, f);
	struct file_id id = {.dev = r->dev, .ino = r->ino};
	__u32 reasons = exec_reasons(r, l, BPF_CORE_READ(f, f_inode, __i_nlink) == 0);
	if (!reasons)
		return 0;
	r->reasons = reasons;
	exec_argv(w, r, bprm, l);
	int v = send_exec(cfg, r, w->trunc, 1);
	if (!v)
		seen_set(id.dev, id.ino, SEEN_EXEC);
	return v;
}

/* judge_code: an executable mapping of a file is code run without an exec
 * of its own (the dynamic loader running a binary, dlopen of a library), and
 * so is a script its interpreter opens (file_open, bpf/seal.h). Drift
 * when the file is tainted or outside the image paths, once per process and
 * file in a seal; a file already reported as exec drift (the kernel maps the
 * binary it executes) is not reported again. arg = prot. */
static __always_inline int judge_code(struct file *file, unsigned long prot, int use_dpath)
{
	struct config *cfg = active();
	if (!cfg)
		return 0;
	struct inode *ino = BPF_CORE_READ(file, f_inode);
	struct file_id id = {.dev = BPF_CORE_READ(ino, i_sb, s_dev), .ino = BPF_CORE_READ(ino, i_ino)};
	if (seen_get(id.dev, id.ino, SEEN_EXEC) || seen_get(id.dev, id.ino, SEEN_MAPPED))
		return 0;
	struct work *w = get_work();
	struct exec_rec *r = xrec_init(DOP_EXEC, prot);
	if (!r || !w)
		return 0;
	r->dev = id.dev;
	r->ino = id.ino;
	r->mnt_id = mnt_id_of(BPF_CORE_READ(file, f_path.mnt));
	w->trunc = 0;
	__u32 l = bound(file_path(w, file, r->data, use_dpath), 4095);
	r->path_len = l;
	r->data[l] = 0;
	r->data[bound(l + 1, 4095)] = 0;
	__u32 reasons = code_reasons(r, l);
	if (!reasons) {
		seen_set(id.dev, id.ino, SEEN_MAPPED);
		return 0;
	}
	r->reasons = reasons;
	int v = send_exec(cfg, r, w->trunc, 1);
	if (!v)
		seen_set(id.dev, id.ino, SEEN_EXEC);
	return v;
}

SEC("lsm/mmap_file")
int BPF_PROG(drift_mmap_file, struct file *file, unsigned long reqprot, unsigned long prot, unsigned long flags)
{
	if (!file || !(prot & PROT_EXEC_))
		return 0;
	return judge_code(file, prot, 1);
}

/* mprotect making a file's mapping executable. */
SEC("lsm/file_mprotect")
int BPF_PROG(drift_file_mprotect, struct vm_area_struct *vma, unsigned long reqprot, unsigned long prot)
{
	struct file *file = BPF_CORE_READ(vma, vm_file);
	if (!file || !(prot & PROT_EXEC_))
		return 0;
	return judge_code(file, prot, 0);
}

/* An interpreter the kernel starts: remember its script argument, judged
 * when the interpreter opens it (file_open). */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(drift_script_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	if (!active())
		return 0;
	script_exec(BPF_CORE_READ(bprm, file));
	return 0;
}

/* A task exits: the last one of its process forgets its script. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(drift_exit, struct task_struct *p)
{
	script_exit(p);
	return 0;
}

/* ---- privileged kernel operations: drift when attempted ---- */

/* finit_module and kexec_file_load: the kernel reads the file itself. */
SEC("lsm/kernel_read_file")
int BPF_PROG(drift_kread_file, struct file *file, enum kernel_read_file_id id)
{
	__u16 op;
	if (id == READING_MODULE)
		op = DOP_MODULE;
	else if (id == READING_KEXEC_IMAGE || id == READING_KEXEC_INITRAMFS)
		op = DOP_KEXEC;
	else
		return 0;
	struct config *cfg = active();
	if (!cfg)
		return 0;
	struct work *w = get_work();
	struct exec_rec *r = xrec_init(op, id);
	if (!r || !w)
		return 0;
	if (file)
		exec_file(w, r, file);
	return send_exec(cfg, r, w->trunc, 1);
}

/* init_module and kexec_load: the image comes from user memory. */
SEC("lsm/kernel_load_data")
int BPF_PROG(drift_kload_data, enum kernel_load_data_id id)
{
	__u16 op;
	if (id == LOADING_MODULE)
		op = DOP_MODULE;
	else if (id == LOADING_KEXEC_IMAGE)
		op = DOP_KEXEC;
	else
		return 0;
	struct config *cfg = active();
	if (!cfg)
		return 0;
	struct exec_rec *r = xrec_init(op, id);
	if (!r)
		return 0;
	return send_exec(cfg, r, 0, 1);
}

/* Program loads by anyone else are drift. Any other command on the sensor's
 * own programs, maps or links (a descriptor by id, a map write, a detach) by
 * another process is tampering: reported whatever the seal and the scope, and
 * refused in enforce mode. The sensor's own reads of its liveness map advance
 * the counter. arg = cmd, or cmd << 32 | id. */
SEC("lsm/bpf")
int BPF_PROG(drift_bpf, int cmd, union bpf_attr *attr, unsigned int size)
{
	if (cmd != BPF_PROG_LOAD_) {
		if (is_self()) {
			count_liveness(cmd, attr, 0);
			return 0;
		}
		__u64 key = self_bpf_key(cmd, attr, 0);
		if (!key)
			return 0;
		struct config *cfg = get_config();
		struct exec_rec *r = xrec_init(DOP_SELF_BPF, key);
		if (!cfg || !r)
			return 0;
		return send_self(cfg, r);
	}
	struct config *cfg = active();
	if (!cfg)
		return 0;
	struct exec_rec *r = xrec_init(DOP_BPF, cmd);
	if (!r)
		return 0;
	return send_exec(cfg, r, 0, 1);
}

/* ---- leaving the sealed scope ---- */

/* clone3 with CLONE_INTO_CGROUP into a cgroup outside the scope: judged in
 * the parent, before the child exists. The cgroup descriptor is read from the
 * syscall's arguments (the kernel has copied them already; a second thread
 * rewriting them can make the report name another cgroup). */
SEC("lsm/task_alloc")
int BPF_PROG(drift_task_alloc, struct task_struct *task, unsigned long clone_flags)
{
	if (!(clone_flags & CLONE_INTO_CGROUP_))
		return 0;
	struct config *cfg = active();
	if (!cfg)
		return 0;
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	if (syscall_id(task_syscall_nr(regs)) != NR_CLONE3_)
		return 0;
	struct file *f = file_of(clone3_cgroup_fd((const void *)PT_REGS_PARM1_CORE_SYSCALL(regs)));
	if (!f)
		return 0;
	__u64 id = 0;
	if (!cgroup_outside(cfg, BPF_CORE_READ(f, f_path.dentry), &id))
		return 0;
	struct work *w = get_work();
	struct exec_rec *r = xrec_init(DOP_LEAVE_SCOPE, id);
	if (!r || !w)
		return 0;
	w->trunc = 0;
	leave_rec(w, r, f, 0);
	return send_exec(cfg, r, w->trunc, 1);
}

/* ---- self-protection ---- */

SEC("lsm/task_kill")
int BPF_PROG(drift_task_kill, struct task_struct *p, struct kernel_siginfo *info, int sig)
{
	if (sig == 0)
		return 0;
	struct config *cfg = get_config();
	if (!cfg || !self_tgid || BPF_CORE_READ(p, tgid) != self_tgid)
		return 0;
	if (!cfg->sealed || !in_scope(cfg))
		return 0;
	struct exec_rec *r = xrec_init(DOP_SIGNAL, (__u64)sig << 32 | self_tgid);
	if (!r)
		return 0;
	return send_exec(cfg, r, 0, 1);
}

/* Attaching to a process (ptrace attach or seize, process_vm_writev, writing
 * /proc/<pid>/mem) from the sealed scope is drift, as in the tracepoint
 * backend; aimed at the sensor it is denied in enforce mode like every other
 * finding. arg = mode << 32 | target tgid. */
SEC("lsm/ptrace_access_check")
int BPF_PROG(drift_ptrace, struct task_struct *child, unsigned int mode)
{
	if (!(mode & PTRACE_MODE_ATTACH_))
		return 0;
	struct config *cfg = active();
	if (!cfg)
		return 0;
	struct exec_rec *r = xrec_init(DOP_PTRACE, (__u64)mode << 32 | BPF_CORE_READ(child, tgid));
	if (!r)
		return 0;
	return send_exec(cfg, r, 0, 1);
}

/* ---- io_uring ---- */

/* report_exec sends a finding that is never denied (the reflex still runs). */
static __always_inline void report_exec(struct config *cfg, struct exec_rec *r)
{
	reflex(cfg, &r->h);
	r->h.size = offsetof(struct exec_rec, data) + 2;
	emit(r, r->h.size);
}

/* Setting up an io_uring is reported as in the tracepoint backend, but never
 * denied: every operation submitted through the ring meets the same LSM hooks
 * as the syscalls, so the ring is no way around them. 6.16 and later: the
 * uring_allowed hook, on every attempt. */
SEC("lsm/uring_allowed")
int BPF_PROG(drift_uring_allowed)
{
	struct config *cfg = active();
	if (!cfg)
		return 0;
	struct exec_rec *r = xrec_init(DOP_URING_SETUP, 0);
	if (!r)
		return 0;
	report_exec(cfg, r);
	return 0;
}

/* Before 6.16: the io_uring_create tracepoint, for every ring set up (an
 * attempt the kernel refuses is not seen). ret = the ring's fd, arg = flags. */
SEC("tp_btf/io_uring_create")
int BPF_PROG(drift_uring_create, int fd, void *uring_ctx, __u32 sq_entries, __u32 cq_entries, __u32 flags)
{
	struct config *cfg = active();
	if (!cfg)
		return 0;
	struct exec_rec *r = xrec_init(DOP_URING_SETUP, flags);
	if (!r)
		return 0;
	r->ret = fd;
	report_exec(cfg, r);
	return 0;
}

/* ---- network ---- */

static __always_inline int net_verdict(struct config *cfg, struct net_rec *r)
{
	int deny = cfg->deny_binds || enforcing(cfg);
	if (deny)
		r->h.flags |= RF_DENIED;
	emit(r, sizeof(*r));
	return deny ? -EPERM_ : 0;
}

SEC("lsm/socket_bind")
int BPF_PROG(drift_socket_bind, struct socket *sock, struct sockaddr *address, int addrlen)
{
	__u16 family = 0;
	__be16 pbe = 0;
	bpf_probe_read_kernel(&family, sizeof(family), address);
	if (family != AF_INET_ && family != AF_INET6_)
		return 0;
	bpf_probe_read_kernel(&pbe, sizeof(pbe), (void *)address + 2);
	__u16 port = bpf_ntohs(pbe);
	if (port == 0 || port_allowed(port))
		return 0;
	struct config *cfg = active();
	if (!cfg)
		return 0;
	struct net_rec r = {};
	fill_hdr(&r.h, REC_NET, DOP_BIND, 0);
	fill_task(&r.h);
	r.h.size = sizeof(r);
	r.family = family;
	r.protocol = BPF_CORE_READ(sock, sk, sk_protocol);
	r.port = port;
	if (family == AF_INET_)
		bpf_probe_read_kernel(r.addr, 4, (void *)address + 4);
	else
		bpf_probe_read_kernel(r.addr, 16, (void *)address + 8);
	return net_verdict(cfg, &r);
}

/* Listening on a port the policy does not allow; port 0 (the kernel picks
 * one) is never allowed. */
SEC("lsm/socket_listen")
int BPF_PROG(drift_socket_listen, struct socket *sock, int backlog)
{
	struct sock *sk = BPF_CORE_READ(sock, sk);
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET_ && family != AF_INET6_)
		return 0;
	__u16 port = BPF_CORE_READ(sk, __sk_common.skc_num);
	if (port_allowed(port))
		return 0;
	struct config *cfg = active();
	if (!cfg)
		return 0;
	struct net_rec r = {};
	fill_hdr(&r.h, REC_NET, DOP_LISTEN, 0);
	fill_task(&r.h);
	r.h.size = sizeof(r);
	r.family = family;
	r.protocol = BPF_CORE_READ(sk, sk_protocol);
	r.port = port;
	if (family == AF_INET_) {
		__u32 a = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__builtin_memcpy(r.addr, &a, 4);
	} else {
		BPF_CORE_READ_INTO(&r.addr, sk, __sk_common.skc_v6_rcv_saddr);
	}
	return net_verdict(cfg, &r);
}

/* Keep the record types in the object's BTF for the Go mirrors. */
const struct rec_hdr *_rec_hdr __attribute__((unused));
const struct file_rec *_file_rec __attribute__((unused));
const struct exec_rec *_exec_rec __attribute__((unused));
const struct net_rec *_net_rec __attribute__((unused));
const struct dirlink *_dirlink __attribute__((unused));
const struct seen_key *_seen_key __attribute__((unused));
