/* SPDX-License-Identifier: GPL-2.0 */
/* The cordon flag, in one definition for the gate (gate.c) and the sensor's
 * reflex (judge.h): an array of one u32 at key 0, non-zero while the host is
 * cordoned. The responder pins the gate's (responder/gate); the sensor's
 * loader replaces its own with that pinned map when the policy asks for the
 * cordon reflex, so both programs flip and read the same flag. */
#ifndef DRIFT_CORDON_H
#define DRIFT_CORDON_H

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} gate_cordon SEC(".maps");

#endif
