#!/usr/bin/env bash
# Measures edge sync (publish-to-visible latency with long-poll and with plain polling, the cost of
# a sync round that finds nothing new, warm start from the cache for CUSTOMERS customers, default
# 1,000,000) and prints the "## Edge sync" section of benches/RESULTS.md with the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
customers=${1:-1000000}
cargo build --release --quiet -p entitle-cli
cargo build --release --quiet -p entitle-core --features sync --example edge_sync
table=$(target/release/examples/edge_sync target/release/entitle "$customers")
cat <<OUT
## Edge sync

Measured with \`scripts/measure-sync.sh\` (\`core/examples/edge_sync.rs\`): \`entitle serve\` on
loopback, the engine in the same process as the publisher, release build, on $(date -u +%Y-%m-%d).
Machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -n 1), \
$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) of memory, $(uname -sr).

$table
OUT
