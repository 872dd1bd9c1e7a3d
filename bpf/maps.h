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

struct file_id {
	__u64 dev;
	__u64 ino;
};

/* Files created or modified after sealing: executing one is drift. A plain
 * hash, not LRU: an attacker must not be able to evict a taint by churning. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct file_id);
	__type(value, __u64);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} taint SEC(".maps");

/* Allowed ports: 1 = may bind/listen. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} ports SEC(".maps");

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
	if ((__u32)(bpf_get_current_pid_tgid() >> 32) == cfg->self_tgid)
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

#endif
