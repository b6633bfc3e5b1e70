#!/usr/bin/env bash
# The main job, end to end: publish examples/catalog.json to a local edge, serve it, run an engine
# that syncs from it (`entitle watch`), answer checks, move a customer from the free plan to pro,
# republish, and show the new answer arriving with the measured delay. Stops everything on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

customer=cus_free_ada
feature=projects

echo "==> building (release)"
cargo build --release --quiet -p entitle-cli
bin=$PWD/target/release/entitle

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

# wait_for FILE PATTERN: until a line of FILE matches the extended regex PATTERN (30 s at most).
wait_for() {
  local deadline=$((SECONDS + 30))
  until grep -Eq -- "$2" "$1" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "timed out waiting for $2 in $1" >&2
      cat "$1" >&2 || true
      exit 1
    fi
    sleep 0.02
  done
}

now() { date +%s.%N; }

echo
echo "==> entitle publish examples/catalog.json --edge EDGE"
"$bin" publish examples/catalog.json --edge "$tmp/edge"
echo "    edge files:"
(cd "$tmp/edge" && find . -type f | sort | sed 's|^\./|      |')

echo
echo "==> entitle serve EDGE --addr 127.0.0.1:0"
"$bin" serve "$tmp/edge" --addr 127.0.0.1:0 > "$tmp/serve.out" 2>&1 &
pids+=($!)
wait_for "$tmp/serve.out" 'http://'
url=$(sed -n 's|.* at \(http://[^ ]*\)$|\1|p' "$tmp/serve.out")
echo "    $(cat "$tmp/serve.out")"

echo
echo "==> an engine syncing from $url answers checks (entitle watch, long-poll)"
"$bin" watch "$url" "$customer" "$feature" --long-poll 25 --poll 5 --cache-dir "$tmp/cache" \
  > "$tmp/watch.out" 2> "$tmp/watch.err" &
pids+=($!)
wait_for "$tmp/watch.out" '"state": "ready"'
sed 's/^/    /' "$tmp/watch.out"
echo "    other checks against the published snapshot (entitle check):"
snapshot=$(ls "$tmp"/edge/snapshots/*.snap | head -n 1)
for check in "cus_free_ada projects" "cus_pro_bob seats" "cus_enterprise_dee projects" \
  "cus_canceled_gus sso"; do
  # shellcheck disable=SC2086
  printf '    %-28s %s\n' "$check" "$("$bin" check "$snapshot" $check)"
done

echo
echo "==> $customer moves from the free plan to pro; republish"
sed '/"sub_ada_1"/s/"prod_free"/"prod_pro"/' examples/catalog.json > "$tmp/catalog.json"
if cmp -s examples/catalog.json "$tmp/catalog.json"; then
  echo "examples/catalog.json has no free-plan subscription sub_ada_1 for $customer" >&2
  exit 1
fi
diff <(grep -n 'sub_ada_1' examples/catalog.json) <(grep -n 'sub_ada_1' "$tmp/catalog.json") |
  sed -n 's/^[<>]/   &/p' || true
before=$(wc -l < "$tmp/watch.out")
published_at=$(now)
"$bin" publish "$tmp/catalog.json" --edge "$tmp/edge"
wait_for "$tmp/watch.out" '"limit": 50,'
line=$(tail -n +"$((before + 1))" "$tmp/watch.out" | grep -m1 '"limit": 50,')
echo
echo "==> the engine's new answer"
echo "    $line"
seen_at=$(sed -n 's/.*"time": \([0-9.]*\).*/\1/p' <<< "$line")
awk -v a="$published_at" -v b="$seen_at" \
  'BEGIN { printf "    visible %.0f ms after `entitle publish` started (build, delta, manifest switch, long-poll, fetch, verify, apply)\n", (b - a) * 1000 }'
echo
echo "==> done; stopping the server and the engine"
