#!/usr/bin/env bash
# Writes a seed corpus for the fuzz targets: valid snapshots and deltas made with the `entitle` CLI.
# The delta seeds are made against the targets' fixed base (synth --customers 40 --seed 7, version
# 1, created at 0), so mutations of them reach View::apply. See docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet -p entitle-cli --bin entitle
entitle=target/debug/entitle
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p fuzz/corpus/snapshot fuzz/corpus/delta

"$entitle" synth --customers 40 --seed 7 -o "$work/base.json"
"$entitle" build "$work/base.json" -o "$work/base.snap" --version 1 --created-at 0
cp "$work/base.snap" fuzz/corpus/snapshot/synth-40
for n in 0 1 30 50; do
  "$entitle" synth --customers "$n" --seed 7 -o "$work/s$n.json"
  "$entitle" build "$work/s$n.json" -o "$work/s$n.snap" --version 2 --created-at 1767225600
  cp "$work/s$n.snap" fuzz/corpus/snapshot/synth-$n
  "$entitle" diff "$work/base.snap" "$work/s$n.snap" -o fuzz/corpus/delta/synth-40-to-$n
done
"$entitle" build examples/catalog.json -o "$work/example.snap" --version 2 --created-at 0
cp "$work/example.snap" fuzz/corpus/snapshot/example
"$entitle" diff "$work/base.snap" "$work/example.snap" -o fuzz/corpus/delta/synth-40-to-example
ls -l fuzz/corpus/snapshot fuzz/corpus/delta
