#!/usr/bin/env bash
# Instructions per call (load-independent, unlike nanoseconds on a shared machine), counted by
# valgrind's callgrind: each kind of call runs N1 and N2 times in a fresh Ruby, and the difference of
# the two totals divided by N2 - N1 is the cost of one loop iteration (start-up cancels out).
#
#   bindings/ruby/bench/count_instructions.sh [SNAPSHOT]   (default: the 10,000-customer synth
#                                                           snapshot that bench_enabled.rb builds)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
snap=${1:-$target/ruby-bench/synth-10000.snap}
if [ ! -f "$snap" ]; then
  mkdir -p "$(dirname "$snap")"
  "$target/release/entitle" synth --customers 10000 -o "${snap%.snap}.json"
  "$target/release/entitle" build "${snap%.snap}.json" -o "$snap"
fi
customer=$("$target/release/entitle" dump "$snap" 2>/dev/null | grep -o '"id": *"cus_[^"]*"' | sed -n 5000p | cut -d'"' -f4)
[ -n "$customer" ] || customer=cus_unknown
n1=100000
n2=300000
count() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null ruby -I "$here/../lib" "$here/calls.rb" "$1" "$2" "$snap" "$customer" 2>&1 |
    grep -o 'refs: *[0-9,]*' | tr -dc '0-9'
}
echo "| call (customer $customer) | instructions per iteration | minus the loop |"
echo "|---|---:|---:|"
loop=""
for mode in loop hash enabled handle limit allows check; do
  a=$(count "$mode" $n1)
  b=$(count "$mode" $n2)
  per=$(( (b - a) / (n2 - n1) ))
  [ -n "$loop" ] || loop=$per
  echo "| $mode | $per | $(( per - loop )) |"
done
