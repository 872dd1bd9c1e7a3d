#!/bin/sh
# ab.sh A B [ROUNDS]: what a change costs in the kernel, before (commit A) and
# after (commit B). Builds this package's test binary at both commits (in git
# worktrees under a temporary directory), then, holding the privileged-test
# lock once, runs BenchmarkOverhead and BenchmarkBPFCost with each binary in
# turn, ROUNDS times (default 3), alternating which goes first so drift over
# the run hits both alike. Prints each benchmark metric's median over the
# rounds for A and for B. As root; DRIFT_BENCH_ROUNDS sets BenchmarkOverhead's
# own rounds (default 9).
set -eu
a=${1:?usage: ab.sh COMMIT-A COMMIT-B [ROUNDS]}
b=${2:?usage: ab.sh COMMIT-A COMMIT-B [ROUNDS]}
rounds=${3:-3}
case "$rounds" in *[!0-9]* | "" | 0) echo "ab.sh: ROUNDS=$rounds: want a count of at least 1" >&2 && exit 2 ;; esac
root=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d /tmp/driftbench-ab.XXXXXX)
cleanup() {
	for l in A B; do git -C "$root" worktree remove --force "$tmp/$l" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap "exit 1" INT TERM
for l in A B; do
	c=$a
	[ "$l" = B ] && c=$b
	git -C "$root" worktree add -q --detach "$tmp/$l" "$c" || { echo "ab.sh: no commit $c" >&2 && exit 2; }
	(cd "$tmp/$l" && go test -c -o "$tmp/$l.test" ./tests/bench/) || { echo "ab.sh: building tests/bench at $c failed" >&2 && exit 1; }
done
echo "ab.sh: A = $(git -C "$root" log -1 --format='%h %s' "$a")"
echo "ab.sh: B = $(git -C "$root" log -1 --format='%h %s' "$b")"
# One lock hold for every round: both binaries see the same machine.
export tmp rounds
flock /tmp/driftsensor-priv.lock sh -c '
	for r in $(seq 1 "$rounds"); do
		order="A B"
		[ $((r % 2)) = 0 ] && order="B A"
		for l in $order; do
			(cd "$tmp" && DRIFT_REQUIRE_BPF=1 "$tmp/$l.test" -test.run "^$" -test.bench "^Benchmark(Overhead|BPFCost)$" -test.benchtime 1x) |
				sed -n "s/^Benchmark/$l Benchmark/p"
		done
	done' >"$tmp/out"
# "L BenchmarkX/sub-N 1 v1 unit1 v2 unit2 ...": the median of each
# (benchmark, unit, label) over the rounds, one line each.
awk '{ for (i = 4; i < NF; i += 2) print $2, $(i + 1), $1, $i }' "$tmp/out" | sort -k1,1 -k2,2 -k3,3 -k4,4g |
	awk 'function flush() { if (n) printf "%-36s %-26s %s %s\n", k1, k2, k3, v[int((n + 1) / 2)] }
	$1 != k1 || $2 != k2 || $3 != k3 { flush(); k1 = $1; k2 = $2; k3 = $3; n = 0 }
	{ v[++n] = $4 } END { flush() }'
