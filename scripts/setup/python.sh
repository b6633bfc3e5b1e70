#!/usr/bin/env bash
# Python modules for scripts/test-python.sh, installed into a virtualenv of the repository's own
# (target/python-venv), never into the machine's Python, and pytest's wheels into
# target/python-wheels. Idempotent: a venv that already has the
# pinned set (recorded in target/python-venv/.entitle-requirements) is left alone.
set -euo pipefail
cd "$(dirname "$0")/../.."

python=${PYTHON:-python3}
venv=target/python-venv

# What the tests use: the test runner, the servers and frameworks the middlewares are tested under
# (uvicorn + FastAPI/Starlette, Django, Flask), the OpenFeature SDK, the HTTP client, the wheel
# tools (build, auditwheel; patchelf comes from apt) and the type checker.
requirements=(
  "setuptools>=77"
  "wheel"
  "pytest>=7"
  "httpx>=0.27"
  "uvicorn>=0.30"
  "fastapi>=0.110"
  "starlette>=0.37"
  "django>=4.2"
  "flask>=3.0"
  "openfeature-sdk>=0.8"
  "build>=1.2"
  # 6.1: later versions refuse the patchelf Debian 12 ships (0.14.3; they want 0.14.5).
  "auditwheel==6.1.0"
  "mypy>=1.10"
)
stamp="$venv/.entitle-requirements"
# target/python-wheels: pytest and its dependencies as wheels, for the test command's fresh
# virtualenv that installs the built wheel without reaching an index.
wheels=target/python-wheels
wanted=$(printf '%s\n' "${requirements[@]}" "wheels: pytest>=7")

if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import sys' 2>/dev/null &&
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] && [ -d "$wheels" ]; then
  exit 0
fi
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
  rm -rf "$venv"
  mkdir -p target
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${requirements[@]}"
rm -rf "$wheels"
"$venv/bin/python" -m pip download --quiet --disable-pip-version-check --only-binary :all: \
  --dest "$wheels" "pytest>=7"
printf '%s\n' "$wanted" > "$stamp"
