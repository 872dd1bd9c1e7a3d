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
	__u32 _pad2;
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

/* resolve_name builds the canonical path of name (relative to dfd or the cwd)
 * into out, with *bits the LPM scratch right before it. Returns the length,
 * or 0 when the name could not be read. */
static __noinline __u32 resolve_name(int dfd, const char *name, int user, __u32 *bits, char *out)
{
	long n;
	struct work *w = get_work();
	if (!w)
		return 0;
	w->trunc = 0;
	if (user)
		n = bpf_probe_read_user_str(w->in, DPATH_MAX, name);
	else
		n = bpf_probe_read_kernel_str(w->in, DPATH_MAX, name);
	if (n <= 1)
		return 0;
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
	if (w->in[0] != '/') {
		if (dfd == AT_FDCWD_) {
			struct task_struct *t = bpf_get_current_task_btf();
			base = &t->fs->pwd;
		} else {
			struct file *f = file_of(dfd);
			if (!f)
				return 0;
			base = &f->f_path;
		}
	}

	__u32 o = 0;
	if (!w->slow) {
		if (base)
			o = dir_path(w, BPF_CORE_READ(base, dentry), BPF_CORE_READ(base, mnt), out);
		if (o + 1 + len >= DPATH_MAX - 1) {
			w->trunc = 1;
			len = o + 1 < DPATH_MAX - 1 ? DPATH_MAX - 2 - o : 0;
		}
		if (base)
			out[bound(o, 4095)] = '/';
		__u32 at = base ? o + 1 : 0;
		bpf_probe_read_kernel(out + bound(at, 4095), bound(len, 4095), w->in);
		o = at + len;
	} else {
		struct norm_ctx c = {.out = out, .n = n};
		w->sp = 0;
		if (base) {
			c.o = walk_path(w, BPF_CORE_READ(base, dentry), BPF_CORE_READ(base, mnt), out);
			c.cs = c.o;
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
	return rewrite_dirlink(w, bits, out, o);
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
