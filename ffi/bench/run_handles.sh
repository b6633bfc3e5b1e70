#!/usr/bin/env bash
# Feature handles and batches: ns per lookup from Rust (the core, `ffi/examples/bench_handles.rs`)
# and from C through libentitle.a (`ffi/bench/bench_handles.c`), each run measuring its own floor
# (one dependent random load over 32 MiB) first; times are thread CPU time. The programs take
# turns, ROUNDS times (default 5), so that load changes hit both alike; prints medians over the
# rounds, the best round, and each row's median ratio to the floor of the same run.
# Usage: ffi/bench/run_handles.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-5}
data=target/bench-data
mkdir -p "$data"

# The library too, not only the example: the C program links target/release/libentitle.a, which
# building the example alone leaves stale.
cargo build --release --quiet -p entitle-ffi
cargo build --release --quiet -p entitle-ffi --example bench_handles
if [ ! -s "$data/synth-1m.snap" ] || [ ! -s "$data/synth-1m.ids" ]; then
  cargo build --release --quiet -p entitle-cli
  target/release/entitle synth --customers 1000000 -o "$data/synth-1m.json"
  target/release/entitle build "$data/synth-1m.json" -o "$data/synth-1m.snap"
  grep -o '{"id": "cus_[^"]*"' "$data/synth-1m.json" | cut -d'"' -f4 >"$data/synth-1m.ids"
  rm -f "$data/synth-1m.json"
fi
gcc -O2 -std=c11 -Wall -Wextra -Werror -Iffi/include -o "$data/bench_handles_static" \
  ffi/bench/bench_handles.c target/release/libentitle.a -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc

# A large snapshot's huge pages come from the kernel's background thread, seconds after loading
# (core/src/snapshot/buffer.rs): each program waits up to HUGE_WAIT seconds for them before its
# rows. HUGE_WAIT=0 measures at once.
export HUGE_WAIT=${HUGE_WAIT:-60}
out="$data/handles.txt"
: >"$out"
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
for _ in $(seq "$rounds"); do
  target/release/examples/bench_handles "$data/synth-1m.snap" "$data/synth-1m.ids" >>"$out"
  "$data/bench_handles_static" "$data/synth-1m.snap" "$data/synth-1m.ids" >>"$out"
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$out" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    who, *fields = line.split()
    runs.setdefault(who, []).append({k: float(v) for k, v in (f.split("=") for f in fields)})
rows = ["floor_dependent_load", "hot_key", "hot_handle", "hot_view_handle", "random_key",
        "random_handle", "random_batch", "unknown_handle"]
print("| row | Rust median | Rust best | Rust median / floor | C median | C best | C median / floor |")
print("|---|---:|---:|---:|---:|---:|---:|")
for row in rows:
    cells = []
    for who in ("rust", "c"):
        if row not in runs[who][0]:
            cells += ["—", "—", "—"]
            continue
        vals = [r[row] for r in runs[who]]
        ratios = [r[row] / r["floor_dependent_load"] for r in runs[who]]
        cells += [f"{statistics.median(vals):.1f}", f"{min(vals):.1f}", f"{statistics.median(ratios):.2f}"]
    print(f"| {row} | " + " | ".join(cells) + " |")
print(f"\n{len(runs['rust'])} rounds; ns per lookup; ratio = the row over the floor of the same run, median over the rounds.")
PY
