#!/usr/bin/env bash
# Edge server tests: Spackle's own Python SDK (spackle-python from PyPI), in a virtualenv of its own
# (target/edge-venv), to prove that `entitle serve` answers its customer-state API like Spackle does.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=target/edge-venv
version=0.0.45
if [ -x "$venv/bin/python" ] && "$venv/bin/python" - "$version" <<'PY' 2>/dev/null; then
import sys
from importlib.metadata import version
import spackle  # noqa: F401
sys.exit(0 if version("spackle-python") == sys.argv[1] else 1)
PY
  exit 0
fi
rm -rf "$venv"
"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "spackle-python==$version"
