#!/usr/bin/env bash
# Installs stripe-mock (Stripe's own mock of its API, a Go module) into target/gopath/bin for
# scripts/test-stripe.sh. Idempotent: does nothing when the binary is already there.
set -euo pipefail
cd "$(dirname "$0")/../.."

export GOPATH="$PWD/target/gopath"
export GOCACHE="$GOPATH/cache"
# Pinned: the test expects this version's fixtures (request shapes, pagination, errors).
version="${STRIPE_MOCK_VERSION:-v0.203.0}"
bin="$GOPATH/bin/stripe-mock"
stamp="$GOPATH/bin/.stripe-mock-version"

if [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "setup/stripe.sh: the Go toolchain is needed to install stripe-mock" >&2
  exit 1
fi
echo "setup/stripe.sh: installing stripe-mock $version into $GOPATH/bin (first build takes a few minutes)"
GOFLAGS=-modcacherw go install "github.com/stripe/stripe-mock@$version"
echo "$version" > "$stamp"
