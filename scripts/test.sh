#!/usr/bin/env bash
# The test command (README, .ci/run): install this checkout, provision the Sophon toolchain
# (TPU-MLIR in its own Python 3.10 venv: seconds when already there, 7-14 min the first time on
# a new machine), then run the whole suite. Without the toolchain its tests skip and say why.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
bash scripts/install.sh > /tmp/hrdeploy-install.log 2>&1 || { cat /tmp/hrdeploy-install.log; exit 1; }
"$PY" -m hrdeploy toolchain install sophon > /tmp/hrdeploy-toolchain.log 2>&1 \
  || { tail -5 /tmp/hrdeploy-toolchain.log; echo "warning: Sophon toolchain not provisioned: its tests will be skipped"; }
exec "$PY" -m pytest "$@"
