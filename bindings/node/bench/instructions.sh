#!/bin/sh
# Instructions per call of each row of instructions.js, counted by callgrind (independent of the
# machine's load): each row runs twice, with N iterations and with none, after the same warm-up;
# the difference divided by N is printed.
#
#   bindings/node/bench/instructions.sh [ROW ...]     (default: every row)
#
# Needs valgrind and the addon built (scripts/test-node.sh, or node bindings/node/build.js).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
n=${ENTITLE_ITERATIONS:-200000}
rows=${*:-"loop map napi native_enabled enabled enabled_two limit allows check handle_enabled handle_check"}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
count() {
    valgrind --tool=callgrind --callgrind-out-file="$tmp/out" \
        node --hash-seed=1 --random-seed=1 --single-threaded "$here/instructions.js" "$1" "$2" \
        >/dev/null 2>"$tmp/log" || { cat "$tmp/log" >&2; exit 1; }
    sed -n 's/^summary: //p' "$tmp/out"
}
printf '%-16s %12s\n' row instructions
for row in $rows; do
    base=$(count "$row" 0)
    full=$(count "$row" "$n")
    printf '%-16s %12.0f\n' "$row" "$(echo "($full - $base) / $n" | bc -l)"
done
