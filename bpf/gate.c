//go:build ignore
/* SPDX-License-Identifier: GPL-2.0 */
/* The cordon gate: a tc program on every interface of a host, ingress and
 * egress. While the flag in gate_cordon is set it drops every packet except
 * ARP, IPv6 neighbour discovery and traffic with a peer in the management
 * allowlist (an LPM trie of CIDRs, each with optional ports). While it is
 * clear, the only cost is one array lookup.
 *
 * gate_cordon is pinned in bpffs so that user space (the sensor's ctl
 * handler) and the sensor's in-kernel reflex can flip the same flag.
 * Passing returns TC_ACT_UNSPEC, which is TCX_NEXT under tcx: programs after
 * this one still run. */

#include "vmlinux.h"
#include "bpf/bpf_helpers.h"
#include "bpf/bpf_endian.h"

char LICENSE[] SEC("license") = "GPL";

#define ETH_P_IP_ 0x0800
#define ETH_P_IPV6_ 0x86DD
#define ETH_P_ARP_ 0x0806
#define ETH_HLEN_ 14
#define TC_ACT_UNSPEC_ (-1)
#define TC_ACT_SHOT_ 2
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
#define IPPROTO_ICMPV6_ 58
#define IP_OFFSET_ 0x1fff
#define NDISC_FIRST 133 /* router solicitation .. redirect */
#define NDISC_LAST 137

#define GATE_MAX_PORTS 8

/* Keys hold IPv6 addresses; IPv4 ones are mapped (::ffff:a.b.c.d, prefix + 96). */
struct gate_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* An allowlist entry: nports == 0 allows every port; otherwise the packet's
 * local or remote port must be one of ports (TCP and UDP only). */
struct gate_rule {
	__u16 ports[GATE_MAX_PORTS];
	__u32 nports;
};

enum gate_counter {
	GATE_DROP_IN = 0,
	GATE_DROP_OUT,
	GATE_PASS_IN, /* allowed while cordoned */
	GATE_PASS_OUT,
	GATE_COUNTERS,
};

#include "cordon.h"

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 256);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct gate_key);
	__type(value, struct gate_rule);
} gate_allow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GATE_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} gate_counters SEC(".maps");

/* ifindex -> 1 for interfaces without an Ethernet header (tun, wireguard). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u8);
} gate_l3dev SEC(".maps");

static __always_inline void count(__u32 which)
{
	__u64 *c = bpf_map_lookup_elem(&gate_counters, &which);
	if (c)
		*c += 1;
}

static __always_inline bool ports_match(const struct gate_rule *r, __u16 lport, __u16 rport)
{
	if (r->nports == 0)
		return true;
#pragma unroll
	for (int i = 0; i < GATE_MAX_PORTS; i++) {
		if (i >= r->nports)
			break;
		if (r->ports[i] && (r->ports[i] == lport || r->ports[i] == rport))
			return true;
	}
	return false;
}

/* allowed reports whether a cordoned host may exchange this packet. */
static __always_inline bool allowed(struct __sk_buff *skb, bool egress)
{
	__u16 proto = bpf_ntohs(skb->protocol);
	__u32 l3 = ETH_HLEN_;
	__u32 ifindex = skb->ifindex;
	if (bpf_map_lookup_elem(&gate_l3dev, &ifindex))
		l3 = 0;

	struct gate_key key = { .prefixlen = 128 };
	__u8 l4proto;
	__u32 l4;
	bool first_frag = true;

	if (proto == ETH_P_ARP_)
		return true;
	if (proto == ETH_P_IP_) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, l3, &ip, sizeof(ip)))
			return false;
		key.addr[10] = 0xff;
		key.addr[11] = 0xff;
		__u32 peer = egress ? ip.daddr : ip.saddr;
		__builtin_memcpy(&key.addr[12], &peer, 4);
		l4proto = ip.protocol;
		l4 = l3 + ip.ihl * 4;
		first_frag = (bpf_ntohs(ip.frag_off) & IP_OFFSET_) == 0;
	} else if (proto == ETH_P_IPV6_) {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, l3, &ip6, sizeof(ip6)))
			return false;
		if (egress)
			__builtin_memcpy(key.addr, &ip6.daddr, 16);
		else
			__builtin_memcpy(key.addr, &ip6.saddr, 16);
		l4proto = ip6.nexthdr; /* extension headers: no ports seen */
		l4 = l3 + sizeof(ip6);
		if (l4proto == IPPROTO_ICMPV6_) {
			__u8 type;
			if (!bpf_skb_load_bytes(skb, l4, &type, 1) && type >= NDISC_FIRST && type <= NDISC_LAST)
				return true;
		}
	} else {
		return false;
	}

	struct gate_rule *r = bpf_map_lookup_elem(&gate_allow, &key);
	if (!r)
		return false;
	if (r->nports == 0)
		return true;
	if (!first_frag || (l4proto != IPPROTO_TCP_ && l4proto != IPPROTO_UDP_))
		return false;
	__u16 p[2]; /* source, destination: the same offsets in TCP and UDP */
	if (bpf_skb_load_bytes(skb, l4, p, sizeof(p)))
		return false;
	__u16 sport = bpf_ntohs(p[0]), dport = bpf_ntohs(p[1]);
	return egress ? ports_match(r, sport, dport) : ports_match(r, dport, sport);
}

static __always_inline int gate(struct __sk_buff *skb, bool egress)
{
	__u32 zero = 0;
	__u32 *on = bpf_map_lookup_elem(&gate_cordon, &zero);
	if (!on || !*on)
		return TC_ACT_UNSPEC_;
	if (allowed(skb, egress)) {
		count(egress ? GATE_PASS_OUT : GATE_PASS_IN);
		return TC_ACT_UNSPEC_;
	}
	count(egress ? GATE_DROP_OUT : GATE_DROP_IN);
	return TC_ACT_SHOT_;
}

SEC("tc")
int gate_ingress(struct __sk_buff *skb)
{
	return gate(skb, false);
}

SEC("tc")
int gate_egress(struct __sk_buff *skb)
{
	return gate(skb, true);
}
