#!/usr/bin/env bash
# The one test command: every check that keeps main landable, in order of speed.
# Each part lives in scripts/test-<part>.sh and can be run alone (after scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

# What is missing gets installed; see scripts/setup.sh for the list and where it goes.
scripts/setup.sh

parts=()
for part in rust ffi sync edge python node go ruby stripe; do
  if [ -x "scripts/test-$part.sh" ]; then parts+=("$part"); fi
done
for part in "${parts[@]}"; do
  echo "==> scripts/test-$part.sh"
  "scripts/test-$part.sh"
done
echo "==> all test parts passed: ${parts[*]}"
