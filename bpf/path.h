/* SPDX-License-Identifier: GPL-2.0 */
/* Canonical paths in the kernel.
 *
 * Two sources of a path:
 *  - an object the kernel holds (an fd's file, the exec'd binary): walk its
 *    dentries up to the root of the mount namespace, crossing mounts. Exact:
 *    symlinks and ".." are already resolved by the kernel.
 *  - a name a process passed (unlink, rename, mkdir...; the object may be gone
 *    by the time we look): start from the dirfd's or the cwd's dentries, apply
 *    the name's components lexically ("." and ".." handled), then rewrite a
 *    leading symlinked directory (/bin -> /usr/bin) from the dirlinks trie that
 *    user space fills at start. Such records carry RF_LEXICAL.
 * Output buffers must hold DPATH_MAX + DNAME_MAX bytes: writes use masked
 * offsets so the verifier can bound them. */
#ifndef DRIFT_PATH_H
#define DRIFT_PATH_H

#include "common.h"

#define PMASK (DPATH_MAX - 1)
#define NMASK (DNAME_MAX - 1)
#define MAX_COMPS 64  /* dentries walked, mount crossings included */
#define MAX_STACK 64  /* component starts remembered for ".." */
#define AT_FDCWD_ -100

/* bound masks v in a way clang cannot fold away, so the verifier sees the
 * bound on the very register used for the access. */
#define bound(v, mask)                                        \
	({                                                    \
		__u64 __b = (v);                              \
		asm volatile("%0 &= " #mask : "+r"(__b));     \
		__b;                                          \
	})

/* Direct loads through kernel pointers the verifier knows only as numbers
 * (read from an fd table, kept in a map): bpf_rdonly_cast (kernel 6.2+) types
 * them, so each hop is one load instead of a bpf_probe_read_kernel call. The
 * loader sets btf_loads when the running kernel has the kfunc; without it the
 * verifier drops the direct branch, and every hop is a helper call. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;
const volatile __u32 btf_loads = 0;
#define KCAST(T, p) ((T *)bpf_rdonly_cast((const void *)(p), bpf_core_type_id_kernel(T)))
/* KLOAD(T, p, field): p's field, p a T * by value only. p is evaluated
 * first, outside the CO-RE read: an expression over our own types (a map
 * value) inside it would be relocated against the kernel's BTF. */
#define KLOAD(T, p, field)                                                         \
	({                                                                         \
		T *__kp = (T *)(p);                                                \
		btf_loads ? KCAST(T, __kp)->field : BPF_CORE_READ(__kp, field);    \
	})

struct lpm_key {
	__u32 bits;
	__u8 data[DNAME_MAX];
};

/* A directory symlink: prefix "/bin/" resolves to target "/usr/bin/". */
struct dirlink {
	__u32 plen; /* bytes of the prefix, trailing slash included */
	__u32 tlen; /* bytes of the target, trailing slash included */
	__u8 target[DNAME_MAX];
};

/* A cached directory path, checked on use against the dentry it was built
 * from (its parent and name) and the rename generation. */
struct dpath {
	__u64 parent;   /* d_parent when cached */
	__u64 hash_len; /* d_name.hash_len when cached */
	__u64 gen;      /* rename/mount generation when cached */
	__u32 len;
	__u32 _pad;
	char path[DPATH_MAX];
};

struct dkey {
	__u64 dentry;
	__u64 mnt;
};

/* The classification of the names in a directory, cached by (dentry,
 * vfsmount) with the chain it was computed for: every dentry from the
 * directory up to the root of the mount namespace, its name and its mount.
 * On use the chain is checked against the kernel's current one, so a rename
 * or a mount change of the directory or of any ancestor invalidates the entry
 * at once, with no generation bumped after the fact (an LSM hook runs before
 * the rename, too early to bump one). */
#define DCHAIN 16
struct dclass {
	__u64 d[DCHAIN];  /* struct dentry *, from the directory up */
	__u64 hl[DCHAIN]; /* its d_name.hash_len */
	__u64 m[DCHAIN];  /* the struct mount it is in */
	__u32 n;          /* levels in the chain */
	__u32 class;      /* the rule for names in the directory: CLASS_* with flags; 0 none */
};

/* Per-CPU work area for path building. */
struct work {
	char in[DPATH_MAX];       /* the name as passed */
	__u32 alt_bits;           /* lpm scratch for alt */
	char alt[DPATH_MAX + DNAME_MAX + 8];
	__u64 comps[MAX_COMPS]; /* dentry pointers */
	__u16 stack[MAX_STACK];
	__u32 sp;
	__u32 trunc;
	/* walk state: kept here, not on the stack, so the verifier treats it as
	 * opaque and bpf_loop callbacks converge instead of being unrolled */
	__u64 wd;  /* struct dentry * */
	__u64 wm;  /* struct mount * */
	__u32 wn;
	__u32 wo;
	__u32 slow;       /* scan: the name needs lexical normalisation */
	__u32 prev_slash; /* scan: the previous word ended in '/' */
	__u32 scan_len;
	__u32 unresolved; /* resolve_name: a magic link in a name it could not follow (sticky: callers clear it) */
	/* follow_magic's scan (magic_step) */
	__u64 mword;
	__u32 mlen, mnum, mdigits, mstate, mown, mend, mfd, mat;
	struct dpath stage; /* value staged for a dcache update */
	struct dclass cstage; /* value staged for a dclasses update */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct work);
} work_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 256);
	__type(key, struct lpm_key);
	__type(value, struct dirlink);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} dirlinks SEC(".maps");

/* Directory paths by (dentry, vfsmount): a cwd, a dirfd, the parent of an
 * opened file. Saves walking the same directories on every syscall. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct dkey);
	__type(value, struct dpath);
} dcache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct dkey);
	__type(value, struct dclass);
} dclasses SEC(".maps");

/* Bumped by every successful rename and mount-table change anywhere: a
 * cached path is only trusted under the generation it was built in. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} pathgen SEC(".maps");

static __always_inline __u64 path_generation(void)
{
	__u32 zero = 0;
	__u64 *g = bpf_map_lookup_elem(&pathgen, &zero);
	return g ? *g : 0;
}

static __always_inline void bump_path_generation(void)
{
	__u32 zero = 0;
	__u64 *g = bpf_map_lookup_elem(&pathgen, &zero);
	if (g)
		__sync_fetch_and_add(g, 1);
}

/* mnt_id_of is the id a vfsmount's mount has (as in /proc/self/mountinfo). */
static __always_inline __u32 mnt_id_of(struct vfsmount *vm)
{
	struct mount *m = container_of(vm, struct mount, mnt);
	return BPF_CORE_READ(m, mnt_id);
}

static __always_inline struct work *get_work(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&work_map, &zero);
}

/* walk_up records dentries from the leaf to the root, crossing mounts. */
static long walk_up(__u32 i, void *unused)
{
	struct work *w = get_work();
	if (!w)
		return 1;
	struct dentry *d = (struct dentry *)w->wd;
	struct mount *mnt = (struct mount *)w->wm;
	struct dentry *mroot = BPF_CORE_READ(mnt, mnt.mnt_root);
	struct dentry *parent = BPF_CORE_READ(d, d_parent);
	__u32 n = w->wn;
	if (n >= MAX_COMPS) {
		w->trunc = 1;
		return 1;
	}
	if (d == parent && d != mroot) {
		/* a pseudo or disconnected dentry (memfd, anonymous files): its
		 * name is all there is */
		w->comps[bound(n, 63)] = (__u64)d;
		w->wn = n + 1;
		return 1;
	}
	if (d == mroot || d == parent) {
		struct mount *mp = BPF_CORE_READ(mnt, mnt_parent);
		if (mp == mnt || !mp)
			return 1;
		w->wd = (__u64)BPF_CORE_READ(mnt, mnt_mountpoint);
		w->wm = (__u64)mp;
		return 0;
	}
	w->comps[bound(n, 63)] = (__u64)d;
	w->wn = n + 1;
	w->wd = (__u64)parent;
	return 0;
}

/* walk_down writes the recorded components from the root to the leaf. */
static long walk_down(__u32 i, char **outp)
{
	struct work *w = get_work();
	if (!w)
		return 1;
	__u32 n = w->wn, o = w->wo;
	if (i >= n)
		return 1;
	struct dentry *d = (struct dentry *)w->comps[bound(n - 1 - i, 63)];
	struct qstr q;
	BPF_CORE_READ_INTO(&q, d, d_name);
	__u32 len = q.len;
	const unsigned char *name = q.name;
	if (len > NMASK || o + 1 + len >= DPATH_MAX - 1) {
		w->trunc = 1;
		return 1;
	}
	__u32 sp = w->sp;
	if (sp < MAX_STACK)
		w->stack[bound(sp, 63)] = o;
	w->sp = sp + 1;
	char *out = *outp;
	out[bound(o, 4095)] = '/';
	bpf_probe_read_kernel(out + bound(o + 1, 4095), bound(len, 255), name);
	w->wo = o + 1 + len;
	return 0;
}

/* walk_path writes the absolute path of (dentry, vfsmnt) into out and returns
 * its length (0 for the root, which the caller renders as "/"). Component
 * starts are pushed on w->stack so a following lexical ".." can pop them. */
static __noinline __u32 walk_path(struct work *w, struct dentry *dentry, struct vfsmount *vfsmnt, char *out)
{
	w->wd = (__u64)dentry;
	w->wm = (__u64)container_of(vfsmnt, struct mount, mnt);
	w->wn = 0;
	w->wo = 0;
	w->sp = 0;
	bpf_loop(MAX_COMPS * 2, walk_up, NULL, 0);
	bpf_loop(MAX_COMPS, walk_down, &out, 0);
	__u32 o = w->wo;
	if (o >= DPATH_MAX)
		o = DPATH_MAX - 1;
	out[bound(o, 4095)] = 0;
	return o;
}

struct norm_ctx {
	char *out;
	__u32 n;  /* bytes of input, NUL included */
	__u32 o;  /* bytes of output so far */
	__u32 cs; /* start of the current component in out */
	int done;
};

static __always_inline void end_component(struct work *w, struct norm_ctx *c, char *out)
{
	__u32 l = c->o - c->cs; /* the separator included */
	if (l == 0)
		return;
	if (l == 2 && out[bound(c->cs + 1, 4095)] == '.') {
		c->o = c->cs;
		return;
	}
	if (l == 3 && out[bound(c->cs + 1, 4095)] == '.' && out[bound(c->cs + 2, 4095)] == '.') {
		c->o = c->cs;
		if (w->sp > 0) {
			w->sp--;
			if (w->sp < MAX_STACK)
				c->o = w->stack[bound(w->sp, 63)];
		}
		c->cs = c->o;
		return;
	}
	if (w->sp < MAX_STACK)
		w->stack[bound(w->sp, 63)] = c->cs;
	else
		w->trunc = 1;
	w->sp++;
	c->cs = c->o;
}

static long norm_step(__u32 i, struct norm_ctx *c)
{
	struct work *w = get_work();
	if (!w || i >= c->n || i >= DPATH_MAX)
		return 1;
	char *out = c->out;
	char ch = w->in[bound(i, 4095)];
	if (ch == '/' || ch == 0) {
		end_component(w, c, out);
		return ch == 0;
	}
	if (c->o >= DPATH_MAX - 2) {
		w->trunc = 1;
		return 1;
	}
	if (c->o == c->cs) {
		out[bound(c->o, 4095)] = '/';
		c->o++;
	}
	out[bound(c->o, 4095)] = ch;
	c->o++;
	return 0;
}

/* lpm_len sets the key length for a prefix lookup of out[0..len). */
static __always_inline void lpm_len(__u32 *bits, __u32 len)
{
	*bits = (len > DNAME_MAX ? DNAME_MAX : len) * 8;
}

/* rewrite_dirlink replaces a leading symlinked directory in out (length o)
 * with its target and returns the new length. */
static __noinline __u32 rewrite_dirlink(struct work *w, __u32 *bits, char *out, __u32 o)
{
	if (o >= DPATH_MAX - 1)
		return o;
	out[bound(o, 4095)] = '/';
	lpm_len(bits, o + 1);
	struct dirlink *dl = bpf_map_lookup_elem(&dirlinks, bits);
	out[bound(o, 4095)] = 0;
	if (!dl)
		return o;
	__u32 plen = dl->plen, tlen = dl->tlen;
	if (plen == 0 || plen > DNAME_MAX || tlen == 0 || tlen > NMASK)
		return o;
	if (o + 1 <= plen) { /* exactly the link: its target without the slash */
		bpf_probe_read_kernel(out, bound(tlen, 255), dl->target);
		out[bound(tlen - 1, 4095)] = 0;
		return tlen - 1;
	}
	__u32 rest = o - plen;
	if (rest >= DPATH_MAX || tlen + rest >= DPATH_MAX - 1) {
		w->trunc = 1;
		return o;
	}
	bpf_probe_read_kernel(w->in, bound(rest, 4095), out + (bound(plen, 255)));
	bpf_probe_read_kernel(out, bound(tlen, 255), dl->target);
	bpf_probe_read_kernel(out + (bound(tlen, 255)), bound(rest, 4095), w->in);
	o = tlen + rest;
	out[bound(o, 4095)] = 0;
	return o;
}

/* file_of returns the file behind fd in the current task, or NULL. */
static __always_inline struct file *file_of(int fd)
{
	/* Direct loads through the task's BTF pointers: no helper call per hop. */
	struct task_struct *t = bpf_get_current_task_btf();
	struct fdtable *fdt = t->files->fdt;
	if (!fdt || fd < 0 || (unsigned int)fd >= fdt->max_fds)
		return NULL;
	struct file **fds = fdt->fd;
	struct file *f = NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

/* chain_build records in c the chain of directory (d, m) up to the root of
 * the mount namespace. Returns 0 when it cannot be cached: deeper than
 * DCHAIN, or disconnected. */
static __always_inline int chain_build(struct dclass *c, struct dentry *d, struct mount *m)
{
	for (int i = 0; i < DCHAIN; i++) {
		struct dentry *mroot = KLOAD(struct mount, m, mnt.mnt_root);
		struct dentry *parent = KLOAD(struct dentry, d, d_parent);
		c->d[i] = (__u64)d;
		c->hl[i] = KLOAD(struct dentry, d, d_name.hash_len);
		c->m[i] = (__u64)m;
		if (d != mroot && d != parent) {
			d = parent;
			continue;
		}
		struct mount *mp = KLOAD(struct mount, m, mnt_parent);
		if (mp == m || !mp) {
			c->n = i + 1;
			return 1;
		}
		if (d != mroot)
			return 0;
		d = KLOAD(struct mount, m, mnt_mountpoint);
		m = mp;
	}
	return 0;
}

/* chain_holds says whether the chain c still leads from its directory to the
 * root: no dentry in it moved or was renamed, no mount in it moved. */
static __always_inline int chain_holds(struct dclass *c)
{
	__u32 n = c->n;
	for (int i = 0; i + 1 < DCHAIN; i++) {
		if (i + 1 >= n)
			return 1;
		__u64 next = c->d[i + 1];
		if (c->m[i] != c->m[i + 1]) {
			/* a mount root: its mount must still sit where it did */
			if ((__u64)KLOAD(struct mount, c->m[i], mnt_mountpoint) != next ||
			    (__u64)KLOAD(struct mount, c->m[i], mnt_parent) != c->m[i + 1])
				return 0;
		} else if ((__u64)KLOAD(struct dentry, c->d[i], d_parent) != next ||
			   KLOAD(struct dentry, c->d[i], d_name.hash_len) != c->hl[i]) {
			return 0;
		}
	}
	return 1; /* DCHAIN levels, every link checked */
}

/* dir_path writes the path of directory (dentry, vfsmnt) into out like
 * walk_path, from the cache when it still holds, and caches what it walks.
 * A cached path has no component stack: callers that apply ".." use
 * walk_path. */
static __noinline __u32 dir_path(struct work *w, struct dentry *dentry, struct vfsmount *vfsmnt, char *out)
{
	struct dkey k = {.dentry = (__u64)dentry, .mnt = (__u64)vfsmnt};
	__u64 parent = (__u64)BPF_CORE_READ(dentry, d_parent);
	__u64 hash_len = BPF_CORE_READ(dentry, d_name.hash_len);
	__u64 gen = path_generation();
	struct dpath *c = bpf_map_lookup_elem(&dcache, &k);
	if (c && c->parent == parent && c->hash_len == hash_len && c->gen == gen) {
		__u32 len = c->len;
		if (len < DPATH_MAX) {
			bpf_probe_read_kernel(out, bound(len, 4095), c->path);
			out[bound(len, 4095)] = 0;
			return len;
		}
	}
	__u32 o = walk_path(w, dentry, vfsmnt, out);
	if (w->trunc || o >= DPATH_MAX)
		return o;
	w->stage.parent = parent;
	w->stage.hash_len = hash_len;
	w->stage.gen = gen;
	w->stage.len = o;
	bpf_probe_read_kernel(w->stage.path, bound(o, 4095), out);
	bpf_map_update_elem(&dcache, &k, &w->stage, BPF_ANY);
	return o;
}

/* eq_bytes marks the bytes of x equal to c: bit 7 of each such byte is set. */
static __always_inline __u64 eq_bytes(__u64 x, __u64 c)
{
	const __u64 lo7 = 0x7f7f7f7f7f7f7f7fULL;
	__u64 v = x ^ (c * 0x0101010101010101ULL);
	return ~(((v & lo7) + lo7) | v | lo7);
}

/* scan_word looks at 8 bytes of the name for "/." and "//": names without
 * them need no lexical normalisation and are copied whole. */
static long scan_word(__u32 i, void *unused)
{
	struct work *w = get_work();
	if (!w)
		return 1;
	__u32 len = w->scan_len, off = i * 8;
	if (off >= len || off >= DPATH_MAX)
		return 1;
	__u64 x = *(__u64 *)(w->in + bound(off, 4088));
	__u32 rem = len - off;
	if (rem < 8)
		x &= (1ULL << (rem * 8)) - 1;
	__u64 sl = eq_bytes(x, '/'), dot = eq_bytes(x, '.');
	if (((sl << 8) & (sl | dot)) || (w->prev_slash && ((sl | dot) & 0x80))) {
		w->slow = 1;
		return 1;
	}
	w->prev_slash = (sl >> 63) & 1;
	return 0;
}

/* ---- names that reach another object than their string says ----
 *
 * A chroot: the task's root is not its mount namespace's root, so an
 * absolute name starts at the root's own path. A /proc magic link
 * (/proc/<pid>/root, cwd, exe, fd/N): the name reaches the object the
 * link points at, so the prefix up to the link is replaced by that
 * object's path. What cannot be followed (another process's links) is
 * flagged in w->unresolved, never judged by the string alone: a mutation
 * through it is a finding under rule RULE_UNRESOLVED (common.h). */

/* root_is_ns_root says whether the task's root is the root of its mount
 * namespace (no chroot): the root dentry is its mount's root, and so on up
 * to the namespace's own mount. Unsure (mounts stacked deeper) is no. */
static __always_inline int root_is_ns_root(struct task_struct *t)
{
	struct dentry *d = t->fs->root.dentry;
	struct mount *m = container_of(t->fs->root.mnt, struct mount, mnt);
	for (int i = 0; i < 4; i++) {
		if (d != KLOAD(struct mount, m, mnt.mnt_root))
			return 0;
		struct mount *p = KLOAD(struct mount, m, mnt_parent);
		if (p == m || !p)
			return 1;
		d = KLOAD(struct mount, m, mnt_mountpoint);
		m = p;
	}
	return 0;
}

/* pid_in_own_ns: the number a struct pid has in the namespace it was made in. */
static __always_inline long pid_in_own_ns(struct pid *p)
{
	__u32 level = BPF_CORE_READ(p, level);
	int nr = -1;
	bpf_probe_read_kernel(&nr, sizeof(nr), &p->numbers[bound(level, 31)].nr);
	return nr;
}

/* is_own_pid: n names the current task's process or thread, as the global
 * ids or as its own pid namespace numbers them. */
static __always_inline int is_own_pid(struct task_struct *t, long n)
{
	__u64 pt = bpf_get_current_pid_tgid();
	if (n == (long)(pt >> 32) || n == (long)(__u32)pt)
		return 1;
	return n == pid_in_own_ns(BPF_CORE_READ(t, thread_pid)) ||
	       n == pid_in_own_ns(BPF_CORE_READ(t, group_leader, thread_pid));
}

/* The component a magic-link scan is in, and what it found (w->mstate). */
enum {
	MG_PID = 0,  /* reading the component after "/proc/" */
	MG_LINK,     /* reading the one after the pid */
	MG_FD,       /* reading the descriptor number after "fd/" */
	MG_NONE,     /* not a magic link: the name stays */
	MG_ROOT,     /* found: the task's root ... */
	MG_CWD,
	MG_EXE,
	MG_FDN,      /* ... its descriptor w->mnum */
	MG_OTHER,    /* a link it does not follow: another process's, task/, map_files/ */
};

/* Components compared by their last 8 bytes and their length. */
#define MG_WORD(a, b, c, d, e, f, g, h)                                                            \
	((__u64)(a) << 56 | (__u64)(b) << 48 | (__u64)(c) << 40 | (__u64)(d) << 32 | (__u64)(e) << 24 | \
	 (__u64)(f) << 16 | (__u64)(g) << 8 | (__u64)(h))

struct magic_ctx {
	char *out;
	__u32 start; /* where the component after "/proc/" starts */
};

/* magic_step reads one byte of the name after "/proc/"; at each '/' or the
 * end it judges the component (w->mword: its last 8 bytes, w->mlen bytes,
 * w->mnum its number when w->mdigits). State in the work area, so the
 * callback's states converge instead of being explored per character. */
static long magic_step(__u32 i, struct magic_ctx *c)
{
	struct work *w = get_work();
	if (!w)
		return 1;
	__u32 at = c->start + i;
	if (at >= DPATH_MAX - 1)
		return 1;
	char ch = c->out[bound(at, 4095)];
	if (ch != '/' && ch != 0) {
		w->mword = w->mword << 8 | (__u8)ch;
		w->mlen++;
		if (ch >= '0' && ch <= '9' && w->mnum < 100000000)
			w->mnum = w->mnum * 10 + (ch - '0');
		else
			w->mdigits = 0;
		return 0;
	}
	__u64 word = w->mword;
	__u32 len = w->mlen, num = w->mdigits && len ? w->mnum : 0xffffffff;
	w->mword = 0, w->mlen = 0, w->mnum = 0, w->mdigits = 1;
	w->mend = at;
	switch (w->mstate) {
	case MG_PID:
		if ((len == 4 && word == MG_WORD(0, 0, 0, 0, 's', 'e', 'l', 'f')) ||
		    (len == 11 && word == MG_WORD('e', 'a', 'd', '-', 's', 'e', 'l', 'f')))
			w->mown = 1;
		else if (num != 0xffffffff)
			w->mown = is_own_pid(bpf_get_current_task_btf(), num);
		else
			w->mstate = MG_NONE;
		if (w->mstate == MG_PID)
			w->mstate = MG_LINK;
		break;
	case MG_LINK:
		if (len == 4 && word == MG_WORD(0, 0, 0, 0, 'r', 'o', 'o', 't'))
			w->mstate = MG_ROOT;
		else if (len == 3 && word == MG_WORD(0, 0, 0, 0, 0, 'c', 'w', 'd'))
			w->mstate = MG_CWD;
		else if (len == 3 && word == MG_WORD(0, 0, 0, 0, 0, 'e', 'x', 'e'))
			w->mstate = MG_EXE;
		else if (len == 2 && word == MG_WORD(0, 0, 0, 0, 0, 0, 'f', 'd'))
			w->mstate = ch ? MG_FD : MG_NONE;
		else if ((len == 4 && word == MG_WORD(0, 0, 0, 0, 't', 'a', 's', 'k')) ||
			 (len == 9 && word == MG_WORD('a', 'p', '_', 'f', 'i', 'l', 'e', 's')))
			w->mstate = MG_OTHER;
		else
			w->mstate = MG_NONE;
		break;
	case MG_FD:
		w->mstate = num != 0xffffffff ? MG_FDN : MG_NONE;
		w->mfd = num;
		break;
	}
	if (w->mstate >= MG_ROOT && !w->mown)
		w->mstate = MG_OTHER;
	return ch == 0 || w->mstate >= MG_NONE;
}

/* follow_magic: out[0..o) is a name whose part from w->mat (past a
 * chroot's prefix) may run through a /proc magic link. When it does, the
 * prefix up to the link becomes the path of what the link reaches (walked
 * to the namespace root) and the new length is returned; a link it does not
 * follow sets w->unresolved and leaves the name as it is. */
static __noinline __u32 follow_magic(struct work *w, char *out, __u32 o)
{
	__u32 at = w->mat;
	if (at >= DPATH_MAX - 8 || o >= DPATH_MAX || o < at + 6)
		return o;
	__u64 head = 0;
	bpf_probe_read_kernel(&head, 6, out + bound(at, 4095));
	if (head != 0x2f636f72702fULL) /* "/proc/", little-endian */
		return o;
	w->mstate = MG_PID, w->mown = 0, w->mword = 0, w->mlen = 0, w->mnum = 0, w->mdigits = 1;
	struct magic_ctx c = {.out = out, .start = at + 6};
	bpf_loop(48, magic_step, &c, 0);
	__u32 state = w->mstate, end = w->mend;
	if (state == MG_OTHER) {
		w->unresolved = 1;
		return o;
	}
	if (state < MG_ROOT || end > o || end >= DPATH_MAX)
		return o;
	/* every branch yields plain numbers, so the walk below is verified once */
	struct task_struct *t = bpf_get_current_task_btf();
	const struct path *pp;
	if (state == MG_ROOT) {
		pp = &t->fs->root;
	} else if (state == MG_CWD) {
		pp = &t->fs->pwd;
	} else {
		struct file *f = state == MG_EXE ? BPF_CORE_READ(t, mm, exe_file) : file_of(w->mfd);
		if (!f)
			return o; /* no such descriptor: the call failed */
		pp = &f->f_path;
	}
	struct dentry *d = BPF_CORE_READ(pp, dentry);
	struct vfsmount *vm = BPF_CORE_READ(pp, mnt);
	/* the rest of the name, after the link, waits in w->in (consumed) */
	__u32 rest = o - end;
	bpf_probe_read_kernel(w->in, bound(rest, 4095), out + bound(end, 4095));
	__u32 l = walk_path(w, d, vm, out);
	if (l + rest >= DPATH_MAX - 1) {
		w->trunc = 1;
		rest = l < DPATH_MAX - 1 ? DPATH_MAX - 2 - l : 0;
	}
	bpf_probe_read_kernel(out + bound(l, 4095), bound(rest, 4095), w->in);
	l += rest;
	if (l == 0)
		out[0] = '/', l = 1;
	out[bound(l, 4095)] = 0;
	return l;
}

/* base_path writes the path of what an empty name (AT_EMPTY_PATH) names:
 * dfd's own file, or the cwd. */
static __always_inline __u32 base_path(struct work *w, int dfd, char *out)
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct dentry *d = t->fs->pwd.dentry;
	struct vfsmount *vm = t->fs->pwd.mnt;
	if (dfd != AT_FDCWD_) {
		struct file *f = file_of(dfd);
		if (!f)
			return 0;
		d = BPF_CORE_READ(f, f_path.dentry);
		vm = BPF_CORE_READ(f, f_path.mnt);
	}
	__u32 o = walk_path(w, d, vm, out);
	if (o == 0) {
		out[0] = '/';
		out[1] = 0;
		o = 1;
	}
	return o;
}

/* resolve_alt builds the canonical path of name (relative to dfd or the cwd)
 * into w->alt, with w->alt_bits the LPM scratch right before it. Returns the
 * length, or 0 when the name could not be read. A global function: the
 * verifier checks it once for any arguments, not once per call site with
 * each caller's state (the walk, the chroot and the /proc magic links took
 * 6.1's verifier past the time a load may take). */
__noinline __u32 resolve_alt(int dfd, __u64 uname, int user)
{
	long n;
	const char *name = (const char *)uname;
	struct work *w = get_work();
	if (!w)
		return 0;
	__u32 *bits = &w->alt_bits;
	char *out = w->alt;
	w->trunc = 0;
	if (user)
		n = bpf_probe_read_user_str(w->in, DPATH_MAX, name);
	else
		n = bpf_probe_read_kernel_str(w->in, DPATH_MAX, name);
	if (n < 0)
		return 0;
	if (n <= 1) /* "" (AT_EMPTY_PATH; kernels before 6.18 count it 0): the dirfd's own file, or the cwd */
		return base_path(w, dfd, out);
	if (n >= DPATH_MAX)
		w->trunc = 1;
	__u32 len = n - 1;

	/* Most names need no lexical work: no "." or ".." component, no "//",
	 * no trailing slash. Find out 8 bytes at a time. */
	w->slow = w->in[0] == '.' || w->in[bound(len - 1, 4095)] == '/';
	w->prev_slash = 0;
	w->scan_len = len;
	if (!w->slow)
		bpf_loop(DPATH_MAX / 8, scan_word, NULL, 0);

	const struct path *base = NULL;
	struct task_struct *t = bpf_get_current_task_btf();
	__u32 skip = 0; /* an absolute name under a chroot: its "/" is the root's path */
	if (w->in[0] != '/') {
		if (dfd == AT_FDCWD_) {
			base = &t->fs->pwd;
		} else {
			struct file *f = file_of(dfd);
			if (!f)
				return 0;
			base = &f->f_path;
		}
	} else if (!root_is_ns_root(t)) {
		base = &t->fs->root;
		skip = 1;
	}

	__u32 o = 0;
	w->mat = 0;
	if (!w->slow) {
		if (base)
			o = dir_path(w, BPF_CORE_READ(base, dentry), BPF_CORE_READ(base, mnt), out);
		if (skip)
			w->mat = o;
		if (o + 1 + len >= DPATH_MAX - 1) {
			w->trunc = 1;
			len = o + 1 < DPATH_MAX - 1 ? DPATH_MAX - 2 - o : 0;
		}
		if (base)
			out[bound(o, 4095)] = '/';
		__u32 at = base ? o + 1 : 0;
		__u32 copy = len > skip ? len - skip : 0;
		bpf_probe_read_kernel(out + bound(at, 4095), bound(copy, 4095), w->in + skip);
		o = at + copy;
	} else {
		struct norm_ctx c = {.out = out, .n = n};
		w->sp = 0;
		if (base) {
			c.o = walk_path(w, BPF_CORE_READ(base, dentry), BPF_CORE_READ(base, mnt), out);
			c.cs = c.o;
			if (skip) {
				w->sp = 0; /* ".." stops at the chroot's root */
				w->mat = c.o;
			}
		}
		bpf_loop(DPATH_MAX, norm_step, &c, 0);
		o = c.o;
	}
	if (o == 0) {
		out[0] = '/';
		o = 1;
	}
	if (o >= DPATH_MAX)
		o = DPATH_MAX - 1;
	out[bound(o, 4095)] = 0;
	return rewrite_dirlink(w, bits, out, follow_magic(w, out, o));
}

/* resolve_name is resolve_alt into a record's path out, with *bits the LPM
 * scratch right before it. */
static __always_inline __u32 resolve_name(int dfd, const char *name, int user, __u32 *bits, char *out)
{
	__u32 l = bound(resolve_alt(dfd, (__u64)name, user), 4095);
	struct work *w = get_work();
	if (!w)
		return 0;
	*bits = w->alt_bits;
	bpf_probe_read_kernel(out, l, w->alt);
	out[l] = 0;
	return l;
}

/* resolve_file builds the canonical path of an open file into out: its
 * directory from the cache, then its own name. */
static __noinline __u32 resolve_file(struct work *w, struct file *f, char *out)
{
	w->trunc = 0;
	struct dentry *d = BPF_CORE_READ(f, f_path.dentry);
	struct vfsmount *vm = BPF_CORE_READ(f, f_path.mnt);
	struct dentry *parent = BPF_CORE_READ(d, d_parent);
	__u32 o;
	if (parent == d || d == BPF_CORE_READ(vm, mnt_root)) {
		/* a mount root, or a pseudo file (memfd): walk it whole */
		o = walk_path(w, d, vm, out);
	} else {
		o = dir_path(w, parent, vm, out);
		struct qstr q;
		BPF_CORE_READ_INTO(&q, d, d_name); /* length and name pointer in one read */
		__u32 nl = q.len;
		const unsigned char *nm = q.name;
		if (nl > NMASK || o + 1 + nl >= DPATH_MAX - 1) {
			w->trunc = 1;
		} else {
			out[bound(o, 4095)] = '/';
			bpf_probe_read_kernel(out + bound(o + 1, 4095), bound(nl, 255), nm);
			o += 1 + nl;
		}
	}
	if (o == 0) {
		out[0] = '/';
		o = 1;
	}
	out[bound(o, 4095)] = 0;
	return o;
}

#endif
