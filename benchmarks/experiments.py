#!/usr/bin/env python3
"""Measured effect of candidate changes to the product's fast path, without editing it.

    python benchmarks/experiments.py threading [--model hrnet_cls/w18] [--batch 8] [--seconds 4]
    python benchmarks/experiments.py preprocess [--rounds 3]
    python benchmarks/experiments.py dekr_adapt [--rounds 2]

``threading``: end-to-end (hrdeploy.bench.end_to_end, the streaming loop of eval) and
device-only throughput of the cached fp32 and int8 artifacts under variants of the session
options and the decode/preprocess worker count. Each variant is a runner built exactly like
``OrtRunner`` with one thing changed.
``preprocess``: eval throughput with the classification resize computed in int32 instead of
int64 (byte-identical, checked). ``dekr_adapt``: DEKR's adaptive convolutions as GridSample +
MatMul vs ONNX DeformConv. All use the models run.py cached in benchmarks/.cache.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent


def _runner_with(path: Path, threads: int, change: Callable[[Any], None]) -> Any:
    import onnxruntime as ort

    from hrdeploy.targets.onnxruntime.runner import OrtRunner, session_options

    runner = OrtRunner(path, threads=threads)
    so = session_options(threads)
    change(so)
    runner.session = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    return runner


def threading(args: argparse.Namespace) -> None:
    from hrdeploy.bench import device_only, end_to_end
    from hrdeploy.plugins import registry
    from hrdeploy.session import Session, open_session

    from hrbench.suite import PLANS, write_jpegs

    plan = next(p for p in PLANS if p.key == args.model)
    folder = HERE / ".cache" / plan.key.replace("/", "-")
    reg = registry()
    images = write_jpegs(Path("/tmp/hrbench-exp"), 16, plan.image_size, plan.landscape_only, seed=11)

    def no_spin(so: Any) -> None:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")

    variants: list[tuple[str, Callable[[Any], None] | None, int | None, int]] = [
        ("product (spinning on, 2 prep workers)", None, None, args.threads),
        ("allow_spinning=0", no_spin, None, args.threads),
        ("1 prep worker", None, 1, args.threads),
        ("allow_spinning=0, 1 prep worker", no_spin, 1, args.threads),
    ]
    for prec in ("fp32", "int8"):
        base = open_session(reg, folder / f"ort-{prec}", target_options={"threads": args.threads})
        for rnd in range(args.rounds):
            for label, change, workers, threads in variants:
                runner = base.runner if change is None else _runner_with(base.artifact.file("model"), threads, change)
                sess = Session(base.artifact, base.spec, base.variant, base.target, runner)
                d = device_only(sess, args.batch, args.seconds, 2)
                e = end_to_end(sess, args.batch, args.seconds, images, {}, workers)
                t = e["e2e_per_image_ms"]
                print(f"{prec} round {rnd} | {label:40s} | device {d['device_ips']:6.2f} | e2e {e['e2e_ips']:6.2f} "
                      f"| e2e/device {e['e2e_ips'] / d['device_ips']:.3f} | ms/img dec {t['decode']:.1f} "
                      f"pre {t['preprocess']:.1f} inf {t['infer']:.1f} post {t['postprocess']:.1f} "
                      f"| load {os.getloadavg()[0]:.2f}", flush=True)


def resize_short_crop_int32(rgb: Any, short: int, crop: int, interpolation: str) -> Any:
    """``hrdeploy.tasks.classification.resize_short_crop`` with the PIL fixed-point sums in
    int32 on uint8 gathers instead of int64 on an int64 copy of the band: exact, because
    255 * 2^22 (a full weight sum) + 2^21 (rounding) < 2^31."""
    import numpy as np

    from hrdeploy.tasks import classification as C

    if interpolation != "pil-bilinear":
        return _ORIGINAL_RESIZE(rgb, short, crop, interpolation)
    h, w = rgb.shape[:2]
    if w <= h:
        new_w, new_h = short, int(short * h / w)
    else:
        new_h, new_w = short, int(short * w / h)
    top, left = int(round((new_h - crop) / 2.0)), int(round((new_w - crop) / 2.0))
    if (new_h, new_w) == (h, w) or new_h < crop or new_w < crop:
        return _ORIGINAL_RESIZE(rgb, short, crop, interpolation)
    xi, xw = C._pil_bilinear_taps(w, new_w, left, crop)
    yi, yw = C._pil_bilinear_taps(h, new_h, top, crop)
    xw32, yw32 = xw.astype(np.int32), yw.astype(np.int32)
    lo, hi = int(yi[yw > 0].min()), int(yi[yw > 0].max()) + 1
    band = rgb[lo:hi]
    acc = band[:, xi[:, 0]] * xw32[:, 0, None]
    for k in range(1, xi.shape[1]):
        acc += band[:, xi[:, k]] * xw32[:, k, None]
    horiz = np.clip((acc + (1 << 21)) >> 22, 0, 255).astype(np.uint8)
    rows = np.clip(yi - lo, 0, hi - lo - 1)
    acc = horiz[rows[:, 0]] * yw32[:, 0, None, None]
    for k in range(1, yi.shape[1]):
        acc += horiz[rows[:, k]] * yw32[:, k, None, None]
    return np.clip((acc + (1 << 21)) >> 22, 0, 255).astype(np.uint8)


_ORIGINAL_RESIZE: Any = None


def preprocess(args: argparse.Namespace) -> None:
    """eval throughput / device-only at batch 8 with the product's classification resize and
    with the int32 version (byte-identical output, checked first), alternating."""
    import tempfile
    import time

    import numpy as np

    from hrdeploy.bench import device_only
    from hrdeploy.evaluate import evaluate
    from hrdeploy.io import read_image
    from hrdeploy.plugins import registry
    from hrdeploy.session import open_session
    from hrdeploy.tasks import classification as C

    from hrbench.suite import imagenet_folder

    global _ORIGINAL_RESIZE
    _ORIGINAL_RESIZE = C.resize_short_crop
    root = imagenet_folder(Path(tempfile.mkdtemp()) / "imagenet", 64)
    images = sorted((root / "ILSVRC2012_img_val").glob("*.JPEG"))
    cost = {}
    for name, fn in (("product int64", _ORIGINAL_RESIZE), ("int32", resize_short_crop_int32)):
        rgbs = [read_image(p)[:, :, ::-1] for p in images[:16]]
        t0 = time.perf_counter()
        outs = [fn(r, 256, 224, "pil-bilinear") for r in rgbs for _ in range(3)]
        cost[name] = (time.perf_counter() - t0) / len(outs) * 1000
        if name == "int32":
            ref = [_ORIGINAL_RESIZE(r, 256, 224, "pil-bilinear") for r in rgbs]
            assert all(np.array_equal(a, b) for a, b in zip(ref, outs[::3])), "int32 resize differs"
    print("resize ms/img (one thread): " + ", ".join(f"{k} {v:.2f}" for k, v in cost.items()) + " (outputs identical)")
    reg = registry()
    folder = HERE / ".cache" / "hrnet_cls-w18"
    for prec in ("fp32", "int8"):
        sess = open_session(reg, folder / f"ort-{prec}", target_options={"threads": args.threads})
        for rnd in range(args.rounds):
            d = device_only(sess, args.batch, args.seconds, 1)
            for label, fn in (("product int64 resize", _ORIGINAL_RESIZE), ("int32 resize", resize_short_crop_int32)):
                C.resize_short_crop = fn
                try:
                    ev = evaluate(sess, f"imagenet:{root}", Path(tempfile.mkdtemp()) / "e.json", batch=args.batch,
                                  log=lambda _m: None)
                finally:
                    C.resize_short_crop = _ORIGINAL_RESIZE
                t = ev["timing"]
                print(f"{prec} round {rnd} | {label:22s} | device {d['device_ips']:6.2f} | eval {t['images_per_second']:6.2f} "
                      f"| eval/device {t['images_per_second'] / d['device_ips']:.3f} | ms/img {t['per_image_ms']} "
                      f"| load {os.getloadavg()[0]:.2f}", flush=True)


def dekr_adapt(args: argparse.Namespace) -> None:
    """DEKR's adaptive convolutions exported as GridSample + MatMul (the plugin's default) vs
    one ONNX DeformConv node each (HRDEPLOY_DEKR_ADAPT_CONV=deformconv, opset 19): device-only
    speed at 512x768 and agreement of the outputs, same seeded weights."""
    import tempfile
    import time

    import numpy as np

    from hrdeploy.export import export, reference_inputs
    from hrdeploy.plugins import registry
    from hrdeploy.targets.onnxruntime.runner import OrtRunner

    from hrbench.compat import batch_safe_reference_runs

    reg = registry()
    spec = reg.model("dekr")
    var = spec.variant("w32")
    tmp = Path(tempfile.mkdtemp())
    paths = {"grid_sample (opset 17)": HERE / ".cache" / "dekr-w32" / "ort-fp32" / "model.onnx"}
    os.environ["HRDEPLOY_DEKR_ADAPT_CONV"] = "deformconv"
    t0 = time.perf_counter()
    with batch_safe_reference_runs():
        export(spec, var, tmp / "dekr_deformconv.onnx", weights=None, random_weights=True, seed=0, opset=19,
               log=lambda _m: None)
    del os.environ["HRDEPLOY_DEKR_ADAPT_CONV"]
    print(f"exported the DeformConv form in {time.perf_counter() - t0:.0f} s (parity vs PyTorch passed)")
    paths["DeformConv (opset 19)"] = tmp / "dekr_deformconv.onnx"
    x = reference_inputs(spec, var, None, count=1)
    outs = {}
    runners = {k: OrtRunner(p, threads=args.threads) for k, p in paths.items()}
    for r in range(args.rounds):
        for label, runner in runners.items():
            feeds = {runner.input_name: x}
            outs[label] = runner.run(feeds)
            t0 = time.perf_counter()
            n = 0
            while n < 3 or time.perf_counter() - t0 < args.seconds:
                runner.run(feeds)
                n += 1
            ms = (time.perf_counter() - t0) / n * 1000
            print(f"round {r} | {label:24s} | {ms:7.0f} ms per 512x768 image ({1000 / ms:.3f} img/s) "
                  f"| load {os.getloadavg()[0]:.2f}", flush=True)
    a, b = outs.values()
    for name, u, v in zip(var.outputs, a, b):
        rel = float(np.abs(u - v).max() / np.abs(u).max())
        print(f"{name}: max |diff| / max |ref| = {rel:.2e}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("experiment", choices=["threading", "preprocess", "dekr_adapt"])
    p.add_argument("--model", default="hrnet_cls/w18")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = p.parse_args()
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    sys.path.insert(0, str(HERE))
    {"threading": threading, "preprocess": preprocess, "dekr_adapt": dekr_adapt}[args.experiment](args)


if __name__ == "__main__":
    main()
