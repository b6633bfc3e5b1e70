#!/usr/bin/env bash
# Edge server benchmark (results in benches/RESULTS.md, "Edge server"), loopback only, bounded:
#  1. `entitle serve` holds CLIENTS (default 10,000) long-polls on the manifest; the manifest is then
#     switched by a rename and the time until each client has its 200 is measured (p50/p99/max), with
#     the server's resident memory per held connection.
#  2. nginx (when installed) serves the same directory to CLIENTS clients polling every
#     POLL_SECONDS (default 5, ±20 %) with If-None-Match: the time from the switch until each has seen it.
#  3. spackle-python's Customer.retrieve against the customer-state API, next to an in-process
#     lookup (the entitle Python package, when target/python-venv has it).
# Usage: scripts/bench-serve.sh [CLIENTS] [POLL_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."

clients=${1:-10000}
poll=${2:-5}
# Each held connection is a descriptor in the client and one in the server.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" -lt $((clients + 1000)) ]; then
  echo "bench-serve: the open-file limit ($(ulimit -n)) is too low for $clients clients" >&2
  exit 1
fi

cargo build --quiet --release -p entitle-cli --bin entitle --example edge_load
bin=$PWD/target/release/entitle
load=$PWD/target/release/examples/edge_load

tmp=$(mktemp -d)
chmod 755 "$tmp"
pids=()
cleanup() {
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

# stage_switch EDGE: publishes v1 to EDGE and v2 to a copy, moves v2's artifacts into EDGE and leaves
# v2's manifest in $tmp/next-manifest.json for the load client to rename over EDGE/manifest.json.
stage_switch() {
  local edge=$1
  rm -rf "$edge" "$tmp/stage"
  "$bin" publish examples/catalog.json --edge "$edge" > /dev/null
  cp -a "$edge" "$tmp/stage"
  sed 's/"projects": 50/"projects": 51/' examples/catalog.json > "$tmp/v2.json"
  "$bin" publish "$tmp/v2.json" --edge "$tmp/stage" > /dev/null
  cp -a "$tmp/stage/snapshots/." "$edge/snapshots/"
  cp -a "$tmp/stage/deltas/." "$edge/deltas/"
  mv "$tmp/stage/manifest.json" "$tmp/next-manifest.json"
  chmod -R a+rX "$edge"
}

addr_of() { # addr_of FILE: the address on the server's first output line
  local i
  for i in $(seq 1 100); do
    if grep -q 'http://' "$1" 2>/dev/null; then
      sed -nE 's|.*http://([^ ]+).*|\1|p' "$1" | head -n 1
      return 0
    fi
    sleep 0.05
  done
  return 1
}

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start, $(date -u +%FT%TZ)"

# 1. entitle serve, long-polls.
edge=$tmp/edge
stage_switch "$edge"
"$bin" serve "$edge" --addr 127.0.0.1:0 > "$tmp/serve.out" 2> "$tmp/serve.err" &
serve_pid=$!
pids+=("$serve_pid")
addr=$(addr_of "$tmp/serve.out")
echo "entitle serve, $clients long-polls, manifest switch:"
"$load" "$addr" "$clients" "$tmp/next-manifest.json" "$edge/manifest.json" longpoll 0 "$serve_pid"
kill "$serve_pid"
wait "$serve_pid" 2>/dev/null || true

if [ -n "${SKIP_NGINX:-}" ]; then exit 0; fi
# 2. nginx, plain polling of the same directory.
nginx_bin=$(command -v nginx || true)
[ -n "$nginx_bin" ] || { [ -x /usr/sbin/nginx ] && nginx_bin=/usr/sbin/nginx; }
if [ -n "$nginx_bin" ]; then
  stage_switch "$edge"
  mkdir -p "$tmp/nginx"
  port=$((20000 + RANDOM % 30000))
  cat > "$tmp/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
worker_rlimit_nofile $((clients + 1000));
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections $((clients + 500)); }
http {
  access_log off;
  keepalive_requests 100000;
  client_body_temp_path $tmp/nginx/body;
  proxy_temp_path $tmp/nginx/proxy;
  fastcgi_temp_path $tmp/nginx/fastcgi;
  uwsgi_temp_path $tmp/nginx/uwsgi;
  scgi_temp_path $tmp/nginx/scgi;
  types { application/json json; }
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:$port backlog=4096;
    root $edge;
    location = /manifest.json { add_header Cache-Control "no-cache"; }
  }
}
EOF
  "$nginx_bin" -c "$tmp/nginx/nginx.conf" -p "$tmp/nginx" 2>> "$tmp/nginx/error.log" &
  pids+=("$!")
  up=
  for _ in $(seq 1 200); do
    if (exec 3<> "/dev/tcp/127.0.0.1/$port") 2>/dev/null; then up=1; break; fi
    sleep 0.1
  done
  [ -n "$up" ] || { echo "bench-serve: nginx did not start" >&2; cat "$tmp/nginx/error.log" >&2; exit 1; }
  echo "nginx, $clients clients polling every ${poll} s, manifest switch:"
  "$load" "127.0.0.1:$port" "$clients" "$tmp/next-manifest.json" "$edge/manifest.json" poll "$poll"
else
  echo "nginx: not installed, skipped"
fi

# 3. The customer-state API through spackle-python, next to an in-process lookup.
[ -x target/edge-venv/bin/python ] || scripts/setup/edge.sh
stage_switch "$edge"
printf 'bench-token\n' > "$tmp/token"
"$bin" serve "$edge" --addr 127.0.0.1:0 --token-file "$tmp/token" > "$tmp/serve2.out" 2>&1 &
pids+=("$!")
addr=$(addr_of "$tmp/serve2.out")
snapshot=$(sed -nE 's/.*"path": ?"(snapshots\/[^"]+)".*/\1/p' "$edge/manifest.json" | head -n 1)
target/edge-venv/bin/python cli/tests/spackle_sdk.py "http://$addr/v1" bench-token \
  examples/catalog.json "$edge/$snapshot" "$bin" 2000
if [ -x target/python-venv/bin/python ] && target/python-venv/bin/python -c 'import entitle' 2>/dev/null; then
  target/python-venv/bin/python - "$edge/$snapshot" <<'PY'
import sys, time, entitle
engine = entitle.Engine.from_file(sys.argv[1])
customers = ["cus_free_ada", "cus_pro_bob", "cus_enterprise_dee", "cus_override_ivy"]
n = 200_000
start = time.perf_counter()
for i in range(n):
    engine.enabled(customers[i & 3], "sso")
per = (time.perf_counter() - start) / n
print(f"in-process entitle Engine.enabled from Python: {per * 1e9:.0f} ns per lookup ({n} calls)")
PY
else
  echo "in-process lookup: target/python-venv has no entitle package (run scripts/test-python.sh)"
fi
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
