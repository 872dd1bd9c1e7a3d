#!/usr/bin/env bash
# make bench-peers: driftsensor (--nats off and the default embedded NATS) next
# to auditd and inotifywait, on the same workloads, in one run (tests/peers,
# BenchmarkPeers). Prints the tables of BENCHMARKS.md's "Peers" section and
# writes the plot (PEERS_PLOT, default docs/bench-peers.svg).
# As root, on a quiet machine. PEERS_FAST=1: small counts and 2 rounds, for
# development; PEERS_ROUNDS=N: rounds; PEERS_MONITORS=auditd,...: a subset.
# Whatever happens, it leaves the kernel's audit as a machine without auditd
# has it: auditd stopped, no rules, auditing off, and `auditctl -a never,task`
# so that new processes stay off the audit path.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
if [ "$(id -u)" != 0 ]; then
	echo "bench-peers: run as root (it loads eBPF programs and starts auditd)" >&2
	exit 2
fi
for tool in auditd auditctl inotifywait tar chattr; do
	command -v "$tool" >/dev/null || { echo "bench-peers: $tool is not installed: run scripts/setup.sh" >&2; exit 2; }
done
running=$(auditctl -s | awk '$1 == "pid" { print $2 }')
if [ "${running:-0}" != 0 ]; then
	echo "bench-peers: an audit daemon (pid $running) is running: stop it first; the benchmark starts its own" >&2
	exit 2
fi

restore() {
	# The benchmark stops its auditd itself; this is for a run that was
	# killed. Since none ran before (checked above), the registered one is ours.
	pid=$(auditctl -s | awk '$1 == "pid" { print $2 }')
	if [ "${pid:-0}" != 0 ]; then
		kill "$pid" 2>/dev/null || true
	fi
	auditctl -D >/dev/null
	auditctl -e 0 >/dev/null
	auditctl -a never,task
	# The benchmark's protected directories (tmpfs on /opt/driftpeers*), if a killed run left one.
	awk '$2 ~ "^/opt/driftpeers" { print $2 }' /proc/self/mounts | while read -r m; do
		umount -l "$m" && rmdir "$m"
	done
	echo "bench-peers: audit left as found: $(auditctl -s | tr '\n' ' ' | cut -c1-60)...; rules: $(auditctl -l | tr '\n' ' ')"
}
trap restore EXIT

export DRIFT_REQUIRE_BPF=1
export PEERS_SENSOR=$PWD/bin/driftsensor
export PEERS_PLOT=${PEERS_PLOT:-$PWD/docs/bench-peers.svg}
mkdir -p "$(dirname "$PEERS_PLOT")"
echo "bench-peers: commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- 2>/dev/null || echo -dirty), $(date -u '+%F %H:%M UTC'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), kernel $(uname -r)"
$GO test -count=1 -run '^$' -bench '^BenchmarkPeers$' -benchtime 1x -timeout 90m -v ./tests/peers/
