#!/usr/bin/env python3
"""Issue 17's local figures in one run: the host pipeline per core and eval with 1 and 2 runners.

    python benchmarks/host_pipeline.py              # about 2-3 minutes on 2 cores
    python benchmarks/host_pipeline.py --quick      # about 1 minute

* host pipeline: JPEG decode + the ImageNet preprocessing of 500x375 photographs to 224x224
  float32 tensors (hrnet_cls's pipeline), the reference (Pillow resizes the whole image) and the
  compiled crop-only path (hrdeploy.tasks.pil_resample, byte-identical), in 1 process and in 2
  processes at once: images/s of wall time, images per CPU-second (what one core gives,
  whatever else the machine runs) and the 2-process/1-process ratio;
* eval on onnxruntime: the same evaluation with one runner (all cores) and with
  ``--replicas 2`` (two processes, one core each), for a host-bound model (channel means times
  a matrix: the host pipeline is the work) and HRNet-W18-small-v1 (seeded random weights; needs
  torch for the export, skipped without it); the predictions of both runs are checked equal.

Writes benchmarks/results/host-pipeline-<date>-<host>.json (and prints a table). Goals (issue
17): >= 650 img/s per core, >= 1.8x from 1 to 2 cores; nothing is asserted here.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


# -- inputs ------------------------------------------------------------------------------------------

def write_photos(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """n photograph-like 500x375 JPEGs (smooth shapes and texture, quality 90, like ImageNet's)."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        base = cv2.resize(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), (500, 375), interpolation=cv2.INTER_CUBIC)
        img = np.clip(base.astype(np.int16) + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
        path = folder / f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        out.append(path)
    return out


# -- host pipeline ------------------------------------------------------------------------------------

def _host_loop(paths: list[str], seconds: float, mode: str, start: Any, results: Any) -> None:
    """Decode + preprocess ``paths`` round and round for ``seconds`` in this process (one
    thread: what one core does); put (images, wall s, cpu s, decode s, preprocess s)."""
    import cv2

    cv2.setNumThreads(1)  # one core per process: OpenCV must not spread a decode over threads
    from hrdeploy.io import read_image
    from hrdeploy.tasks.classification import classification_variant, preprocess_image, reference_preprocess_image

    params = classification_variant("w18").preprocess
    prep = preprocess_image if mode == "fast" else reference_preprocess_image
    for p in paths[:4]:  # warm-up: numba's cached kernels load, Pillow allocates
        prep(read_image(Path(p)), params)
    start.wait()
    n, dec, pre = 0, 0.0, 0.0
    t0, c0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        for p in paths:
            a = time.perf_counter()
            image = read_image(Path(p))
            b = time.perf_counter()
            prep(image, params)
            dec += b - a
            pre += time.perf_counter() - b
            n += 1
    results.put((n, time.perf_counter() - t0, time.process_time() - c0, dec, pre))


def host_pipeline(paths: list[Path], seconds: float, mode: str, procs: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    start, results = ctx.Barrier(procs + 1), ctx.Queue()
    ps = [ctx.Process(target=_host_loop, args=([str(p) for p in paths], seconds, mode, start, results))
          for _ in range(procs)]
    for p in ps:
        p.start()
    start.wait()
    rows = [results.get(timeout=seconds * 10 + 300) for _ in ps]
    for p in ps:
        p.join()
    n = sum(r[0] for r in rows)
    wall = max(r[1] for r in rows)
    cpu = sum(r[2] for r in rows)
    return {"mode": mode, "processes": procs, "images": n, "images_per_second": round(n / wall, 1),
            "images_per_cpu_second": round(n / cpu, 1),
            "decode_ms": round(sum(r[3] for r in rows) * 1000 / n, 3),
            "preprocess_ms": round(sum(r[4] for r in rows) * 1000 / n, 3)}


# -- eval with 1 and 2 runners -------------------------------------------------------------------------

def _imagenet(root: Path, photos: list[Path]) -> Path:
    folder = root / "ILSVRC2012_img_val"
    folder.mkdir(parents=True, exist_ok=True)
    for p in photos:
        (folder / p.name).write_bytes(p.read_bytes())
    (root / "val_label.txt").write_text("".join(f"{p.name} {i % 1000}\n" for i, p in enumerate(photos)))
    return root


def _host_bound_onnx(path: Path) -> Path:
    """A global mean and a 3x1000 matrix (a few microseconds per image): eval then
    measures the host pipeline and hrdeploy's own overhead, with hrnet_cls/w18's metadata."""
    from onnx import helper, numpy_helper

    from hrdeploy.testing.graphs import save_classifier

    w = np.random.default_rng(0).standard_normal((3, 1000)).astype(np.float32)
    nodes = [helper.make_node("GlobalAveragePool", ["image"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("MatMul", ["f", "w"], ["logits"])]
    return save_classifier(path, nodes, [numpy_helper.from_array(w, "w")], "benchmark: host-bound mean + matmul",
                           opset=18, name="hostbound")


def _hrnet_onnx(path: Path) -> Path | None:
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    from hrdeploy.cli import main

    try:
        main(["export", "hrnet_cls", "--variant", "w18_small_v1", "--random-weights", "-o", str(path)])
    except SystemExit as e:
        if e.code:
            return None
    return path if path.is_file() else None


_RUN_FIELDS = {"timing", "created", "runner", "threads"}


def eval_pair(model: Path, data_root: Path, out: Path, batch: int) -> dict[str, Any]:
    from hrdeploy.devices import DevicePool
    from hrdeploy.evaluation import evaluate
    from hrdeploy.plugins import registry
    from hrdeploy.session import open_session

    data = f"imagenet:{data_root}"
    rows = {}
    docs = {}
    for name, opts, executor in (("1 runner", {}, None), ("2 runners", {"replicas": 2}, DevicePool)):
        with open_session(registry(), model, target_options=opts) as session:
            # a first, untimed pass: models load, numba's kernels and ORT's arenas warm up
            evaluate(session, data, out / f"warm-{len(rows)}.json", batch=batch, restart=True, log=lambda m: None,
                     executor=executor, limit=8)
            doc = evaluate(session, data, out / f"{len(rows)}.json", batch=batch, restart=True, log=lambda m: None,
                           executor=executor).document
        t = doc["timing"]
        opened = t.get("open_seconds") or 0.0
        rows[name] = {"images_per_second": t["images_per_second"],
                      "images_per_second_after_open": round(t["images"] / (t["seconds"] - opened), 1),
                      "open_seconds": opened, "per_worker": t["per_worker"], "runner": doc["runner"],
                      "per_image_ms": t["per_image_ms"]}
        docs[name] = {k: v for k, v in doc.items() if k not in _RUN_FIELDS}
    one, two = rows["1 runner"], rows["2 runners"]
    return {"model": str(model.name), "batch": batch, **rows,
            "ratio_2_over_1": round(two["images_per_second"] / one["images_per_second"], 3),
            "ratio_2_over_1_after_open": round(two["images_per_second_after_open"] / one["images_per_second_after_open"], 3),
            "results_equal": docs["1 runner"] == docs["2 runners"]}


# -- main ----------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1.5 s per host point, 96 eval images, no HRNet")
    p.add_argument("--seconds", type=float, help="measuring time per host-pipeline point (default 5, quick 1.5)")
    p.add_argument("--images", type=int, help="eval images (default 400, quick 96)")
    p.add_argument("--no-hrnet", action="store_true", help="skip the HRNet-W18-small eval pair")
    p.add_argument("-o", "--output", type=Path, help="result JSON (default benchmarks/results/host-pipeline-DATE-HOST.json)")
    p.add_argument("--wait-load", type=float, default=None,
                   help="first wait (at most --wait-max s) until the 1-minute load average is below this")
    p.add_argument("--wait-max", type=float, default=600)
    args = p.parse_args(argv)
    waited = 0.0
    if args.wait_load is not None:
        while os.getloadavg()[0] >= args.wait_load and waited < args.wait_max:
            time.sleep(15)
            waited += 15
    seconds = args.seconds or (1.5 if args.quick else 5.0)
    n_eval = args.images or (96 if args.quick else 400)
    from hrdeploy.tasks import pil_resample

    report: dict[str, Any] = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "host": os.uname().nodename,
        "cpus": os.cpu_count(), "load_before": list(os.getloadavg()), "compiled_path": pil_resample.available(),
        "seconds_per_point": seconds, "waited_for_load_seconds": waited,
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        photos = write_photos(tmpd / "photos", 32)
        host = []
        modes = ["reference"] + (["fast"] if pil_resample.available() else [])
        for mode in modes:
            for procs in (1, 2):
                print(f"host pipeline, {mode}, {procs} process(es) ...", file=sys.stderr)
                host.append(host_pipeline(photos, seconds, mode, procs))
        by = {(r["mode"], r["processes"]): r for r in host}
        report["host_pipeline"] = host
        report["host_ratios"] = {m: round(by[(m, 2)]["images_per_second"] / by[(m, 1)]["images_per_second"], 3)
                                 for m in modes}
        # per-CPU-second throughput of 2 processes over 1: ~1.0 means nothing is shared or serialised
        # between them (no lock, no GIL): the wall-time ratio then only depends on free cores
        report["host_cpu_efficiency_2_over_1"] = {
            m: round(by[(m, 2)]["images_per_cpu_second"] / by[(m, 1)]["images_per_cpu_second"], 3) for m in modes}
        if "fast" in modes:
            report["fast_over_reference_per_cpu_second"] = round(
                by[("fast", 1)]["images_per_cpu_second"] / by[("reference", 1)]["images_per_cpu_second"], 3)
        print(f"eval: {n_eval} images, 1 runner vs --replicas 2 ...", file=sys.stderr)
        root = _imagenet(tmpd / "inet", write_photos(tmpd / "evalphotos", n_eval, seed=1))
        evals = [eval_pair(_host_bound_onnx(tmpd / "hostbound.onnx"), root, tmpd, batch=8)]
        if not (args.quick or args.no_hrnet):
            hr = _hrnet_onnx(tmpd / "w18s.onnx")
            if hr is not None:
                evals.append(eval_pair(hr, root, tmpd, batch=8))
        report["eval"] = evals
    report["load_after"] = list(os.getloadavg())
    out = args.output or HERE / "results" / f"host-pipeline-{report['created'][:10]}-{report['host']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nload average before {report['load_before'][0]:.1f}, after {report['load_after'][0]:.1f} ({report['cpus']} cpus)")
    print(f"{'host pipeline':<28}{'img/s':>10}{'img/cpu-s':>11}{'decode ms':>11}{'pre ms':>9}")
    for r in host:
        print(f"{r['mode'] + ', ' + str(r['processes']) + ' proc':<28}{r['images_per_second']:>10.1f}"
              f"{r['images_per_cpu_second']:>11.1f}{r['decode_ms']:>11.3f}{r['preprocess_ms']:>9.3f}")
    print("2 procs / 1 proc: " + ", ".join(f"{m} {v:.2f}x" for m, v in report["host_ratios"].items())
          + "; per CPU-second: " + ", ".join(f"{m} {v:.2f}x" for m, v in report["host_cpu_efficiency_2_over_1"].items()))
    for e in evals:
        print(f"eval {e['model']}: 1 runner {e['1 runner']['images_per_second']:.1f} img/s, 2 runners "
              f"{e['2 runners']['images_per_second']:.1f} img/s ({e['ratio_2_over_1']:.2f}x; "
              f"{e['ratio_2_over_1_after_open']:.2f}x without the {e['2 runners']['open_seconds']:.1f} s to open them), "
              f"results equal: {e['results_equal']}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
