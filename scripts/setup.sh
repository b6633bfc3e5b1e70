#!/usr/bin/env bash
# Installs what the test command needs beyond the machine's Rust, C, Python, Node and Go toolchains.
# Idempotent and quick when everything is present; `.ci/run` calls it before `scripts/test.sh`.
#
# - Debian packages: every name listed in scripts/setup/apt-packages (one per line, `#` comments),
#   installed with apt-get when missing (as root; otherwise the missing names are printed).
# - Language modules: each scripts/setup/<part>.sh installs one part's modules into folders of the
#   repository (npm into bindings/node/node_modules, Go modules into target/gopath, pip into a
#   virtualenv under target/): nothing lands in the machine's global locations.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
while read -r pkg; do
  pkg=${pkg%%#*}
  pkg=$(echo "$pkg" | tr -d '[:space:]')
  [ -n "$pkg" ] || continue
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done < scripts/setup/apt-packages

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]} — install them (sudo apt-get install -y ${missing[*]}) and re-run" >&2
    exit 1
  fi
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps Debian from starting packaged services (nginx): tests start their own.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

for part in scripts/setup/*.sh; do
  [ -e "$part" ] || continue
  echo "setup: $part"
  "$part"
done
