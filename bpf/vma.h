/* SPDX-License-Identifier: GPL-2.0 */
/* The mapping at an address of the current process, for the tracepoint
 * backend's judgement of mprotect (the lsm hook is handed the mapping). */
#ifndef DRIFT_VMA_H
#define DRIFT_VMA_H

#include "common.h"
#include "maps.h"

#define EBUSY_ 16
#define MAPLE_NODE_MASK_ 255UL
/* levels of the deepest tree vm.max_map_count's default (65530 mappings)
 * allows, every node at its least fill, is 9 */
#define MAPLE_DEPTH_MAX_ 10

static long vma_found(struct task_struct *task, struct vm_area_struct *vma, struct vm_area_struct **out)
{
	*out = vma;
	return 0;
}

/* maple_read reads the word at off in a node, or 0 if it cannot. */
static __always_inline unsigned long maple_read(unsigned long node, unsigned long off)
{
	unsigned long v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), (void *)(node + off));
	return v;
}

/* vma_walk: the mapping holding addr in the current process, or NULL, read
 * from its maple tree of mappings without the mmap lock. The kernel keeps
 * this tree readable under RCU, in which the program runs, for its own
 * lockless page faults; a node replaced meanwhile still holds the mappings
 * as they were, and the mapping found must be this process's and hold addr,
 * or none is. The walk is lib/maple_tree.c's mtree_range_walk: in each node,
 * the first pivot at or above addr names the child (the last child, when
 * none is, ends at the node's own end). */
static __noinline struct vm_area_struct *vma_walk(__u64 addr)
{
	struct mm_struct *mm = bpf_get_current_task_btf()->mm;
	if (!mm)
		return NULL;
	unsigned long e = (unsigned long)BPF_CORE_READ(mm, mm_mt.ma_root), max = ~0UL;
	if ((e & 3) != 2) /* the root is a single entry, not a node (xa_is_node) */
		return NULL;
	for (int depth = 0; depth < MAPLE_DEPTH_MAX_; depth++) {
		if (e <= 4096)
			return NULL;
		struct maple_node *n = (struct maple_node *)(e & ~MAPLE_NODE_MASK_);
		unsigned long node = (unsigned long)n, piv, slot;
		__u32 type = (e >> 3) & 0xf, end, npiv;
		if (type == maple_arange_64) {
			piv = bpf_core_field_offset(n->ma64.pivot);
			slot = bpf_core_field_offset(n->ma64.slot);
			npiv = 9;
			end = BPF_CORE_READ(n, ma64.meta.end);
		} else if (type == maple_range_64 || type == maple_leaf_64) {
			piv = bpf_core_field_offset(n->mr64.pivot);
			slot = bpf_core_field_offset(n->mr64.slot);
			npiv = 15;
			/* the data's end: in the metadata unless the last pivot is set */
			unsigned long last = maple_read(node, piv + 14 * 8);
			end = !last ? BPF_CORE_READ(n, mr64.meta.end) : last == max ? 14 : 15;
		} else {
			return NULL;
		}
		if (end > npiv)
			end = npiv;
		__u32 i = 0;
		for (; i < 15 && i < end; i++) {
			unsigned long p = maple_read(node, piv + i * 8);
			if (p >= addr) {
				max = p;
				break;
			}
		}
		e = maple_read(node, slot + i * 8);
		if (type != maple_leaf_64)
			continue;
		struct vm_area_struct *vma = (struct vm_area_struct *)e;
		if (!vma || BPF_CORE_READ(vma, vm_mm) != mm || BPF_CORE_READ(vma, vm_start) > addr ||
		    BPF_CORE_READ(vma, vm_end) <= addr)
			return NULL;
		return vma;
	}
	return NULL;
}

/* mapped_vma: the mapping holding addr in the current process, or NULL
 * (counted: the caller's judgement is lost). bpf_find_vma only tries the
 * process's mmap lock, and fails while any thread of the process holds or
 * awaits it for writing, as each mmap, munmap or mprotect does: a process
 * changing its mappings in a loop on one thread would have the mprotects of
 * its others go unjudged. Then the tree is walked without the lock. */
static __always_inline struct vm_area_struct *mapped_vma(__u64 addr)
{
	struct vm_area_struct *vma = NULL;
	if (bpf_find_vma(bpf_get_current_task_btf(), addr, vma_found, &vma, 0) == -EBUSY_) {
		count(STAT_VMA_WALKED);
		vma = vma_walk(addr);
	}
	if (!vma) /* unmapped by another thread since */
		count(STAT_VMA_UNFOUND);
	return vma;
}

#endif
