#!/usr/bin/env bash
# Stripe: `entitle stripe pull` and `entitle stripe webhook` (cli/tests/stripe.rs).
# - stripe-mock (Stripe's own API mock, installed by scripts/setup/stripe.sh) on loopback ports of
#   its choosing: request shapes, authentication, every refetch the webhook makes.
# - A loopback server of the test's own playing the account in examples/stripe/account.json and
#   sending signed events: mapping, pagination, 429, bad signatures, duplicates, order, bursts,
#   the API down, restarts; end to end through `entitle serve` to a syncing engine, with the
#   event-to-visible delay printed.
# The mapping, signature, retry and event tables run as unit tests (cli/src/stripe/).
set -euo pipefail
cd "$(dirname "$0")/.."

STRIPE_MOCK="$PWD/target/gopath/bin/stripe-mock"
if [ ! -x "$STRIPE_MOCK" ]; then
  echo "test-stripe: $STRIPE_MOCK is missing; run scripts/setup.sh (or scripts/setup/stripe.sh)" >&2
  exit 1
fi
export STRIPE_MOCK

cargo test -p entitle-cli --bin entitle stripe::
cargo test -p entitle-cli --test stripe -- --include-ignored --nocapture
