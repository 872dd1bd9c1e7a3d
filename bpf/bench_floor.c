//go:build ignore
/* SPDX-License-Identifier: GPL-2.0 */
/* The floor for overhead benchmarks: an empty syscall tracepoint. Any syscall
 * tracepoint puts every syscall on the kernel's slow path; this measures that
 * cost alone, so the sensor's own cost can be told apart from it. */
#include "vmlinux.h"
#include "bpf/bpf_helpers.h"
#include "bpf/bpf_tracing.h"

char LICENSE[] SEC("license") = "GPL";

SEC("tp_btf/sys_enter")
int BPF_PROG(floor_sys_enter, struct pt_regs *regs, long id)
{
	return 0;
}
