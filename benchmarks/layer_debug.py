"""Issue 16's figures: ``hrdeploy debug`` and ``convert --accuracy-budget`` on HRNet-W18-C.

Runs the commands a user runs (``python -m hrdeploy ...``), in one process tree, and writes
``benchmarks/results/layer-debug-<date>.{json,md}``:

* ``debug`` of the fp32 onnxruntime artifact: the lowest layer cosine (no false alarm: >= 0.99999);
* one convolution's weights corrupted (x -4) inside the int8 artifact, at three depths: is it
  named as the first diverging layer?
* ``convert --precision int8 --accuracy-budget cosine=0.9999``: met? how many layers in float?
* device-only throughput at batch 8 of fp32, full int8 and the budgeted build, best of
  ``--rounds`` alternating rounds (ratios in one run, never absolute figures across runs).

    python benchmarks/layer_debug.py [--out DIR] [--rounds 3] [--seconds 5] [--variant w18]

Seeded random weights (no checkpoint can be downloaded here): accuracy figures are agreement
with fp32, not ImageNet accuracy.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def hr(*args: Any, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "hrdeploy", *map(str, args)]
    print("+ hrdeploy " + " ".join(map(str, args)), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode not in (0, 1):
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return proc


def bench_ips(folder: Path, seconds: float, work: Path) -> float:
    out = work / f"bench-{folder.name}.json"
    hr("bench", folder, "--batch", "8", "--seconds", seconds, "--no-e2e", "--json", out)
    return float(json.loads(out.read_text())["results"][0]["device_ips"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    ap.add_argument("--variant", default="w18")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--budget", default="cosine=0.9999")
    args = ap.parse_args()
    from hrdeploy.testing.layers import conv_nodes, corrupt_artifact_conv

    doc: dict[str, Any] = {"variant": args.variant, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                           "budget": args.budget, "weights": "seeded random (hrdeploy export --random-weights)"}
    with tempfile.TemporaryDirectory(prefix="hrdeploy-bench16-") as tmp:
        w = Path(tmp)
        hr("samples", w / "calib", "--count", 40, "--seed", 100)
        hr("export", "hrnet_cls", "--variant", args.variant, "--random-weights", "-o", w / "m.onnx")
        hr("convert", w / "m.onnx", "--target", "onnxruntime", "--precision", "fp32", "-o", w / "fp32")
        hr("convert", w / "m.onnx", "--target", "onnxruntime", "--precision", "int8", "--calib", w / "calib",
           "--calib-count", 24, "-o", w / "int8")

        t0 = time.perf_counter()
        p = hr("debug", w / "fp32", "--source", w / "m.onnx", "--json", w / "fp32.json")
        fp = json.loads((w / "fp32.json").read_text())
        doc["fp32_debug"] = {"exit_code": p.returncode, "layers_compared": fp["layers_compared"],
                             "min_cosine": fp["min_cosine"], "first_below": fp["first_below_threshold"],
                             "seconds": round(time.perf_counter() - t0, 1)}
        p = hr("debug", w / "int8", "--source", w / "m.onnx", "--json", w / "int8.json", "--plot", w / "int8.png")
        q = json.loads((w / "int8.json").read_text())
        doc["int8_debug"] = {"exit_code": p.returncode, "layers_compared": q["layers_compared"],
                             "min_cosine": q["min_cosine"], "origin": q["origin"],
                             "first_below": (q["first_below_threshold"] or {}).get("tensor")}
        convs = conv_nodes(w / "m.onnx")
        doc["corrupted"] = []
        for frac in (0.2, 0.5, 0.8):
            node, tensor = convs[int(len(convs) * frac)]
            bad = w / f"bad-{frac}"
            shutil.copytree(w / "int8", bad)
            corrupt_artifact_conv(bad, node, factor=-4.0)
            hr("debug", bad, "--source", w / "m.onnx", "--json", w / "bad.json")
            d = json.loads((w / "bad.json").read_text())
            origin = d["origin"] or {}
            doc["corrupted"].append({"conv": node, "depth": frac, "named_first_diverging": origin.get("converted") == f"{node} (Conv)",
                                     "origin": origin.get("converted"), "origin_tensor": origin.get("tensor"),
                                     "origin_cosine": origin.get("cosine"), "origin_noise_db": origin.get("added_noise_db")})

        t0 = time.perf_counter()
        p = hr("convert", w / "m.onnx", "--target", "onnxruntime", "--precision", "int8", "--calib", w / "calib",
               "--calib-count", 24, "--accuracy-budget", args.budget, "-o", w / "budget")
        rec = json.loads((w / "budget" / "manifest.json").read_text())["accuracy_budget"]
        doc["budget_run"] = {"exit_code": p.returncode, "met": rec["met"], "layers_in_float": len(rec["kept_float"]),
                             "builds": len(rec["steps"]), "seconds": round(time.perf_counter() - t0, 1),
                             "steps": [{k: s.get(k) for k in ("layers_in_float", "why", "min_cosine", "met")} for s in rec["steps"]]}

        best: dict[str, float] = {}
        for _ in range(args.rounds):  # alternating rounds: a slow spell hits every build alike
            for name in ("fp32", "int8", "budget"):
                best[name] = max(best.get(name, 0.0), bench_ips(w / name, args.seconds, w))
        doc["throughput_bs8"] = best
        doc["ratios"] = {"int8_over_fp32": round(best["int8"] / best["fp32"], 3),
                         "budget_over_fp32": round(best["budget"] / best["fp32"], 3),
                         "goal_budget_over_fp32": 1.8}
        args.out.mkdir(parents=True, exist_ok=True)
        stem = f"layer-debug-{dt.date.today().isoformat()}"
        shutil.copyfile(w / "int8.png", args.out / f"{stem}-int8.png")
    (args.out / f"{stem}.json").write_text(json.dumps(doc, indent=2))
    lines = [f"# hrdeploy debug and --accuracy-budget on HRNet-{args.variant.upper()}-C ({doc['created']})", "",
             f"- fp32 artifact: {doc['fp32_debug']['layers_compared']} layers, lowest cosine "
             f"{doc['fp32_debug']['min_cosine']:.7f} (exit {doc['fp32_debug']['exit_code']})",
             f"- int8 artifact: {doc['int8_debug']['layers_compared']} layers, lowest cosine {doc['int8_debug']['min_cosine']:.5f}"]
    for c in doc["corrupted"]:
        lines.append(f"- corrupted {c['conv']} (depth {c['depth']:.0%}): named first diverging: "
                     f"{c['named_first_diverging']} (cosine {c['origin_cosine']:.3f}, noise {c['origin_noise_db']:.1f} dB)")
    b = doc["budget_run"]
    lines += [f"- budget {args.budget}: met {b['met']}, {b['layers_in_float']} layers in float, {b['builds']} builds, {b['seconds']} s",
              f"- batch 8 img/s (best of {args.rounds}): fp32 {best['fp32']:.1f}, int8 {best['int8']:.1f} "
              f"({doc['ratios']['int8_over_fp32']:.2f}x), budgeted {best['budget']:.1f} ({doc['ratios']['budget_over_fp32']:.2f}x; goal 1.8x)"]
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
