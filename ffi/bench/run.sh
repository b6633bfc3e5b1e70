#!/usr/bin/env bash
# Measures ns per entitle_engine_enabled call from C (static and shared library) next to the same
# loop calling Engine::enabled in Rust, over a synthetic 1M-customer snapshot; prints a Markdown
# table for benches/RESULTS.md ("## C ABI"). Usage: ffi/bench/run.sh [ROUNDS] (default 3 rounds of
# 7 runs each; medians over the per-round medians, and the best single run).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
data=target/bench-data
mkdir -p "$data"

cargo build --release --quiet -p entitle-ffi -p entitle-cli
cargo build --release --quiet -p entitle-ffi --example bench_enabled
if [ ! -s "$data/synth-1m.snap" ] || [ ! -s "$data/synth-1m.ids" ]; then
  target/release/entitle synth --customers 1000000 -o "$data/synth-1m.json"
  target/release/entitle build "$data/synth-1m.json" -o "$data/synth-1m.snap"
  grep -o '{"id": "cus_[^"]*"' "$data/synth-1m.json" | cut -d'"' -f4 >"$data/synth-1m.ids"
  rm -f "$data/synth-1m.json"
fi

cflags=(-O2 -std=c11 -Wall -Wextra -Werror -Iffi/include)
gcc "${cflags[@]}" -o "$data/bench_enabled_static" ffi/bench/bench_enabled.c \
  target/release/libentitle.a -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
gcc "${cflags[@]}" -o "$data/bench_enabled_shared" ffi/bench/bench_enabled.c \
  -Ltarget/release -Wl,-rpath,"$PWD/target/release" -lentitle

args=("$data/synth-1m.snap" "$data/synth-1m.ids" 7)
: >"$data/results.txt"
for _ in $(seq "$rounds"); do # interleaved, so that load changes affect all three alike
  "$data/bench_enabled_static" "${args[@]}" | sed 's/^c /c-static /' >>"$data/results.txt"
  "$data/bench_enabled_shared" "${args[@]}" | sed 's/^c /c-shared /' >>"$data/results.txt"
  target/release/examples/bench_enabled "${args[@]}" >>"$data/results.txt"
done

median() { sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
best() { sort -g | head -n 1; }
field() { grep "^$1 " "$data/results.txt" | grep -oE " $2=[0-9.]+" | cut -d= -f2 | "$3"; }
row() { # row LABEL PROGRAM
  echo "| $1 | $(field "$2" hot_ns median) | $(field "$2" hot_best_ns best) |" \
    "$(field "$2" random_ns median) | $(field "$2" random_best_ns best) |"
}
echo "| caller | hot customer, median | hot, best run | random of 1M, median | random, best run |"
echo "|---|---|---|---|---|"
row "Rust, \`Engine::enabled\`" rust
row "C, \`entitle_engine_enabled\`, libentitle.a" c-static
row "C, \`entitle_engine_enabled\`, libentitle.so" c-shared
echo
echo "ns per call; each program runs $rounds times (interleaved), 7 runs of 4M calls each; median = median of the per-program medians, best = fastest single run."
echo
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/^Mem:/ {print $2}') GiB;" \
  "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
