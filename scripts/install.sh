#!/usr/bin/env bash
# Install hrdeploy and every distribution of this repository (editable), with the CPU build of
# torch that `hrdeploy export` needs.
#
# Where: the interpreter named by $PYTHON, else the active virtual environment, else a virtual
# environment .venv/ in this checkout, created on first use (the machine's own Python is never
# touched). Safe to run again: it only re-points the editable installs at this checkout when
# everything else is already there. The interpreter used is written to .venv-python for demo.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -n "${VIRTUAL_ENV:-}" ]; then
    PYTHON="$VIRTUAL_ENV/bin/python"
  else
    [ -x .venv/bin/python ] || python3 -m venv .venv
    PYTHON="$PWD/.venv/bin/python"
  fi
fi
PY="$PYTHON"
echo "$PY" > .venv-python
pip_install() { "$PY" -m pip install --disable-pip-version-check "$@"; }

# torch first and pinned: anything that pulls torch unpinned would fetch a multi-GB CUDA build
"$PY" -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("2.13.0") else 1)' 2>/dev/null \
  || pip_install torch==2.13.0
pip_install setuptools wheel
DISTS=(. plugins/hrnet_cls plugins/tresnet plugins/hrnet_pose plugins/dekr targets/ascend targets/sophon targets/vastai targets/openvino)
# every distribution's declared dependencies from the registry (each pyproject is the truth,
# so a dependency missing there is missing here too), then the editable installs without
# build isolation (fast, offline)
pip_install ".[test,safetensors]"
"$PY" - "${DISTS[@]:1}" <<'PY' > .venv-requirements.txt
import sys, pathlib
try:
    import tomllib
except ImportError:  # Python 3.10
    from pip._vendor import tomli as tomllib
for d in sys.argv[1:]:
    deps = tomllib.loads((pathlib.Path(d) / "pyproject.toml").read_text())["project"]
    for req in deps.get("dependencies", []) + sum(deps.get("optional-dependencies", {}).values(), []):
        if not req.startswith("hrdeploy"):
            print(req)
PY
[ -s .venv-requirements.txt ] && pip_install -r .venv-requirements.txt
rm -f .venv-requirements.txt
args=()
for d in "${DISTS[@]}"; do args+=(-e "$d"); done
pip_install --no-deps --no-build-isolation "${args[@]}"
"$PY" -m hrdeploy list
echo "installed into $PY (activate with: source $(dirname "$PY")/activate)"
