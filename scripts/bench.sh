#!/usr/bin/env bash
# Runs every benchmark and prints its lines; BENCHMARKS.md quotes them.
# As root, on a quiet machine: timings are compared as ratios measured in the
# same run, and the kernel's own accounting (bpf_stats) where that matters.
# VM=1 also runs the lsm benchmarks in the qemu VM (tcg: indicative only).
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
export DRIFT_REQUIRE_BPF=1
run() { echo "\$ $*"; "$@" 2>&1 | grep -E '^(Benchmark|ok|FAIL|---)' ; }
run $GO test -run '^$' -bench 'BPFCost|Overhead' -benchtime 1x ./tests/bench/
run $GO test -run '^$' -bench 'Findings|Pipeline|NATSFloor|IdleFloor' -benchtime 1x ./tests/bench/
run $GO test -run '^$' -bench Resolve -benchtime 20000x ./sensor/tracepoint/
run $GO test -run '^$' -bench Decode ./sensor/record/
run $GO test -run '^$' -bench Fill -benchtime 2000x ./sensor/proc/
run $GO test -run '^$' -bench SealApply -benchtime 1x ./sensor/agent/
run $GO test -run '^$' -bench Publish -benchtime 20000x ./sensor/publish/
run $GO test -run '^$' -bench . -benchtime 1x ./tests/e2e/
run $GO test -run '^$' -bench Fleet -benchtime 1x ./tests/fleetscale/
if [ "${VM:-}" = 1 ]; then
	make vmbench
fi
