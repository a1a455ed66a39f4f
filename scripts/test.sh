#!/usr/bin/env bash
# The test command (README, .ci/run): install this checkout, then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh > /tmp/hrdeploy-install.log 2>&1 || { cat /tmp/hrdeploy-install.log; exit 1; }
exec "${PYTHON:-python3}" -m pytest "$@"
