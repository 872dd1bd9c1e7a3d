#!/usr/bin/env bash
# idle.sh [SENSOR...]: what an idle sensor costs (BENCHMARKS.md, the idle
# target: <= 0.1 % of a core, <= 40 MB RSS). Each SENSOR binary (default
# bin/driftsensor) runs in the default mode (embedded NATS server, --seal,
# --stdout=false) scoped to an empty cgroup made here, one at a time (two
# sensors on one kernel would see each other's programs as kernel-state
# changes). A run counts only once the sensor is sealed: its log says the
# sealed state was applied and driftctl status sees a heartbeat saying
# "sealed". Then, from SETTLE seconds after the ready file, it reads the
# process's user + system ticks (/proc/PID/stat) over WINDOW seconds, and
# VmRSS at the end. ROUNDS rounds (default 3) alternate the binaries' order,
# so the machine's drift hits each alike. One line per run (binary, % of a
# core by ticks, RSS MB, % of a core by schedstat, threads at start/end,
# context switches/s), then each binary's medians.
# As root; it holds the privileged-test lock for the whole run: keep
# ROUNDS x binaries x (SETTLE + WINDOW + ~8 s) within a hold's 10 minutes.
set -euo pipefail
self=$(readlink -f "$0") # for the re-run under the lock, from the repository's top
bins=()
for b in "$@"; do # as given from here, once in the repository's top
	case "$b" in /*) ;; *) b=$PWD/$b ;; esac
	bins+=("$b")
done
set -- "${bins[@]}"
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
settle=${SETTLE:-5}
window=${WINDOW:-30}
for v in "$rounds" "$settle" "$window"; do
	case "$v" in *[!0-9]* | "" | 0) echo "idle.sh: ROUNDS, SETTLE and WINDOW want whole numbers of at least 1 (got $v)" >&2 && exit 2 ;; esac
done
[ "$#" -gt 0 ] || set -- bin/driftsensor
for b in "$@"; do
	[ -x "$b" ] || { echo "idle.sh: $b is not an executable (make build makes bin/driftsensor)" >&2 && exit 2; }
done
ctl=${DRIFTCTL:-bin/driftctl}
[ -x "$ctl" ] || { echo "idle.sh: $ctl is not an executable: make build, or set DRIFTCTL" >&2 && exit 2; }
if [ "$(id -u)" != 0 ]; then
	echo "idle.sh: run as root (the sensor loads eBPF programs)" >&2
	exit 2
fi
cgroot=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
[ -n "$cgroot" ] || { echo "idle.sh: no cgroup v2 hierarchy mounted" >&2 && exit 2; }
hz=$(getconf CLK_TCK)
if [ -z "${IDLE_LOCKED:-}" ]; then # every run under one hold: all binaries see the same machine
	IDLE_LOCKED=1 exec flock /tmp/driftsensor-priv.lock "$self" "$@"
fi

tmp=$(mktemp -d /tmp/driftidle.XXXXXX)
scope=/drift-idle-$$
pid=
cleanup() {
	if [ -n "$pid" ]; then
		kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	fi
	rmdir "$cgroot$scope" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap "exit 1" INT TERM
mkdir "$cgroot$scope" # empty: nothing in the sealed scope moves

# ticks PID: user + system ticks of every thread of PID (fields 14 and 15,
# counted after the command name, which may hold spaces).
ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

# runns PID: nanoseconds on a CPU of PID's threads (schedstat, exact where
# the ticks are sampled); a thread that exits takes its share with it, so
# the thread count is checked too.
runns() { cat /proc/"$1"/task/*/schedstat | awk '{ s += $1 } END { printf "%d %d\n", s, NR }'; }

# switches PID: context switches of PID's threads, about one per wakeup.
switches() { cat /proc/"$1"/task/*/status | awk '/ctxt_switches/ { s += $2 } END { print s }'; }

# measure N BIN: one run; prints "BIN cpu% rssMB".
measure() {
	local n=$1 bin=$2 state=$tmp/state-$1 ready=$tmp/ready-$1 log=$tmp/log-$1
	"$bin" --seal --scope-cgroup "$scope" --stdout=false --embedded-port 0 --host "idle$n" \
		--state-dir "$state" --ready-file "$ready" 2>"$log" &
	pid=$!
	for _ in $(seq 600); do
		[ -s "$ready" ] && break
		kill -0 "$pid" 2>/dev/null || { cat "$log" >&2 && echo "idle.sh: $bin exited before it was ready" >&2 && return 1; }
		sleep 0.1
	done
	[ -s "$ready" ] || { cat "$log" >&2 && echo "idle.sh: $bin not ready after 60 s" >&2 && return 1; }
	grep -q '"state":"sealed".*"message":"host state applied"' "$log" ||
		{ cat "$log" >&2 && echo "idle.sh: $bin did not log the sealed state" >&2 && return 1; }
	url=$(sed -n 's/.*"url":"\([^"]*\)".*"message":"embedded NATS server.*/\1/p' "$log")
	if [ -n "$url" ]; then # without NATS (a wrapper adding --nats off) the log is all there is
		st=$(DRIFT_STATE_DIR=$state "$ctl" status --json --nats "$url" --nats-nkey "$state/creds/admin.nk" --wait 2.5s)
		echo "$st" | grep -q '"state": "sealed"' ||
			{ echo "$st" >&2 && echo "idle.sh: driftctl status does not see idle$n sealed" >&2 && return 1; }
	fi
	sleep "$settle"
	t0=$(ticks "$pid")
	read -r ns0 th0 < <(runns "$pid")
	cs0=$(switches "$pid")
	sleep "$window"
	t1=$(ticks "$pid")
	read -r ns1 th1 < <(runns "$pid")
	cs1=$(switches "$pid")
	rss=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$pid/status")
	kill "$pid"
	wait "$pid" || true
	pid=
	awk -v b="$bin" -v d=$((t1 - t0)) -v hz="$hz" -v w="$window" -v r="$rss" -v ns=$((ns1 - ns0)) -v th="$th0/$th1" -v cs=$((cs1 - cs0)) \
		'BEGIN { printf "%s %.3f %.1f %.3f %s %.1f\n", b, d / hz / w * 100, r / 1024, ns / 1e9 / w * 100, th, cs / w }'
}

echo "idle.sh: commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- 2>/dev/null || echo -dirty), $(date -u '+%F %H:%M UTC'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), ${window} s from ${settle} s after ready, ticks of $((1000 / hz)) ms"
n=0
out=$tmp/out
for r in $(seq "$rounds"); do
	bins=("$@")
	if [ $((r % 2)) = 0 ]; then # reversed every other round
		for ((i = 0, j = ${#bins[@]} - 1; i < j; i++, j--)); do
			t=${bins[i]} bins[i]=${bins[j]} bins[j]=$t
		done
	fi
	for b in "${bins[@]}"; do
		n=$((n + 1))
		measure "$n" "$b" >>"$out" # not in a pipe: cleanup must see $pid
		tail -n 1 "$out"
	done
done
# median FIELD BIN: the median of one column of BIN's runs.
median() { awk -v b="$2" -v f="$1" '$1 == b { print $f }' "$out" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "median of $rounds rounds:"
for b in "$@"; do
	echo "$b $(median 2 "$b") % of a core ($(median 4 "$b") % by schedstat), $(median 3 "$b") MB RSS, $(median 6 "$b") context switches/s"
done
