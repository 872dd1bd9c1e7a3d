#!/usr/bin/env bash
# make stress: runs the tests of every privileged package (those whose tests
# call testenv.RequireBPF or build a test bed) STRESS_RUNS times (default 5)
# with both CPUs kept busy by two busy loops this script starts, and stops by
# pid after each package and on any exit. Prints each test that failed and in
# how many runs; exits 1 if any did. A test that fails only under load has a
# bug (a race with the workload, a fixed window): fix it, do not retry it.
# As root with DRIFT_REQUIRE_BPF=1. DRIFT_LOCK=FILE holds that flock for each
# package's run, load included (machines shared by several runs).
# STRESS_PKGS overrides the package list (by default tests/bench, benchmarks
# only, and tests/pkg, which installs the .deb packages, are left out).
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
RUNS=${STRESS_RUNS:-5}
if [ -n "${STRESS_PKGS:-}" ]; then
	pkgs=$STRESS_PKGS
else
	pkgs=$(grep -rlE --include='*_test.go' 'testenv\.RequireBPF|hooktest\.NewBed|testbed\.New\(' . |
		xargs -n1 dirname | sort -u | grep -vE '^./tests/(bench|pkg)$')
fi
out=$(mktemp -d -t driftstress.XXXXXX)

loops=()
load_start() {
	for _ in 1 2; do
		(while :; do :; done) &
		loops+=($!)
	done
}
load_stop() {
	for pid in "${loops[@]}"; do
		kill "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	loops=()
}
trap load_stop EXIT
trap 'load_stop; exit 130' INT TERM

# Build every test binary first, without load, so runs time tests only.
$GO test -count=1 -run '^$' $pkgs >/dev/null || { echo "stress: the tests do not build" >&2; exit 1; }

for run in $(seq 1 "$RUNS"); do
	for pkg in $pkgs; do
		log="$out/run$run-$(echo "${pkg#./}" | tr / _).json"
		if [ -n "${DRIFT_LOCK:-}" ]; then
			exec 9>>"$DRIFT_LOCK"
			flock 9
		fi
		load_start
		$GO test -count=1 -p 1 -timeout 20m -json "$pkg" >"$log" 2>&1
		status=$?
		load_stop
		[ -n "${DRIFT_LOCK:-}" ] && flock -u 9
		fails=$(grep '"Action":"fail"' "$log" | grep -o '"Test":"[^"]*"' | cut -d'"' -f4 | grep -v '/' || true)
		if [ "$status" -ne 0 ] && [ -z "$fails" ]; then
			fails="PACKAGE(build,panic,timeout)"
		fi
		for f in $fails; do
			echo "${pkg#./} $f" >>"$out/failures"
		done
		echo "stress: run $run/$RUNS ${pkg#./}: $([ "$status" -eq 0 ] && echo ok || echo "FAIL ($(echo $fails))")"
	done
done

if [ -s "$out/failures" ]; then
	echo "stress: tests that failed (runs failed of $RUNS); logs in $out:"
	sort "$out/failures" | uniq -c | sort -rn
	exit 1
fi
echo "stress: every test passed $RUNS times in $RUNS under load"
rm -rf "$out"
