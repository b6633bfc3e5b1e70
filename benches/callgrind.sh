#!/usr/bin/env bash
# Instructions per lookup, counted by callgrind (independent of the machine's load): runs
# `ffi/examples/callgrind_lookups.rs` once per row under `valgrind --tool=callgrind`, collecting
# only inside its `measured` function, and prints the collected instructions divided by the calls.
# Usage: benches/callgrind.sh [ROW...]   (default: every row; CALLS=N to change the 200000 calls)
# With ANNOTATE=1 it also keeps each row's callgrind.out.ROW under target/callgrind/ (recorded
# with --dump-instr=yes, for callgrind_annotate).
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${CALLS:-200000}
rows=("$@")
if [ ${#rows[@]} -eq 0 ]; then
  rows=(hot_key hot_handle hot_view_handle c_hot_key c_hot_handle random_key random_handle
    random_batch unknown_key unknown_handle)
fi
cargo build --release --quiet -p entitle-ffi --example callgrind_lookups
out=target/callgrind
mkdir -p "$out"
printf '| row | instructions per lookup |\n|---|---:|\n'
for row in "${rows[@]}"; do
  file="$out/callgrind.out.$row"
  valgrind --tool=callgrind --collect-atstart=no --dump-instr=yes \
    --toggle-collect='*callgrind_lookups*measured*' --callgrind-out-file="$file" \
    target/release/examples/callgrind_lookups "$row" "$calls" >/dev/null 2>"$out/valgrind.$row.log" || {
    cat "$out/valgrind.$row.log" >&2
    exit 1
  }
  total=$(awk '/^summary:/ {print $2}' "$file")
  awk -v r="$row" -v t="$total" -v n="$calls" 'BEGIN { printf "| %s | %.1f |\n", r, t / n }'
  if [ "${ANNOTATE:-0}" != 1 ]; then rm -f "$file"; fi
done
