#!/usr/bin/env bash
# The C ABI: header up to date, only entitle_* exported, and the C test programs (API and misuse,
# conformance suite, threads) run plainly, under AddressSanitizer + UBSan, and under valgrind.
# Needs gcc, nm (binutils) and valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/ffi-test
mkdir -p "$out/fixtures"
cflags=(-std=c11 -D_DEFAULT_SOURCE -Wall -Wextra -Werror -Wno-unused-function -g -O1
  -Iffi/include -Iffi/tests/c)
sources=(ffi/tests/c/json.c)
programs=(test_ffi test_conformance test_threads test_sync)
# What a Rust staticlib needs from the system (`rustc --print native-static-libs`).
native_libs=(-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc)

total_passed=0
total_failed=0
count() { # count LOGFILE: add the program's closing "NAME: N passed, M failed" line to the totals
  local line
  line=$(grep -E "^ffi-[a-z]+: [0-9]+ passed, [0-9]+ failed$" "$1" | tail -n 1 || true)
  if [ -z "$line" ]; then
    echo "ffi: no summary line in $1" >&2
    total_failed=$((total_failed + 1))
    return
  fi
  local p f
  p=$(sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\1/' <<<"$line")
  f=$(sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\2/' <<<"$line")
  total_passed=$((total_passed + p))
  total_failed=$((total_failed + f))
}
run() { # run LABEL NAME -- COMMAND...: run a test program, show its output, count its checks
  local label=$1 name=$2
  shift 3
  local log="$out/$label-$name.log"
  echo "--- $label: $name"
  if "$@" >"$log" 2>&1; then
    tail -n 3 "$log"
  else
    cat "$log"
    echo "ffi: $label $name exited non-zero" >&2
    total_failed=$((total_failed + 1))
  fi
  count "$log"
}

echo "--- build (release)"
cargo build --release -p entitle-ffi -p entitle-cli --quiet

echo "--- header: regenerate with cbindgen and diff against ffi/include/entitle.h"
cargo test -p entitle-ffi --test header --quiet

echo "--- exported symbols (nm -D)"
exported=$(nm -D --defined-only target/release/libentitle.so | awk '{print $3}')
stray=$(grep -v '^entitle_' <<<"$exported" || true)
if [ -n "$stray" ]; then
  echo "ffi: symbols outside the entitle_ prefix are exported from libentitle.so:" >&2
  echo "$stray" >&2
  exit 1
fi
# Every function the header declares is exported, and nothing else.
declared=$(grep -oE '\bentitle_[a-z0-9_]+\(' ffi/include/entitle.h | tr -d '(' | sort -u)
if [ "$declared" != "$(sort -u <<<"$exported")" ]; then
  echo "ffi: exported symbols differ from the header's functions:" >&2
  diff <(echo "$declared") <(sort -u <<<"$exported") >&2 || true
  exit 1
fi
echo "$(wc -l <<<"$exported") symbols, all entitle_*, all declared in entitle.h"

echo "--- fixtures"
fx="$out/fixtures"
cp ffi/tests/data/v1.json "$fx/v1.json"
target/release/entitle build ffi/tests/data/v1.json -o "$fx/v1.snap" --version 1
target/release/entitle build ffi/tests/data/v2.json -o "$fx/v2.snap" --version 2
target/release/entitle diff "$fx/v1.snap" "$fx/v2.snap" -o "$fx/v1-v2.delta"

echo "--- compile (gcc; shared library, and static library with -fsanitize=address,undefined)"
for p in "${programs[@]}"; do
  gcc "${cflags[@]}" -o "$out/$p" "ffi/tests/c/$p.c" "${sources[@]}" \
    -Ltarget/release -Wl,-rpath,"$PWD/target/release" -lentitle -lpthread
  gcc "${cflags[@]}" -fsanitize=address,undefined -fno-omit-frame-pointer \
    -o "$out/$p-asan" "ffi/tests/c/$p.c" "${sources[@]}" \
    target/release/libentitle.a "${native_libs[@]}"
done

# test_sync needs a live edge: a fresh edge directory with v1.json published, served on a free
# loopback port by `entitle serve`; the test publishes v2.json itself.
server_pid=
stop_edge() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  fi
}
trap stop_edge EXIT
start_edge() { # start_edge MODE: sets edge_url, edge_dir and cache_dir
  edge_dir="$out/edge-$1"
  cache_dir="$out/cache-$1"
  rm -rf "$edge_dir" "$cache_dir"
  mkdir -p "$cache_dir"
  target/release/entitle publish ffi/tests/data/v1.json --edge "$edge_dir" >/dev/null
  target/release/entitle serve "$edge_dir" --addr 127.0.0.1:0 >"$out/serve-$1.log" 2>&1 &
  server_pid=$!
  edge_url=
  for _ in $(seq 100); do
    edge_url=$(grep -oE 'http://127\.0\.0\.1:[0-9]+' "$out/serve-$1.log" | head -n 1 || true)
    [ -n "$edge_url" ] && break
    sleep 0.1
  done
  if [ -z "$edge_url" ]; then
    echo "ffi: entitle serve did not start" >&2
    cat "$out/serve-$1.log" >&2
    exit 1
  fi
}

conformance=tests/conformance
for mode in plain asan valgrind; do
  for p in "${programs[@]}"; do
    case $p in
      test_ffi) args=("$fx") ;;
      test_conformance) args=("$conformance") ;;
      test_threads) args=("$fx" "$([ $mode = valgrind ] && echo 200 || echo 2000)") ;;
      test_sync)
        start_edge "$mode"
        args=("$fx" "$edge_url"
          "target/release/entitle publish ffi/tests/data/v2.json --edge $edge_dir >/dev/null"
          "$cache_dir")
        ;;
    esac
    case $mode in
      plain) run plain "$p" -- "$out/$p" "${args[@]}" ;;
      asan)
        run asan "$p" -- env ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1 \
          UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 "$out/$p-asan" "${args[@]}"
        ;;
      valgrind)
        # --child-silent-after-fork: test_sync's forked child cannot free the parent's sync
        # thread state (that thread does not exist in the child); it reports through a pipe.
        # --fair-sched: valgrind runs one thread at a time, and its default hand-over can leave
        # test_threads' writer waiting for minutes behind four spinning readers.
        run valgrind "$p" -- valgrind --quiet --error-exitcode=1 --leak-check=full \
          --child-silent-after-fork=yes --fair-sched=yes \
          --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \
          "$out/$p" "${args[@]}"
        ;;
    esac
    stop_edge
  done
done

echo "--- docs/ffi.md example"
awk '/^## Example/ {on = 1} on && /^```c$/ {code = 1; next} code && /^```$/ {exit} code' docs/ffi.md \
  >"$out/example.c"
gcc "${cflags[@]}" -o "$out/example" "$out/example.c" -Ltarget/release \
  -Wl,-rpath,"$PWD/target/release" -lentitle
if "$out/example" "$fx/v1.snap" >"$out/example.log" 2>&1 &&
  grep -q "cus_pro has SSO" "$out/example.log" &&
  grep -q "up to 50 projects" "$out/example.log" &&
  grep -q "may not create a 51st project" "$out/example.log" &&
  grep -q "projects 3 (customer_not_found, version 1)" "$out/example.log"; then
  total_passed=$((total_passed + 1))
  echo "the example runs and prints what it should"
else
  cat "$out/example.log"
  echo "ffi: the docs/ffi.md example failed" >&2
  total_failed=$((total_failed + 1))
fi

echo "--- docs/ffi.md handles example"
awk '/^## Feature handles and batches/ {on = 1} on && /^```c$/ {code = 1; next} code && /^```$/ {exit} code' \
  docs/ffi.md >"$out/example_handles.c"
gcc "${cflags[@]}" -o "$out/example_handles" "$out/example_handles.c" -Ltarget/release \
  -Wl,-rpath,"$PWD/target/release" -lentitle
if "$out/example_handles" "$fx/v1.snap" >"$out/example_handles.log" 2>&1 &&
  grep -q "cus_pro has SSO" "$out/example_handles.log" &&
  grep -q "customer 0: projects 50 (subscription)" "$out/example_handles.log" &&
  grep -q "customer 1: projects unlimited (subscription)" "$out/example_handles.log" &&
  grep -q "customer 2: projects 3 (customer_not_found)" "$out/example_handles.log" &&
  grep -q "cus_pro: sso 1, projects 50" "$out/example_handles.log"; then
  total_passed=$((total_passed + 1))
  echo "the handles example runs and prints what it should"
else
  cat "$out/example_handles.log"
  echo "ffi: the docs/ffi.md handles example failed" >&2
  total_failed=$((total_failed + 1))
fi

echo "ffi: $total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
