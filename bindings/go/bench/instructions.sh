#!/usr/bin/env bash
# Instructions per call of each row of bench/instructions (a Go program over this package),
# counted by callgrind: the same at any load of the machine. Each row runs twice, with N
# iterations and with none, after the same warm-up; the difference divided by N is printed.
# The program runs with GOMAXPROCS=1 and GODEBUG=asyncpreemptoff=1: valgrind runs one thread at a
# time and does not handle the signals Go uses to preempt goroutines.
#
#   bindings/go/bench/instructions.sh [ROW ...]     (default: every row)
#
# Needs valgrind and the library in the package directory (scripts/build-go-lib.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../../scripts/go-env.sh"
n=${ENTITLE_ITERATIONS:-200000}
rows=${*:-"loop map enabled limit allows check enabled_unknown feature_enabled feature_check"}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$here/.." && go build -o "$tmp/instructions" ./bench/instructions)
count() {
    GOMAXPROCS=1 GODEBUG=asyncpreemptoff=1 valgrind --tool=callgrind --callgrind-out-file="$tmp/out" \
        "$tmp/instructions" "$1" "$2" >/dev/null 2>"$tmp/log" || { cat "$tmp/log" >&2; exit 1; }
    sed -n 's/^summary: //p' "$tmp/out"
}
printf '%-16s %12s\n' row instructions
for row in $rows; do
    base=$(count "$row" 0)
    full=$(count "$row" "$n")
    printf '%-16s %12.0f\n' "$row" "$(echo "($full - $base) / $n" | bc -l)"
done
