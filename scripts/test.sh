#!/usr/bin/env bash
# The test command (README, .ci/run). A virtual environment created fresh for this run is the
# reference, not whatever the machine's Python happens to have: a dependency that no pyproject
# declares fails here instead of landing. Then: install this checkout into it, provision the
# Sophon toolchain (TPU-MLIR in its own Python 3.10 venv, cached under ~/.cache/hrdeploy:
# seconds when already there, a few minutes the first time; without it its tests skip and say
# why), and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${HRDEPLOY_TEST_VENV:-$PWD/.venv-test}"
rm -rf "$VENV"
python3 -m venv "$VENV"
PY="$VENV/bin/python"
PYTHON="$PY" bash scripts/install.sh > /tmp/hrdeploy-install.log 2>&1 || { cat /tmp/hrdeploy-install.log; exit 1; }
# the `ray` extra (eval --ray; tests/test_ray_*.py), as pyproject.toml bounds it; not in a default install
"$PY" -m pip install --disable-pip-version-check "$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["ray"][0])')" \
  >> /tmp/hrdeploy-install.log 2>&1 || { tail -20 /tmp/hrdeploy-install.log; exit 1; }
"$PY" -m hrdeploy toolchain install sophon > /tmp/hrdeploy-toolchain.log 2>&1 \
  || { tail -5 /tmp/hrdeploy-toolchain.log; echo "warning: Sophon toolchain not provisioned: its tests will be skipped"; }
exec "$PY" -m pytest "$@"
