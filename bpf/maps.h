/* SPDX-License-Identifier: GPL-2.0 */
/* Maps and helpers every backend shares: the ring buffer, the live
 * configuration, the scope, the policy's prefix tries, the taint set, the
 * allowed ports, the counters and the per-CPU record scratch. The names are
 * part of the loaders' contract (sensor/tracepoint, sensor/lsm, sensor/backend). */
#ifndef DRIFT_MAPS_H
#define DRIFT_MAPS_H

#include "common.h"
#include "path.h"

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} config_map SEC(".maps");

/* cgroup ids in scope; a task is in scope when it or an ancestor cgroup is. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u8);
} scope_map SEC(".maps");

/* The scope verdict per cgroup: a cgroup's ancestry never changes, so the
 * walk up the hierarchy is done once per cgroup, not once per event. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u8);
} scope_cache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__type(key, struct lpm_key);
	__type(value, struct rule_val);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__type(key, struct lpm_key);
	__type(value, struct rule_val);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} images SEC(".maps");

/* Files created or modified after sealing: executing one is drift. A plain
 * hash, not LRU: an attacker must not be able to evict a taint by churning. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct file_id);
	__type(value, __u64);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} taint SEC(".maps");

/* Allowed ports: allowed[port] = 1 may bind/listen. One element holds them
 * all, so user space writes the set, and reads it back each heartbeat, in one
 * call instead of 65,536. */
struct port_set {
	__u8 allowed[65536];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct port_set);
} ports SEC(".maps");

static __always_inline int port_allowed(__u32 port)
{
	__u32 zero = 0;
	struct port_set *ps = bpf_map_lookup_elem(&ports, &zero);
	if (!ps)
		return 0;
	barrier_var(port); /* keep the mask: older verifiers lose a byte swap's bounds */
	return ps->allowed[port & 0xffff];
}

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct file_rec);
} frec_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exec_rec);
} xrec_map SEC(".maps");

/* The sensor's own process. The loader sets it before load, in .rodata,
 * which the kernel freezes: unlike a map entry, no bpf() command can rewrite
 * it, so no one else can make themselves the sensor and go unseen. */
const volatile __u32 self_tgid = 0;

/* guard_files: how many of the sensor's files and directories guarded
 * holds; 0 spares every open the check. guarded_ino lists their inode
 * numbers, also set before load and frozen: an open compares two numbers
 * against it, and looks guarded up only on a match. */
#define GUARD_MAX 64
const volatile __u32 guard_files = 0;
const volatile __u64 guarded_ino[GUARD_MAX] = {};

static __always_inline int is_self(void)
{
	return (__u32)(bpf_get_current_pid_tgid() >> 32) == self_tgid;
}

/* The sensor's own programs, maps and links: cmd << 32 | id, cmd being the
 * bpf(2) command that turns the id into a descriptor (BPF_*_GET_FD_BY_ID).
 * Written once at load, then frozen: bpf() can no longer change it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u64);
	__type(value, __u8);
} self_ids SEC(".maps");

struct file_id {
	__u64 dev;
	__u64 ino;
};

/* The sensor's own files and directories (credentials, state, spool), by
 * identity; a file whose parent directory is here is guarded too, so spool
 * segments made later are covered. Written once at load, then frozen. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct file_id);
	__type(value, __u8);
} guarded SEC(".maps");

/* The liveness counter: advanced only here, each time the sensor's own
 * process reads it (once per Stats call, so at least once per heartbeat),
 * frozen against writes from user space. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} liveness SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		(*v)++;
}

/* emit sends a record; one the ring buffer cannot take is counted, and the
 * sensor reports the count as a finding. */
static __always_inline void emit(void *rec, __u64 size)
{
	if (bpf_ringbuf_output(&events, rec, size, 0))
		count(STAT_LOST);
}

static __always_inline struct config *get_config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&config_map, &zero);
}

/* in_scope: never the sensor itself; with a scope, only tasks in a scope
 * cgroup or below it. */
static __always_inline int in_scope(struct config *cfg)
{
	if (is_self())
		return 0;
	if (!cfg->scope_cgroups)
		return 1;
	__u64 cg = bpf_get_current_cgroup_id();
	__u8 *known = bpf_map_lookup_elem(&scope_cache, &cg);
	if (known)
		return *known;
	__u8 in = 0;
	for (int lvl = 0; lvl < 16; lvl++) {
		__u64 id = bpf_get_current_ancestor_cgroup_id(lvl);
		if (!id)
			break;
		if (bpf_map_lookup_elem(&scope_map, &id)) {
			in = 1;
			break;
		}
	}
	bpf_map_update_elem(&scope_cache, &cg, &in, BPF_ANY);
	return in;
}

/* classify returns the matching rule for path[0..len), or NULL. */
static __always_inline struct rule_val *classify(void *map, __u32 *bits, __u32 len)
{
	lpm_len(bits, len);
	return bpf_map_lookup_elem(map, bits);
}

static __always_inline int is_protected(struct rule_val *r)
{
	return r && (r->class & CLASS_MASK) == CLASS_PROTECT;
}

/* dir_class returns the rule for the names directly in directory (dentry,
 * vfsmnt), CLASS_* with its flags, from the cache while the directory's chain
 * holds; 0 for no rule or not known (the chain too deep, the path too long
 * for the trie's key). Uses w->alt. */
static __noinline __u32 dir_class(struct dentry *dentry, struct vfsmount *vfsmnt)
{
	struct work *w = get_work();
	if (!w)
		return 0;
	struct dkey k = {.dentry = (__u64)dentry, .mnt = (__u64)vfsmnt};
	struct dclass *c = bpf_map_lookup_elem(&dclasses, &k);
	if (c && chain_holds(c))
		return c->class;
	struct dclass *s = &w->cstage;
	if (!chain_build(s, dentry, container_of(vfsmnt, struct mount, mnt)))
		return 0;
	w->trunc = 0;
	__u32 l = walk_path(w, dentry, vfsmnt, w->alt);
	if (w->trunc || l >= DNAME_MAX)
		return 0;
	w->alt[bound(l, 4095)] = '/'; /* the rule for names in it: "/dir/" */
	struct rule_val *rv = classify(&rules, &w->alt_bits, l + 1);
	s->class = rv ? rv->class : 0;
	/* a rename racing the walk: the path may not be the chain's */
	if (!chain_holds(s))
		return 0;
	bpf_map_update_elem(&dclasses, &k, s, BPF_ANY);
	return s->class;
}

/* names_exempt says whether class (dir_class's) puts every name in its
 * directory in a writable exception outside the image paths: a mutation
 * there is benign, decided without its name or path. */
static __always_inline int names_exempt(__u32 class)
{
	return (class & (CLASS_MASK | CLASS_LEAF | CLASS_TAINT)) == (CLASS_EXEMPT | CLASS_LEAF);
}

/* dentry_exempt says whether (d, vm) is a name directly in such a directory. */
static __always_inline int dentry_exempt(struct dentry *d, struct vfsmount *vm)
{
	struct dentry *dir = KLOAD(struct dentry, d, d_parent);
	if (dir == d || d == KLOAD(struct vfsmount, vm, mnt_root)) /* a mount root, a pseudo file */
		return 0;
	return names_exempt(dir_class(dir, vm));
}

/* file_exempt says whether open file f lies directly in such a directory. */
static __always_inline int file_exempt(struct file *f)
{
	return dentry_exempt(KLOAD(struct file, f, f_path.dentry), KLOAD(struct file, f, f_path.mnt));
}

/* bpf(2) commands this file tells apart. */
#define BPF_MAP_LOOKUP_ELEM_ 1
#define BPF_MAP_UPDATE_ELEM_ 2
#define BPF_MAP_DELETE_ELEM_ 3
#define BPF_PROG_DETACH_ 9
#define BPF_PROG_GET_FD_BY_ID_ 13
#define BPF_MAP_GET_FD_BY_ID_ 14
#define BPF_MAP_LOOKUP_AND_DELETE_ELEM_ 21
#define BPF_MAP_FREEZE_ 22
#define BPF_MAP_LOOKUP_AND_DELETE_BATCH_ 25
#define BPF_MAP_UPDATE_BATCH_ 26
#define BPF_MAP_DELETE_BATCH_ 27
#define BPF_LINK_UPDATE_ 29
#define BPF_LINK_GET_FD_BY_ID_ 30
#define BPF_LINK_DETACH_ 34

/* The object a bpf(2) command touches: where its descriptor or id sits in
 * union bpf_attr, and which kind of object it is (the GET_FD_BY_ID command
 * of that kind, the first half of a self_ids key). */
struct bpf_target {
	__u32 off;
	__u32 kind;
	__u32 by_id; /* the attr holds an id, not a descriptor */
};

static __always_inline int bpf_target_of(__u32 cmd, struct bpf_target *t)
{
	t->off = 0;
	t->by_id = 0;
	switch (cmd) {
	case BPF_MAP_UPDATE_ELEM_:
	case BPF_MAP_DELETE_ELEM_:
	case BPF_MAP_LOOKUP_AND_DELETE_ELEM_:
	case BPF_MAP_FREEZE_:
		t->kind = BPF_MAP_GET_FD_BY_ID_;
		return 1;
	case BPF_MAP_LOOKUP_AND_DELETE_BATCH_:
	case BPF_MAP_UPDATE_BATCH_:
	case BPF_MAP_DELETE_BATCH_:
		t->kind = BPF_MAP_GET_FD_BY_ID_, t->off = 36; /* batch.map_fd */
		return 1;
	case BPF_LINK_UPDATE_:
	case BPF_LINK_DETACH_:
		t->kind = BPF_LINK_GET_FD_BY_ID_;
		return 1;
	case BPF_PROG_DETACH_:
		t->kind = BPF_PROG_GET_FD_BY_ID_, t->off = 4; /* attach_bpf_fd */
		return 1;
	case BPF_PROG_GET_FD_BY_ID_:
	case BPF_MAP_GET_FD_BY_ID_:
	case BPF_LINK_GET_FD_BY_ID_:
		t->kind = cmd, t->by_id = 1;
		return 1;
	}
	return 0;
}

/* bpf_obj_of returns what the descriptor fd of the current task holds when
 * it is a bpf object of the given kind, told by the name of its anonymous
 * inode file (bpf-map, bpf-prog; a link made by attaching is bpf_link, one
 * made from its id bpf-link), or NULL. */
static __always_inline void *bpf_obj_of(int fd, __u32 kind)
{
	struct file *f = file_of(fd);
	if (!f)
		return NULL;
	const unsigned char *name = BPF_CORE_READ(f, f_path.dentry, d_name.name);
	__u64 n = 0;
	bpf_probe_read_kernel(&n, sizeof(n), name);
	int ok;
	if (kind == BPF_MAP_GET_FD_BY_ID_)
		ok = n == 0x0070616d2d667062ULL; /* "bpf-map\0" */
	else if (kind == BPF_PROG_GET_FD_BY_ID_)
		ok = n == 0x676f72702d667062ULL; /* "bpf-prog" */
	else
		ok = n == 0x6b6e696c5f667062ULL || n == 0x6b6e696c2d667062ULL; /* "bpf_link", "bpf-link" */
	if (!ok)
		return NULL;
	return BPF_CORE_READ(f, private_data);
}

/* self_bpf_key returns cmd << 32 | id when the bpf(2) command cmd, with its
 * attr at attr (user memory at syscall exit, kernel memory in the LSM hook),
 * touches one of the sensor's own objects; 0 otherwise. */
static __noinline __u64 self_bpf_key(__u32 cmd, const void *attr, int user)
{
	struct bpf_target t;
	if (!bpf_target_of(cmd, &t))
		return 0;
	__u32 v = 0;
	if (user)
		bpf_probe_read_user(&v, sizeof(v), attr + t.off);
	else
		bpf_probe_read_kernel(&v, sizeof(v), attr + t.off);
	__u32 id = v;
	if (!t.by_id) {
		void *obj = bpf_obj_of(v, t.kind);
		if (!obj)
			return 0;
		if (t.kind == BPF_MAP_GET_FD_BY_ID_)
			id = BPF_CORE_READ((struct bpf_map *)obj, id);
		else if (t.kind == BPF_PROG_GET_FD_BY_ID_)
			id = BPF_CORE_READ((struct bpf_prog *)obj, aux, id);
		else
			id = BPF_CORE_READ((struct bpf_link *)obj, id);
	}
	__u64 key = (__u64)t.kind << 32 | id;
	if (!bpf_map_lookup_elem(&self_ids, &key))
		return 0;
	return (__u64)cmd << 32 | id;
}

/* count_liveness advances the liveness counter when the sensor's own lookup
 * (cmd, attr) reads the liveness map. */
static __always_inline void count_liveness(__u32 cmd, const void *attr, int user)
{
	if (cmd != BPF_MAP_LOOKUP_ELEM_)
		return;
	int fd = -1;
	if (user)
		bpf_probe_read_user(&fd, sizeof(fd), attr);
	else
		bpf_probe_read_kernel(&fd, sizeof(fd), attr);
	if (bpf_obj_of(fd, BPF_MAP_GET_FD_BY_ID_) != (void *)&liveness)
		return;
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&liveness, &zero);
	if (n)
		__sync_fetch_and_add(n, 1);
}

/* guarded_file says whether f is one of the sensor's own files, or in one
 * of its directories. */
static __always_inline int guarded_file(struct file *f, struct file_id *id)
{
	struct inode *ino = KLOAD(struct file, f, f_inode);
	__u64 nr = KLOAD(struct inode, ino, i_ino);
	struct dentry *d = KLOAD(struct file, f, f_path.dentry);
	struct dentry *dir = KLOAD(struct dentry, d, d_parent);
	struct inode *dino = KLOAD(struct dentry, dir, d_inode);
	__u64 dnr = KLOAD(struct inode, dino, i_ino);
	int listed = 0;
	for (__u32 i = 0; i < GUARD_MAX && i < guard_files; i++) {
		if (guarded_ino[i] == nr || guarded_ino[i] == dnr) {
			listed = 1;
			break;
		}
	}
	if (!listed)
		return 0;
	struct super_block *sb = KLOAD(struct inode, ino, i_sb);
	id->dev = KLOAD(struct super_block, sb, s_dev);
	id->ino = nr;
	if (bpf_map_lookup_elem(&guarded, id))
		return 1;
	struct file_id parent = {.dev = id->dev, .ino = dnr};
	return bpf_map_lookup_elem(&guarded, &parent) != NULL;
}

#endif
