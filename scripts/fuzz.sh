#!/usr/bin/env bash
# make fuzz: runs every fuzz target of the module (every `func FuzzX` in a
# _test.go file, found afresh each time) for FUZZTIME each (default 10s), one
# after the other, and fails on the first target that finds a failing input
# (go test saves it under the package's testdata/fuzz/ to reproduce).
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}
targets=$(grep -rl --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]*\(' . | sort)
[ -n "$targets" ] || { echo "fuzz: no fuzz targets found" >&2; exit 1; }
n=0
for file in $targets; do
	pkg=./$(dirname "${file#./}")
	for fn in $(grep -oE '^func Fuzz[A-Za-z0-9_]*' "$file" | cut -d' ' -f2); do
		echo "fuzz: $pkg $fn ($FUZZTIME)"
		$GO test -run='^$' -fuzz="^$fn\$" -fuzztime="$FUZZTIME" "$pkg"
		n=$((n + 1))
	done
done
echo "fuzz: $n targets passed"
