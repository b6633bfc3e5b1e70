"""Nanoseconds per `Engine.enabled` call from Python, next to a plain dict lookup as the floor.

Usage (from the repository root, with the package installed, e.g. by scripts/test-python.sh):

    target/python-venv/bin/python bindings/python/bench/bench_enabled.py [--customers N]

Builds (once) a synthetic catalog of N customers (default 1,000,000) with `entitle synth` and its
snapshot with `entitle build` under target/python-bench/, then measures with timeit, reporting
the median and the best of several runs:

- a hot customer (the same id every call: the CPU caches hold everything);
- random customers over the whole snapshot (each call misses the caches, as in production);
- the same two loops over a dict {customer: {feature: bool}} (the floor: what a Python
  program pays to look a value up in memory without crossing into native code);
- limit(), allows() and check() for the hot customer;
- the same through a feature handle (`sso = engine.feature("sso")`: `sso.enabled(c)`), and the
  batch call `sso.enabled_many(customers)` over the random ids (per customer).

Each figure is per call and includes the loop's own cost, the same for every row of a group;
"loop alone" shows it for the random rows (it includes touching each id's str object, which is
itself a cache miss).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import timeit
from pathlib import Path

import entitle

REPO = Path(__file__).resolve().parents[3]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
ENTITLE = TARGET / "release" / "entitle"


def snapshot(customers: int) -> tuple[Path, Path]:
    out = TARGET / "python-bench"
    out.mkdir(parents=True, exist_ok=True)
    catalog, snap = out / f"synth-{customers}.json", out / f"synth-{customers}.snap"
    if not snap.exists():
        print(f"generating {customers} customers into {out} ...", file=sys.stderr)
        subprocess.run([str(ENTITLE), "synth", "--customers", str(customers), "-o", str(catalog)],
                       check=True)
        subprocess.run([str(ENTITLE), "build", str(catalog), "-o", str(snap)], check=True)
    return catalog, snap


def customer_ids(catalog: Path) -> list[str]:
    pattern = re.compile(r'\{"id": "(cus_[^"]*)"')
    ids = []
    with catalog.open(encoding="utf-8") as f:
        for line in f:
            found = pattern.search(line)
            if found:
                ids.append(found.group(1))
    return ids


def measure(rows: list[tuple[str, str, int, int]], g: dict,
            repeat: int) -> list[tuple[str, float, float, list[float]]]:
    """(name, median, best, runs) ns per call for each (name, stmt, calls per execution, executions).

    The rows take turns, one run each per round, so that a change in the machine's load (other
    processes) affects every row alike rather than whichever ran at the time."""
    timers = [(timeit.Timer(stmt, globals=g), calls, number) for _, stmt, calls, number in rows]
    runs: list[list[float]] = [[] for _ in rows]
    for _ in range(repeat):
        for i, (timer, calls, number) in enumerate(timers):
            runs[i].append(timer.timeit(number) / (calls * number) * 1e9)
    return [(row[0], statistics.median(r), min(r), r) for row, r in zip(rows, runs)]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores; {platform.system()} {platform.release()}; "
            f"{platform.python_implementation()} {platform.python_version()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=9, help="rounds (each row runs once per round)")
    parser.add_argument("--sample", type=int, default=200_000, help="random ids per run")
    args = parser.parse_args()

    catalog, snap = snapshot(args.customers)
    ids = customer_ids(catalog)
    if len(ids) != args.customers:
        sys.exit(f"found {len(ids)} customer ids in {catalog}, expected {args.customers}")
    engine = entitle.Engine.from_file(snap)
    hot = ids[len(ids) // 2]
    rng = random.Random(42)
    sample = [ids[rng.randrange(len(ids))] for _ in range(args.sample)]
    table = {c: {"sso": engine.enabled(c, "sso")} for c in ids}
    assert all(engine.enabled(c, "sso") == table[c]["sso"] for c in sample[:1000])

    enabled = engine.enabled
    sso = engine.feature("sso")
    assert sso.enabled_many(sample[:1000]) == [table[c]["sso"] for c in sample[:1000]]
    g = {"engine": engine, "enabled": enabled, "hot": hot, "sample": sample, "table": table,
         "sso": sso, "sso_enabled": sso.enabled}
    n, s = 1_000_000, len(sample)
    rows = [
        ("dict floor, hot: `table[c][f]`", "table[hot]['sso']", 1, n),
        ("`engine.enabled(c, f)`, hot", "engine.enabled(hot, 'sso')", 1, n),
        ("`sso.enabled(c)` (a `Feature`), hot", "sso.enabled(hot)", 1, n),
        ("`sso_enabled(c)`, hot, method bound once", "sso_enabled(hot)", 1, n),
        ("`enabled(c, f)`, hot, method bound once", "enabled(hot, 'sso')", 1, n),
        ("`engine.limit(c, f)`, hot", "engine.limit(hot, 'projects')", 1, n),
        ("`engine.allows(c, f, usage)`, hot", "engine.allows(hot, 'projects', 2)", 1, n),
        ("`engine.check(c, f)` (builds a Decision), hot", "engine.check(hot, 'sso')", 1, n),
        ("loop alone, random (no lookup)", "for c in sample: pass", s, 5),
        ("dict floor, random: `table[c][f]`", "for c in sample: table[c]['sso']", s, 5),
        ("`engine.enabled(c, f)`, random", "for c in sample: engine.enabled(c, 'sso')", s, 5),
        ("`enabled(c, f)`, random, method bound once", "for c in sample: enabled(c, 'sso')", s, 5),
        ("`sso.enabled(c)`, random", "for c in sample: sso.enabled(c)", s, 5),
        ("`sso.enabled_many(sample)`, random, per customer", "sso.enabled_many(sample)", s, 5),
    ]
    results = measure(rows, g, args.repeat)
    print(f"machine: {machine()}")
    print(f"snapshot: {args.customers} customers, {snap.stat().st_size / 1e6:.1f} MB; "
          f"{args.repeat} rounds; load average at the end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    # Each row's ratio to the dict floor of its group (hot or random), per round, then the median
    # over the rounds: the floor and the row ran within the same round, under the same load.
    hot_floor, random_floor = results[0][3], results[next(
        i for i, r in enumerate(results) if r[0].startswith("dict floor, random"))][3]
    print("| call | ns/call, median | best run | ratio to the dict floor (median of rounds) |")
    print("|---|---:|---:|---:|")
    for name, median, best, runs in results:
        floor = random_floor if "random" in name else hot_floor
        ratio = statistics.median(r / f for r, f in zip(runs, floor))
        print(f"| {name} | {median:.0f} | {best:.0f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
