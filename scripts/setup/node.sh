#!/usr/bin/env bash
# Node package (bindings/node): installs its development modules (Node-API headers, TypeScript,
# Express, Fastify, the OpenFeature SDK) into bindings/node/node_modules from package-lock.json.
# Idempotent: a stamp of the lock file skips the install when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/../../bindings/node"

stamp=node_modules/.entitle-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
# --ignore-scripts: the package's own install step builds the addon, which the test part does.
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
echo "$want" > "$stamp"
