//go:build ignore
/* SPDX-License-Identifier: GPL-2.0 */
/* No program: the record format of common.h, compiled so bpf2go can emit its
 * enums and structs for sensor/record (the one Go definition of the format),
 * and so the layout test can compare the backends' objects with it. */

#include "common.h"

char LICENSE[] SEC("license") = "GPL";

const struct rec_hdr *_rec_hdr __attribute__((unused));
const struct file_rec *_file_rec __attribute__((unused));
const struct exec_rec *_exec_rec __attribute__((unused));
const struct net_rec *_net_rec __attribute__((unused));
const enum rec_kind *_rec_kind __attribute__((unused));
const enum rec_op *_rec_op __attribute__((unused));
const enum rec_flag *_rec_flag __attribute__((unused));
const enum exec_reason *_exec_reason __attribute__((unused));
const enum seal_rule *_seal_rule __attribute__((unused));
