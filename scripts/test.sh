#!/usr/bin/env bash
# The one test command: every check that keeps main landable, in order of speed.
# Each part lives in scripts/test-<part>.sh and can be run alone.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-deps.sh

parts=(rust)
for extra in ffi sync python; do
  if [ -x "scripts/test-$extra.sh" ]; then parts+=("$extra"); fi
done
for part in "${parts[@]}"; do
  echo "==> scripts/test-$part.sh"
  "scripts/test-$part.sh"
done
echo "==> all test parts passed: ${parts[*]}"
