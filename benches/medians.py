#!/usr/bin/env python3
"""Prints the median of every criterion benchmark under target/criterion (or the folder given),
as recorded by the last `cargo bench -p entitle-benches` run."""
import glob
import json
import os
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "target", "criterion")


def human(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


for path in sorted(glob.glob(os.path.join(root, "*", "*", "new", "estimates.json"))):
    with open(os.path.join(os.path.dirname(path), "benchmark.json")) as f:
        name = json.load(f)["full_id"]
    with open(path) as f:
        median = json.load(f)["median"]["point_estimate"]
    print(f"{name:50s} {human(median)}")
