#!/usr/bin/env bash
# The edge server (`entitle serve`): the Rust tests of cli/tests/serve.rs, including the abuse test
# (1,000 idle and 500 slowloris connections while an authorized client must be answered within a
# second), then Spackle's own Python SDK (target/edge-venv, from scripts/setup/edge.sh) against the
# customer-state API for every customer and feature of examples/catalog.json. The 10,000-client
# long-poll benchmark is scripts/bench-serve.sh (results in benches/RESULTS.md).
set -euo pipefail
cd "$(dirname "$0")/.."

# The abuse test holds 1,500 sockets in the test and as many in the server.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cargo build --quiet -p entitle-cli
bin=$PWD/target/debug/entitle
cargo test --quiet -p entitle-cli --test serve -- --include-ignored

venv=target/edge-venv
[ -x "$venv/bin/python" ] || scripts/setup/edge.sh

tmp=$(mktemp -d)
server=
cleanup() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

edge=$tmp/edge
token=sk_edge_$RANDOM$RANDOM
printf '%s\n' "$token" > "$tmp/token"
snapshot=$("$bin" publish examples/catalog.json --edge "$edge" | sed -E 's/.*"snapshot": ?"([^"]+)".*/\1/')
"$bin" serve "$edge" --addr 127.0.0.1:0 --token-file "$tmp/token" > "$tmp/serve.out" 2> "$tmp/serve.err" &
server=$!
for _ in $(seq 1 200); do
  grep -q 'http://' "$tmp/serve.out" 2>/dev/null && break
  sleep 0.05
done
addr=$(sed -nE 's|.*http://([^ ]+).*|\1|p' "$tmp/serve.out" | head -n 1)
[ -n "$addr" ] || { echo "test-edge: the server did not start" >&2; cat "$tmp/serve.err" >&2; exit 1; }
"$venv/bin/python" - "http://$addr/healthz" <<'PY'
import sys, time, urllib.request
for _ in range(200):
    try:
        urllib.request.urlopen(sys.argv[1], timeout=2)
        break
    except OSError:
        time.sleep(0.05)
PY

"$venv/bin/python" cli/tests/spackle_sdk.py "http://$addr/v1" "$token" examples/catalog.json \
  "$edge/$snapshot" "$bin" 200
echo "test-edge: passed"
