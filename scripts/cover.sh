#!/usr/bin/env bash
# make cover: statement coverage of every package, counting the lines any
# test runs: each package's tests are built with coverage of the whole module
# (-coverpkg), and the binaries tests build and start (testenv.Build:
# driftsensor in cmd/driftsensor and tests/e2e) are built with -cover and
# write their counters to DRIFT_COVERDIR, merged with `go tool covdata`.
# Prints one line per package; generated code (*_bpfel.go) is left out, and
# sensor/lsm is marked: its tests need BPF-LSM and run in the VM (make vmtest).
# tests/peers, the peers benchmark's harness, runs that benchmark once, small.
# As root with DRIFT_REQUIRE_BPF=1, like make test. DRIFT_LOCK=FILE takes
# that flock around each privileged package's run (shared machines).
# COVER_DIR keeps the profiles (default: a temporary directory); COVER_PKGS
# limits the packages whose tests run (default ./...).
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
module=$($GO list -m)
out=${COVER_DIR:-$(mktemp -d -t driftcover.XXXXXX)}
mkdir -p "$out/bin" "$out/pkg"
export DRIFT_COVERDIR="$out/bin" # see testenv.Build
# The privileged packages: their tests load BPF or build test beds.
privileged=$(grep -rlE --include='*_test.go' 'testenv\.RequireBPF|hooktest\.NewBed|testbed\.New\(' . | xargs -n1 dirname | sort -u)

failed=()
for pkg in $($GO list ${COVER_PKGS:-./...}); do
	name=${pkg#"$module"}; name=${name#/}; name=${name:-.}
	prof="$out/pkg/$(echo "$name" | tr / _).txt"
	lock=()
	if [ -n "${DRIFT_LOCK:-}" ] && grep -qx "./$name" <<<"$privileged"; then
		lock=(flock "$DRIFT_LOCK")
	fi
	extra=()
	if [ "$name" = tests/peers ]; then
		# Its code is the peers benchmark's harness: run it once, small (it
		# fails when a monitor misses what it must see).
		extra=(-bench='^BenchmarkPeers$' -benchtime=1x)
	fi
	if ! PEERS_FAST=1 PEERS_ROUNDS=1 "${lock[@]}" $GO test -p 1 -count=1 -timeout 20m -covermode=atomic -coverpkg="$module/..." \
		"${extra[@]}" -coverprofile="$prof" "$pkg" >"$prof.log" 2>&1; then
		failed+=("$name")
		echo "cover: tests of $name failed (output: $prof.log)" >&2
	fi
done
if compgen -G "$out/bin/covmeta.*" >/dev/null; then
	$GO tool covdata textfmt -i="$out/bin" -o "$out/bin.txt"
fi

# Merge: a block counts as run when any profile ran it.
printf "%-45s %8s %8s %7s\n" package stmts covered percent
cat "$out"/pkg/*.txt "$out"/bin.txt 2>/dev/null | grep -v '^mode:' | grep -v '_bpfel\.go:' |
	awk -v mod="$module/" -v lsm="$module/sensor/lsm" '
	{ if (!($1 in stmts)) { stmts[$1] = $2; p = $1; sub(/:.*/, "", p); sub(/\/[^\/]*$/, "", p); pkgOf[$1] = p }
	  if ($3 > 0) hit[$1] = 1 }
	END {
	  for (b in stmts) { p = pkgOf[b]; total[p] += stmts[b]; if (b in hit) cov[p] += stmts[b] }
	  for (p in total) {
	    pct = 100 * cov[p] / total[p]; name = p; sub(mod, "", name)
	    note = ""
	    if (p == lsm) note = "  (BPF-LSM: measured in the VM, make vmtest)"
	    else if (pct < 70) note = "  < 70%"
	    printf "%-45s %8d %8d %6.1f%%%s\n", name, total[p], cov[p], pct, note
	    all += total[p]; allc += cov[p]
	  }
	  printf "~total %d %d\n", all, allc
	}' | sort | awk '/^~total/ { printf "%-45s %8d %8d %6.1f%%\n", "total", $2, $3, 100 * $3 / $2; next } { print }'
echo "cover: profiles in $out"
if [ ${#failed[@]} -gt 0 ]; then
	echo "cover: tests failed in: ${failed[*]}" >&2
	exit 1
fi
