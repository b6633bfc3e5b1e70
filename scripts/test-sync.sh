#!/usr/bin/env bash
# Edge sync through a real static server: nginx (started here on a loopback port with a config of its
# own, stopped on exit) serves an edge directory written by `entitle publish`, and `entitle watch`
# syncs from it by plain polling with a bearer token that nginx enforces. Checks: first sync, a
# republish arriving as a delta, several publishes within one second (nginx derives the manifest's
# ETag from its mtime in seconds and its size), a new lineage, a wrong token, and a warm start from
# the cache with nginx down. The Rust sync tests run in scripts/test-rust.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

nginx_bin=$(command -v nginx || true)
if [ -z "$nginx_bin" ] && [ -x /usr/sbin/nginx ]; then nginx_bin=/usr/sbin/nginx; fi
if [ -z "$nginx_bin" ]; then
  echo "test-sync: nginx is required but not installed (apt-get install -y nginx)" >&2
  exit 1
fi

cargo build --quiet -p entitle-cli
bin=$PWD/target/debug/entitle

tmp=$(mktemp -d)
chmod 755 "$tmp" # nginx's workers run as an unprivileged user and must read the edge
pids=()
cleanup() {
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

passed=0
pass() { passed=$((passed + 1)); echo "ok: $*"; }
fail() {
  echo "FAILED: $*" >&2
  for f in "$tmp"/*.out "$tmp"/nginx/error.log; do
    [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
  done
  echo "$passed passed, 1 failed"
  exit 1
}

# wait_for FILE PATTERN [SECONDS]: until a line of FILE matches the extended regex PATTERN.
wait_for() {
  local deadline=$((SECONDS + ${3:-30}))
  until grep -Eq -- "$2" "$1" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}

catalog() { # catalog FILE PROJECTS
  cat > "$1" <<EOF
{"features": [{"key": "projects", "type": "limit", "default": 3}],
 "customers": [{"id": "cus_a", "overrides": {"projects": $2}}]}
EOF
}

edge=$tmp/edge
token=nginx-$RANDOM-$RANDOM
printf '%s\n' "$token" > "$tmp/token"
printf 'wrong-token\n' > "$tmp/wrong"
catalog "$tmp/v1.json" 10
"$bin" publish "$tmp/v1.json" --edge "$edge" > /dev/null

start_nginx() {
  mkdir -p "$tmp/nginx"
  local attempt
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    port=$((20000 + RANDOM % 30000))
    cat > "$tmp/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 128; }
http {
  access_log $tmp/nginx/access.log;
  client_body_temp_path $tmp/nginx/body;
  proxy_temp_path $tmp/nginx/proxy;
  fastcgi_temp_path $tmp/nginx/fastcgi;
  uwsgi_temp_path $tmp/nginx/uwsgi;
  scgi_temp_path $tmp/nginx/scgi;
  types { application/json json; }
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:$port;
    root $edge;
    if (\$http_authorization != "Bearer $token") { return 401; }
    location = /manifest.json { add_header Cache-Control "no-cache"; }
    location /snapshots/ { add_header Cache-Control "public, max-age=31536000, immutable"; }
    location /deltas/ { add_header Cache-Control "public, max-age=31536000, immutable"; }
  }
}
EOF
    "$nginx_bin" -c "$tmp/nginx/nginx.conf" -p "$tmp/nginx" 2>> "$tmp/nginx/error.log" &
    nginx_pid=$!
    local i
    for i in $(seq 1 50); do
      if ! kill -0 "$nginx_pid" 2>/dev/null; then break; fi
      if (exec 3<> "/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        pids+=("$nginx_pid")
        return 0
      fi
      sleep 0.1
    done
    kill "$nginx_pid" 2>/dev/null || true
    wait "$nginx_pid" 2>/dev/null || true
  done
  return 1
}

stop_nginx() {
  kill "$nginx_pid" 2>/dev/null || true
  wait "$nginx_pid" 2>/dev/null || true
}

start_nginx || fail "nginx did not start (see $tmp/nginx/error.log)"
url=http://127.0.0.1:$port
echo "nginx $("$nginx_bin" -v 2>&1 | sed 's/.*\///') on $url"

"$bin" watch "$url" cus_a projects --token-file "$tmp/token" --poll 0.2 \
  --cache-dir "$tmp/cache" > "$tmp/watch.out" 2> "$tmp/watch.err" &
watch_pid=$!
pids+=("$watch_pid")
wait_for "$tmp/watch.out" '"limit": 10, .*"version": 1, "state": "ready"' ||
  fail "first sync from nginx"
pass "first sync from nginx (version 1)"

catalog "$tmp/v2.json" 20
"$bin" publish "$tmp/v2.json" --edge "$edge" > /dev/null
wait_for "$tmp/watch.out" '"limit": 20, .*"version": 2' || fail "republish"
grep -q 'GET /deltas/v000001-v000002-' "$tmp/nginx/access.log" ||
  fail "version 2 did not arrive as a delta"
pass "republished version 2 arrives as a delta"

# With --keep 1 consecutive manifests have the same size; published within one second, nginx would
# give them the same ETag (mtime in seconds + size) but for the publisher's strictly later mtimes.
for n in 3 4 5; do
  catalog "$tmp/v$n.json" $((n * 10))
  "$bin" publish "$tmp/v$n.json" --edge "$edge" --keep 1 > /dev/null
  wait_for "$tmp/watch.out" "\"limit\": $((n * 10)), .*\"version\": $n" ||
    fail "publishes in quick succession (version $n)"
done
pass "publishes within one second, manifests of equal size, converge (version 5)"

catalog "$tmp/fresh.json" 7
"$bin" publish "$tmp/fresh.json" --edge "$edge" --new-lineage > /dev/null
wait_for "$tmp/watch.out" '"limit": 7, .*"version": 1' || fail "new lineage"
pass "a new lineage replaces version 5 with its version 1"

"$bin" watch "$url" cus_a projects --token-file "$tmp/wrong" --poll 0.2 \
  > "$tmp/wrong.out" 2>&1 &
wrong_pid=$!
pids+=("$wrong_pid")
wait_for "$tmp/wrong.out" '"state": "failed".*HTTP 401' || fail "wrong token"
pass "a wrong token is refused (401) and reported"

kill "$watch_pid" "$wrong_pid" 2>/dev/null || true
wait "$watch_pid" "$wrong_pid" 2>/dev/null || true
stop_nginx
"$bin" watch "$url" cus_a projects --token-file "$tmp/token" --poll 0.2 \
  --cache-dir "$tmp/cache" > "$tmp/warm.out" 2>&1 &
warm_pid=$!
pids+=("$warm_pid")
wait_for "$tmp/warm.out" '"limit": 7, .*"version": 1, "state": "ready"' ||
  fail "warm start from the cache with nginx down"
pass "warm start from the cache with nginx down"

echo "test-sync: $passed passed, 0 failed"
