#!/usr/bin/env bash
# Builds libentitle.a and places it, with entitle.h, where the Go package links it from:
#   bindings/go/lib/entitle.h
#   bindings/go/lib/<GOOS>_<GOARCH>/libentitle.a
# Run it after every change to the Rust sources (`go generate` in bindings/go runs it too).
# Without arguments it builds for the machine's own platform; `--target <rust triple>` builds for
# another one (linux/amd64: x86_64-unknown-linux-gnu, linux/arm64: aarch64-unknown-linux-gnu; the
# Rust target must be installed with `rustup target add`, and cgo then needs a C cross compiler).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

target=""
packages=(-p entitle-ffi)
while [ $# -gt 0 ]; do
  case "$1" in
    --target) target=${2:?--target needs a Rust target triple}; shift 2 ;;
    # The CLI in the same cargo invocation: building them apart would compile the shared crates
    # twice (cargo unifies features per invocation).
    --with-cli) packages+=(-p entitle-cli); shift ;;
    *) echo "usage: $0 [--target TRIPLE] [--with-cli]" >&2; exit 2 ;;
  esac
done

case "${target:-host}" in
  host) goos=$(go env GOOS); goarch=$(go env GOARCH) ;;
  x86_64-unknown-linux-gnu) goos=linux; goarch=amd64 ;;
  aarch64-unknown-linux-gnu) goos=linux; goarch=arm64 ;;
  *) echo "build-go-lib: no GOOS/GOARCH known for Rust target $target" >&2; exit 2 ;;
esac

target_dir=${CARGO_TARGET_DIR:-target}
case "$target_dir" in /*) ;; *) target_dir="$repo/$target_dir" ;; esac
if [ -n "$target" ]; then
  cargo build --release "${packages[@]}" --target "$target"
  lib="$target_dir/$target/release/libentitle.a"
else
  cargo build --release "${packages[@]}"
  lib="$target_dir/release/libentitle.a"
fi

dest=bindings/go/lib
mkdir -p "$dest/${goos}_${goarch}"
# Copy only what changed, so that Go's build cache stays valid when nothing did.
cmp -s ffi/include/entitle.h "$dest/entitle.h" || cp ffi/include/entitle.h "$dest/entitle.h"
cmp -s "$lib" "$dest/${goos}_${goarch}/libentitle.a" || cp "$lib" "$dest/${goos}_${goarch}/libentitle.a"
echo "build-go-lib: $dest/${goos}_${goarch}/libentitle.a and $dest/entitle.h are up to date"
