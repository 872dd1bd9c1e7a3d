/* SPDX-License-Identifier: GPL-2.0 */
/* The judgement both backends share. A hook's adapter (tracepoint.c, lsm.c)
 * turns its arguments into one struct judge_req, with the path it names
 * already in the record's data; judge_path applies the policy's rules and
 * writes the one record. Also here: the record header, the reflex and the
 * verdict, taint, and the reasons an exec is drift. The test programs
 * (bpf/test) call the same functions with requests a test writes.
 *
 * The including file defines, before including this one,
 * proc_tag(task, tgid): the header's process tag (0 where the backend keeps
 * none). */
#ifndef DRIFT_JUDGE_H
#define DRIFT_JUDGE_H

#include "common.h"
#include "path.h"
#include "maps.h"

#define EPERM_ 1
#define SIGKILL_ 9
#define S_IFMT_ 00170000
#define S_IFREG_ 0100000

#include "cordon.h" /* the program that finds drift cuts the network before user space runs */

static __always_inline __u32 proc_tag(struct task_struct *t, __u32 tgid);

/* fill_hdr fills what every record's header says about the current task
 * that needs no task pointer (cgroup/bind programs have none). */
static __always_inline void fill_hdr(struct rec_hdr *h, __u16 kind, __u16 op, __u16 flags)
{
	__u64 pt = bpf_get_current_pid_tgid();
	__u64 ug = bpf_get_current_uid_gid();
	h->kind = kind;
	h->op = op;
	h->flags = flags;
	h->ktime = bpf_ktime_get_ns();
	h->tgid = pt >> 32;
	h->pid = (__u32)pt;
	h->uid = (__u32)ug;
	h->gid = ug >> 32;
	h->cgroup_id = bpf_get_current_cgroup_id();
	h->ppid = 0;
	h->ptag = 0;
	h->start = 0;
	h->pstart = 0;
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

/* fill_task adds what needs the task: the process's and the parent's starts,
 * the parent and the process tag. A start is the leader's, as procfs shows
 * it: the task may be a thread, the parent may have forked from one. */
static __always_inline void fill_task(struct rec_hdr *h)
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct task_struct *parent = BPF_CORE_READ(t, real_parent);
	h->start = BPF_CORE_READ(t, group_leader, start_boottime);
	h->ppid = BPF_CORE_READ(parent, tgid);
	h->pstart = BPF_CORE_READ(parent, group_leader, start_boottime);
	h->ptag = proc_tag(t, h->tgid);
}

/* reflex runs what the policy asks the kernel to do at detection. */
static __always_inline void reflex(struct config *cfg, struct rec_hdr *h)
{
	if (cfg->reflex & REFLEX_CORDON) {
		__u32 zero = 0, one = 1;
		if (!bpf_map_update_elem(&gate_cordon, &zero, &one, BPF_ANY))
			h->flags |= RF_CORDONED;
	}
	if ((cfg->reflex & REFLEX_KILL) && !bpf_send_signal(SIGKILL_))
		h->flags |= RF_KILLED;
}

/* verdict runs the reflex on a finding and returns the hook's answer:
 * -EPERM in enforce mode (only the lsm backend sets it). */
static __always_inline int verdict(struct config *cfg, struct rec_hdr *h)
{
	reflex(cfg, h);
	if (cfg->reflex & REFLEX_DENY) {
		h->flags |= RF_DENIED;
		return -EPERM_;
	}
	return 0;
}

/* taintable says whether a file written at data[0..len) (rule rv) becomes
 * tainted: only what could later run as part of the image, i.e. files under
 * protected or image paths, or in an exception inside the image paths
 * (CLASS_TAINT). A file written elsewhere is outside the image already, and
 * moving or linking it into the image is a finding of its own. Overwrites
 * *bits. */
static __always_inline int taintable(struct rule_val *rv, __u32 *bits, __u32 len)
{
	if (rv)
		return is_protected(rv) || (rv->class & CLASS_TAINT);
	return classify(&images, bits, len) != NULL;
}

/* taint_id marks a file written after sealing; a full set is counted, as an
 * exec could then go unjudged. */
static __always_inline void taint_id(__u64 dev, __u64 ino)
{
	struct file_id id = {.dev = dev, .ino = ino};
	__u64 now = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&taint, &id, &now, BPF_NOEXIST) == -7 /* E2BIG: full */)
		count(STAT_TAINT_FULL);
}

static __always_inline int is_regular_inode(struct inode *ino)
{
	return (BPF_CORE_READ(ino, i_mode) & S_IFMT_) == S_IFREG_;
}

/* code_reasons says why running a file's code is drift (exec, an executable
 * mapping, a script): written after sealing, or outside the image paths.
 * r holds the file's identity and its path in data[0..len). */
static __always_inline __u32 code_reasons(struct exec_rec *r, __u32 len)
{
	struct file_id id = {.dev = r->dev, .ino = r->ino};
	__u32 reasons = bpf_map_lookup_elem(&taint, &id) ? EX_TAINTED : 0;
	if (!classify(&images, &r->lpm_bits, len))
		reasons |= EX_OUTSIDE_IMAGE;
	return reasons;
}

/* exec_reasons adds what only an exec has: a file with no links left, a
 * memfd (its d_path is "/memfd:name"). */
static __always_inline __u32 exec_reasons(struct exec_rec *r, __u32 len, int unlinked)
{
	__u32 reasons = code_reasons(r, len);
	if (unlinked)
		reasons |= EX_DELETED;
	if (r->data[1] == 'm' && r->data[2] == 'e' && r->data[3] == 'm' && r->data[4] == 'f' && r->data[5] == 'd' &&
	    r->data[6] == ':')
		reasons |= EX_MEMFD;
	return reasons;
}

/* send_record finishes a record of size bytes whose header and payload are in
 * place: runs the verdict, sends it and returns the verdict. ret is the
 * record's ret field; pre: the hook runs before the operation, so the
 * record's ret is the verdict. */
static __always_inline int send_record(struct config *cfg, struct rec_hdr *h, __s64 *ret, __u64 size, __u64 max,
				       __u32 trunc, int pre)
{
	if (trunc) {
		h->flags |= RF_TRUNC;
		count(STAT_TRUNC);
	}
	int v = verdict(cfg, h);
	if (pre)
		*ret = v;
	if (size > max)
		size = max;
	h->size = size;
	emit(h, size);
	return v;
}

/* send_file sends a file record whose path (and path2, target) are in place. */
static __always_inline int send_file(struct config *cfg, struct file_rec *r, __u32 trunc, int pre)
{
	return send_record(cfg, &r->h, &r->ret,
			   offsetof(struct file_rec, data) + r->path_len + 1 + r->path2_len + 1 + r->target_len + 1,
			   sizeof(*r), trunc, pre);
}

/* send_exec sends an exec record whose path and arguments are in place. */
static __always_inline int send_exec(struct config *cfg, struct exec_rec *r, __u32 trunc, int pre)
{
	return send_record(cfg, &r->h, &r->ret, offsetof(struct exec_rec, data) + r->path_len + 1 + r->args_len + 1,
			   sizeof(*r), trunc, pre);
}

/* One mutation named by paths, as a hook saw it. The adapter puts the path
 * in the file record's data (frec_map), the second path in work.alt. */
struct judge_req {
	__s64 ret; /* the syscall's result (tracepoint); pre: replaced by the verdict */
	__u64 dev;
	__u64 ino;
	__u32 mnt_id;
	__u32 flags;
	__u32 mode;
	__u32 len;  /* the path: frec.data[0..len) */
	__u32 len2; /* rename, link: the second path, work.alt[0..len2); symlink: the
		     * target as a path (absolute targets only), judged like a second path */
	__u32 tlen; /* symlink: the target string, work.in[0..tlen) */
	__u32 trunc;
	__u16 op;
	__u16 hflags; /* header flags: RF_LEXICAL (a name resolved lexically), RF_UNRESOLVED, RF_ATTEMPT */
	__u8 always;  /* a finding whatever the rules say (mount-table changes) */
	__u8 taint;   /* in: the operation writes the file; out: it is to be tainted */
	__u8 pre;     /* the hook runs before the operation: ret is the verdict */
	__u8 sent;    /* out: a finding was sent */
};

/* req_file fills a request's identity of open file f. */
static __always_inline void req_file(struct judge_req *q, struct file *f)
{
	struct inode *ino = BPF_CORE_READ(f, f_inode);
	q->dev = BPF_CORE_READ(ino, i_sb, s_dev);
	q->ino = BPF_CORE_READ(ino, i_ino);
	q->mnt_id = mnt_id_of(BPF_CORE_READ(f, f_path.mnt));
}

/* judge_path: drift when the path is protected, or either path of a rename
 * or link (moving or linking a file into or out of protected space), or the
 * target of a symlink (a link made in an exempt place pointing into
 * protected space is a way around the prefix rules), or the file is one the
 * seal covers beyond the policy's paths (DOP_KSETTING, DOP_RAWDEV: a kernel
 * setting only unless the policy allows it). Writes and sends the record
 * and returns the verdict; 0 when benign. */
static __noinline int judge_path(struct config *cfg, struct judge_req *q)
{
	__u32 zero = 0;
	struct file_rec *r = bpf_map_lookup_elem(&frec_map, &zero);
	struct work *w = get_work();
	if (!r || !w || !q)
		return 0;
	__u32 l = q->len;
	struct rule_val *rv = l ? classify(&rules, &r->lpm_bits, l) : NULL;
	int hit = is_protected(rv) || q->always;
	__u32 rule = rv ? rv->id : 0;
	if (q->op == DOP_KSETTING) {
		if (rv && (rv->class & CLASS_KALLOW))
			return 0;
		hit = 1, rule = RULE_KERNEL_SETTING;
	} else if (q->op == DOP_RAWDEV) {
		hit = 1, rule = RULE_RAW_DEVICE;
	}
	if (q->taint)
		q->taint = taintable(rv, &r->lpm_bits, l);
	__u32 l2 = q->len2;
	if (l2) {
		struct rule_val *rv2 = classify(&rules, &w->alt_bits, l2);
		if (!hit && is_protected(rv2)) {
			hit = 1;
			rule = rv2->id;
		}
	}
	if (!hit && (q->hflags & RF_UNRESOLVED)) {
		/* a name through a /proc magic link the backend could not
		 * follow: reported, never judged by the string alone */
		hit = 1;
		rule = RULE_UNRESOLVED;
	}
	if (!hit)
		return 0;

	if (l >= DPATH_MAX)
		l = DPATH_MAX - 1;
	l = bound(l, 4095);
	r->path_len = l;
	r->data[l] = 0;
	__u32 off = bound(l + 1, 4095);
	if (q->op == DOP_SYMLINK)
		l2 = 0; /* the target's path was for judging; the record has its string */
	l2 = bound(l2, 4095);
	if (l2)
		bpf_probe_read_kernel(r->data + off, l2, w->alt);
	r->path2_len = l2;
	r->data[bound(off + l2, 8191)] = 0;
	__u32 toff = bound(off + l2 + 1, 8191);
	__u32 tl = bound(q->tlen, 255);
	if (tl)
		bpf_probe_read_kernel(r->data + toff, tl, w->in);
	r->target_len = tl;
	r->data[bound(toff + tl, 8191)] = 0;

	r->ret = q->ret;
	r->dev = q->dev;
	r->ino = q->ino;
	r->mnt_id = q->mnt_id;
	r->flags = q->flags;
	r->mode = q->mode;
	r->rule = rule;
	fill_hdr(&r->h, REC_FILE, q->op, q->hflags);
	fill_task(&r->h);
	q->sent = 1;
	return send_file(cfg, r, q->trunc, q->pre);
}

#endif
