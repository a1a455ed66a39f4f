#!/usr/bin/env bash
# The main job on the embedded default target (ONNX Runtime on this CPU), end to end:
# export -> convert fp32 and int8 -> predict (drawn results) -> bench (table, JSON, PNG).
# The weights are seeded random weights (no checkpoint can be downloaded here): the
# predictions are meaningless, the parity figures and throughputs are real.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-demo}"
mkdir -p "$OUT"
# the interpreter install.sh installed into (its .venv/ unless PYTHON or a venv was active)
PY="${PYTHON:-$(cat .venv-python 2>/dev/null || echo python3)}"
hr() { echo "+ hrdeploy $*"; "$PY" -m hrdeploy "$@"; }

hr list
hr samples "$OUT/images" --count 4 --seed 1
hr samples "$OUT/calib" --count 40 --seed 100
hr export hrnet_cls --variant w18 --random-weights -o "$OUT/hrnet_w18.onnx" --force
hr convert "$OUT/hrnet_w18.onnx" --target onnxruntime --precision fp32 -o "$OUT/hrnet_w18.ort-fp32" --force
hr convert "$OUT/hrnet_w18.onnx" --target onnxruntime --precision int8 --calib "$OUT/calib" --calib-count 32 \
   -o "$OUT/hrnet_w18.ort-int8" --force
hr predict "$OUT/hrnet_w18.ort-int8" "$OUT/images" --vis "$OUT/vis-cls"
hr bench "$OUT/hrnet_w18.ort-fp32" --batch 1,8 --seconds 3 --json "$OUT/bench-fp32.json" --plot "$OUT/bench-fp32.png"
hr bench "$OUT/hrnet_w18.ort-int8" --batch 1,8 --seconds 3 --json "$OUT/bench-int8.json" --plot "$OUT/bench-int8.png"
hr export hrnet_pose --variant w32_256x192 --random-weights -o "$OUT/pose_w32.onnx" --force
hr predict "$OUT/pose_w32.onnx" "$OUT/images" --vis "$OUT/vis-pose"
echo "demo outputs in $OUT/ (random weights: numbers are for parity and speed, not accuracy)"
