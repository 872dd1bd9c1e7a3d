//go:build ignore
/* SPDX-License-Identifier: GPL-2.0 */
/* Test programs, run only through BPF_PROG_TEST_RUN by the tests (Go package
 * sensor/bpftest), never loaded by the sensor. They call the shared BPF code
 * the backends call, on inputs the test writes into a map. The tests load
 * this object with a loaded backend's maps in place of its own (policy,
 * directory caches, scratch), so the logic runs on the state the backend's
 * hooks see. */

#include "common.h"
/* the shared headers hold more than these programs call */
#pragma clang diagnostic ignored "-Wunused-function"
#include "path.h"
#include "maps.h"

static __always_inline __u32 proc_tag(struct task_struct *t, __u32 tgid)
{
	return 0;
}

#include "judge.h"

char LICENSE[] SEC("license") = "GPL";

/* test_resolve: resolves test_in.name (relative to test_in.dfd in the
 * calling task) and classifies it, like the hooks do. */
struct test_in {
	__s32 dfd;
	__u32 _pad;
	char name[DPATH_MAX];
};

struct test_out {
	__u32 len;
	__u32 trunc;
	__u32 class;
	__u32 rule;
	char path[DPATH_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct test_in);
} test_in_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct test_out);
} test_out_map SEC(".maps");

SEC("raw_tp")
int test_resolve(void *ctx)
{
	__u32 zero = 0;
	struct test_in *in = bpf_map_lookup_elem(&test_in_map, &zero);
	struct test_out *out = bpf_map_lookup_elem(&test_out_map, &zero);
	struct file_rec *r = bpf_map_lookup_elem(&frec_map, &zero);
	struct work *w = get_work();
	if (!in || !out || !r || !w)
		return 1;
	/* resolve_alt, a global function, takes the name's address as a number
	 * (the hooks pass user or kernel addresses they read): read this map
	 * value's address through the stack, so the verifier sees a number too */
	const char *name = in->name;
	__u64 addr = 0;
	bpf_probe_read_kernel(&addr, sizeof(addr), &name);
	__u32 l = resolve_name(in->dfd, (const char *)addr, 0, &r->lpm_bits, r->data);
	out->len = l;
	out->trunc = w->trunc;
	struct rule_val *rv = l ? classify(&rules, &r->lpm_bits, l) : NULL;
	out->class = rv ? rv->class : 0;
	out->rule = rv ? rv->id : 0;
	bpf_probe_read_kernel(out->path, bound(l, 4095), r->data);
	out->path[bound(l, 4095)] = 0;
	return 0;
}

/* test_judge: judge_path on a request as an adapter would make it, with its
 * paths as given (already canonical). The record goes to this object's own
 * ring buffer (events); the verdict and the taint answer to test_judge_out. */
struct test_judge_in {
	struct judge_req req;
	char path[DPATH_MAX];
	char path2[DPATH_MAX]; /* rename, link: the second path; symlink: the target as a path */
	char target[DNAME_MAX]; /* symlink: the target string */
};

struct test_judge_out {
	__s32 verdict;
	__u32 taint;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct test_judge_in);
} test_judge_in_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct test_judge_out);
} test_judge_out_map SEC(".maps");

SEC("raw_tp")
int test_judge(void *ctx)
{
	__u32 zero = 0;
	struct test_judge_in *in = bpf_map_lookup_elem(&test_judge_in_map, &zero);
	struct test_judge_out *out = bpf_map_lookup_elem(&test_judge_out_map, &zero);
	struct file_rec *r = bpf_map_lookup_elem(&frec_map, &zero);
	struct work *w = get_work();
	struct config *cfg = get_config();
	if (!in || !out || !r || !w || !cfg)
		return 1;
	struct judge_req q = in->req;
	bpf_probe_read_kernel(r->data, bound(q.len, 4095), in->path);
	bpf_probe_read_kernel(w->alt, bound(q.len2, 4095), in->path2);
	bpf_probe_read_kernel(w->in, bound(q.tlen, 255), in->target);
	out->verdict = judge_path(cfg, &q);
	out->taint = q.taint;
	return 0;
}

/* test_exec_reasons: exec_reasons (and with unlinked < 0, code_reasons) of
 * a file with the given identity and path. */
struct test_exec_in {
	__u64 dev;
	__u64 ino;
	__u32 len;
	__s32 unlinked;
	char path[DPATH_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct test_exec_in);
} test_exec_in_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} test_exec_out_map SEC(".maps");

SEC("raw_tp")
int test_exec_reasons(void *ctx)
{
	__u32 zero = 0;
	struct test_exec_in *in = bpf_map_lookup_elem(&test_exec_in_map, &zero);
	__u32 *out = bpf_map_lookup_elem(&test_exec_out_map, &zero);
	struct exec_rec *r = bpf_map_lookup_elem(&xrec_map, &zero);
	if (!in || !out || !r)
		return 1;
	r->dev = in->dev;
	r->ino = in->ino;
	__u32 l = bound(in->len, 4095);
	bpf_probe_read_kernel(r->data, l, in->path);
	r->data[l] = 0;
	*out = in->unlinked < 0 ? code_reasons(r, l) : exec_reasons(r, l, in->unlinked);
	return 0;
}

/* test_vma: the mapping at test_vma_io.addr in the calling process, as
 * bpf_find_vma finds it (under the mmap lock) and as vma_walk does (without):
 * the test holds one to the other. */
#include "vma.h"

struct test_vma_io {
	__u64 addr;
	__s64 find_err;    /* bpf_find_vma's return */
	__u64 find_vma;    /* the mapping it found, 0 for none */
	__u64 walk_vma;    /* the mapping vma_walk found, 0 for none */
	__u64 walk_file;   /* its file, 0 for none or an anonymous mapping */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct test_vma_io);
} test_vma_map SEC(".maps");

SEC("raw_tp")
int test_vma(void *ctx)
{
	__u32 zero = 0;
	struct test_vma_io *io = bpf_map_lookup_elem(&test_vma_map, &zero);
	if (!io)
		return 1;
	struct vm_area_struct *found = NULL;
	io->find_err = bpf_find_vma(bpf_get_current_task_btf(), io->addr, vma_found, &found, 0);
	io->find_vma = (__u64)found;
	struct vm_area_struct *walked = vma_walk(io->addr);
	io->walk_vma = (__u64)walked;
	io->walk_file = walked ? (__u64)BPF_CORE_READ(walked, vm_file) : 0;
	return 0;
}
