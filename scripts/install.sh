#!/usr/bin/env bash
# Install hrdeploy and every distribution of this repository (editable) into the current Python,
# with the CPU build of torch that `hrdeploy export` needs. Safe to run again: it only re-points
# the editable installs at this checkout when everything else is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
pip_install() { "$PY" -m pip install --disable-pip-version-check "$@"; }

# torch first and pinned: anything that pulls torch unpinned would fetch a multi-GB CUDA build
"$PY" -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("2.13.0") else 1)' 2>/dev/null \
  || pip_install torch==2.13.0
pip_install setuptools wheel
DISTS=(. plugins/hrnet_cls plugins/tresnet plugins/hrnet_pose plugins/dekr targets/ascend targets/sophon targets/vastai)
# dependencies from the registry, then the editable installs without build isolation (fast, offline)
pip_install ".[test]"
args=()
for d in "${DISTS[@]}"; do args+=(-e "$d"); done
pip_install --no-deps --no-build-isolation "${args[@]}"
"$PY" -m hrdeploy list
