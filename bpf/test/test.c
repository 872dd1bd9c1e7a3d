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
	__u32 l = resolve_name(in->dfd, in->name, 0, &r->lpm_bits, r->data);
	out->len = l;
	out->trunc = w->trunc;
	struct rule_val *rv = l ? classify(&rules, &r->lpm_bits, l) : NULL;
	out->class = rv ? rv->class : 0;
	out->rule = rv ? rv->id : 0;
	bpf_probe_read_kernel(out->path, bound(l, 4095), r->data);
	out->path[bound(l, 4095)] = 0;
	return 0;
}
