#!/usr/bin/env bash
# Python package (bindings/python): builds the Rust library and the CLI, installs the package into
# a virtualenv of its own (target/python-venv) and runs its pytest suite: the shared conformance
# suite, the API, errors, edge sync, fork, interpreter exit, leaks and threads.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
venv=target/python-venv

# The CLI serves and publishes the edges the sync and fork tests use; the library is linked in.
cargo build --release -p entitle-ffi -p entitle-cli

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
  rm -rf "$venv"
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "setuptools>=77" pytest
# Reinstall every time: the extension must be rebuilt against the current library.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-build-isolation \
  --force-reinstall --no-deps ./bindings/python

# Run from outside the source tree so that `import entitle` is the installed package.
cd bindings/python/tests
"../../../$venv/bin/python" -m pytest -q -p no:cacheprovider .
