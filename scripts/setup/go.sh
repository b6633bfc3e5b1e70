#!/usr/bin/env bash
# Go modules of bindings/go (the OpenFeature SDK and what its tests need) into target/gopath:
# nothing lands in the machine's own GOPATH. Idempotent; quick when everything is there.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/go-env.sh
cd bindings/go
go mod download
