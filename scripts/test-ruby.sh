#!/usr/bin/env bash
# Ruby gem (bindings/ruby): builds the Rust library and the CLI, compiles the gem's C extension
# against target/release/libentitle.a (warnings are errors) and runs its minitest suite through
# rake: the shared conformance suite, the API and errors, threads, edge sync, waits and interrupts,
# fork (a fork loop and Puma in cluster mode), interpreter exit, leaks, Ractors, the Rack
# middleware example over HTTP, and the gem built, installed into a scratch directory and used.
# Ruby, minitest, rake, rake-compiler, Puma and Rack come from Debian (scripts/setup/apt-packages).
set -euo pipefail
cd "$(dirname "$0")/.."

# The CLI serves and publishes the edges the sync and fork tests use; the library is linked in.
cargo build --release -p entitle-ffi -p entitle-cli

cd bindings/ruby
# Lint: every Ruby file parses without warnings (ruby -wc).
git ls-files '*.rb' '*.ru' Rakefile '*.gemspec' | while read -r file; do
  ruby -wc "$file" >/dev/null
  if ruby -wc "$file" 2>&1 | grep -q 'warning:'; then
    ruby -wc "$file"
    exit 1
  fi
done
export ENTITLE_WERROR=1
rake test
