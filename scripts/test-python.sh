#!/usr/bin/env bash
# Python package (bindings/python), tested as it ships:
#  1. an sdist (carrying the engine's Rust sources), and a wheel built from it out of tree against
#     the library built with the `dist` profile (release without debug information);
#  2. `auditwheel repair` turns it into a manylinux wheel;
#  3. that wheel goes into a fresh virtualenv with nothing but pytest, which runs the shared
#     conformance suite;
#  4. the same wheel goes into the test virtualenv (target/python-venv, made by
#     scripts/setup/python.sh), which runs the whole pytest suite: API, errors, events and logging,
#     sync, fork, exit, leaks, threads, the ASGI / Django / Flask integrations under real servers,
#     OpenFeature, packaging (sdist without cargo, wheel tags, stripped extension);
#  5. mypy --strict on the package and the examples.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup/python.sh
venv=$PWD/target/python-venv
py=$venv/bin/python
export CARGO_TARGET_DIR=$PWD/target

# The CLI publishes and serves the edges the tests sync from; the library is what the wheel links.
cargo build --quiet --release -p entitle-cli
cargo build --quiet --profile dist -p entitle-ffi

dist=$PWD/target/python-dist
rm -rf "$dist"
mkdir -p "$dist"
echo "--- sdist, and a wheel built from it (out of tree)"
ENTITLE_LIB_DIR=$PWD/target/dist ENTITLE_INCLUDE_DIR=$PWD/ffi/include \
  "$py" -m build --no-isolation --outdir "$dist/raw" bindings/python >"$dist/build.log" 2>&1 ||
  { cat "$dist/build.log"; exit 1; }
rm -rf bindings/python/src/entitle.egg-info
echo "--- auditwheel repair"
raw=$(ls "$dist"/raw/*.whl)
# The most compatible manylinux tag the extension's symbol versions allow on this machine.
plat=$("$venv/bin/auditwheel" show "$raw" | grep -oE 'manylinux_[0-9]+_[0-9]+_[a-z0-9_]+' | head -n 1)
[ -n "$plat" ] || { "$venv/bin/auditwheel" show "$raw"; exit 1; }
"$venv/bin/auditwheel" repair --only-plat --plat "$plat" -w "$dist/wheelhouse" "$raw" \
  >"$dist/auditwheel.log" 2>&1 || { cat "$dist/auditwheel.log"; exit 1; }
wheel=$(ls "$dist"/wheelhouse/*.whl)
sdist=$(ls "$dist"/raw/*.tar.gz)
echo "$(basename "$wheel"): $(stat -c %s "$wheel") bytes"

echo "--- a fresh virtualenv with only the wheel (and pytest): the conformance suite"
fresh=$PWD/target/python-wheel-venv
rm -rf "$fresh"
"$py" -m venv --without-pip "$fresh" 2>/dev/null || python3 -m venv --without-pip "$fresh"
"$py" -m pip --python "$fresh/bin/python" install --quiet --disable-pip-version-check \
  --no-index --find-links target/python-wheels pytest "$wheel"
(cd bindings/python/tests && "$fresh/bin/python" -m pytest -q -p no:cacheprovider test_conformance.py)

echo "--- the test virtualenv: every test"
"$py" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall "$wheel"
# From outside the source tree, so that `import entitle` is the installed wheel.
(cd bindings/python/tests &&
  ENTITLE_WHEEL="$wheel" ENTITLE_SDIST="$sdist" "$py" -m pytest -q -p no:cacheprovider .)

echo "--- mypy --strict: the package and the examples"
(cd bindings/python/src && "$venv/bin/mypy" --config-file ../pyproject.toml --strict \
  --no-incremental --cache-dir=/dev/null entitle ../examples)
