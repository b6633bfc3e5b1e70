#!/usr/bin/env bash
# Go benchmarks (bindings/go/bench_test.go): Enabled for a hot customer and for random customers
# over 1,000,000 synthetic ones, next to a map[string]map[string]bool floor, plus Limit, Allows and
# Check. The test binary is built once and run ROUNDS times (default 5), each run measuring every
# row once, so that the machine's load changes hit every row alike; the summary gives each row's
# median and best over the rounds of wall ns/op and of the benchmark thread's CPU ns/op (which
# leaves out the time spent waiting for a core on a shared machine), and allocations.
# Usage: scripts/bench-go.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/go-env.sh
rounds=${1:-5}

scripts/build-go-lib.sh --with-cli >/dev/null
out=target/go-bench
mkdir -p "$out"
(cd bindings/go && go test -c -o "../../$out/entitle.test" .)
: > "$out/raw.txt"
for ((r = 1; r <= rounds; r++)); do
  echo "round $r of $rounds" >&2
  (cd bindings/go && "../../$out/entitle.test" -test.run '^$' -test.bench . -test.benchmem \
    -test.benchtime 2s) | tee -a "$out/raw.txt" | grep -E '^Benchmark' >&2
done
python3 - "$out/raw.txt" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    if not line.startswith("Benchmark"):
        continue
    name = re.sub(r"-\d+$", "", line.split()[0])
    # Batches report per customer as well: those figures are the ones to compare.
    wall = re.search(r"\s([\d.]+) ns/customer", line) or re.search(r"\s([\d.]+) ns/op", line)
    cpu = re.search(r"([\d.]+) cpu-ns/customer", line) or re.search(r"([\d.]+) cpu-ns/op", line)
    if "ns/customer" in line:
        name += " (per customer)"
    allocs = re.search(r"(\d+) allocs/op", line)
    rows.setdefault(name, []).append((float(wall.group(1)), float(cpu.group(1)) if cpu else None,
                                      int(allocs.group(1)) if allocs else -1))
def cell(values, f):
    values = [v for v in values if v is not None]
    return f"{f(values):.1f}" if values else "-"
print("| benchmark | wall ns/op, median | best | CPU ns/op, median | best | allocs/op | rounds |")
print("|---|---:|---:|---:|---:|---:|---:|")
for name, runs in rows.items():
    wall = [r[0] for r in runs]
    cpu = [r[1] for r in runs]
    print(f"| {name} | {cell(wall, statistics.median)} | {cell(wall, min)} | "
          f"{cell(cpu, statistics.median)} | {cell(cpu, min)} | {max(r[2] for r in runs)} | {len(runs)} |")
PY
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(go version | cut -d' ' -f3), load average $(cut -d' ' -f1-3 /proc/loadavg)"
