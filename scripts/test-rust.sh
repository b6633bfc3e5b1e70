#!/usr/bin/env bash
# Rust: formatting, lints, docs, and every cargo test (unit, doc, conformance, properties, CLI).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --quiet
cargo test --workspace
