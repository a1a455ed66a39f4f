#!/usr/bin/env python3
"""Measured effect of candidate changes to the product's fast path, without editing it.

    python benchmarks/experiments.py threading [--model hrnet_cls/w18] [--batch 8] [--seconds 4]
    python benchmarks/experiments.py dekr_adapt [--rounds 2]

``threading``: end-to-end (hrdeploy.benchmark.end_to_end, the streaming loop of eval) and
device-only throughput of the cached fp32 and int8 artifacts under variants of the session
options and the decode/preprocess worker count. Each variant is a runner built exactly like
``OrtRunner`` with one thing changed; it uses the models run.py cached in benchmarks/.cache.
``dekr_adapt``: DEKR's adaptive convolutions exported as GridSample + a 1x1 Conv vs ONNX DeformConv
(it exports both).
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

    from hrdeploy.ort_runner import OrtRunner, session_options

    runner = OrtRunner(path, threads=threads)
    so = session_options(threads)
    change(so)
    runner.session = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    return runner


def threading(args: argparse.Namespace) -> None:
    from hrdeploy.benchmark import device_only, end_to_end
    from hrdeploy.plugins import registry
    from hrdeploy.session import Session, open_session

    from hrbench.suite import PLANS, write_jpegs

    plan = next(p for p in PLANS if p.key == args.model)
    folder = HERE / ".cache" / plan.key.replace("/", "-")
    reg = registry()
    images = write_jpegs(Path("/tmp/hrbench-exp"), 16, plan.image_size, plan.landscape_only, seed=11)

    def config(**entries: str) -> Callable[[Any], None]:
        def change(so: Any) -> None:
            for k, v in entries.items():
                so.add_session_config_entry(k, v)
        return change

    no_spin = config(**{"session.intra_op.allow_spinning": "0"})
    spin = config(**{"session.intra_op.allow_spinning": "1", "session.force_spinning_stop": "0"})
    stop_spin = config(**{"session.force_spinning_stop": "1"})
    variants: list[tuple[str, Callable[[Any], None] | None, int | None, int]] = [
        ("product", None, None, args.threads),
        ("spinning on, kept after Run", spin, None, args.threads),
        ("allow_spinning=0", no_spin, None, args.threads),
        ("force_spinning_stop=1", stop_spin, None, args.threads),
        ("product, 1 prep worker", None, 1, args.threads),
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


def dekr_adapt(args: argparse.Namespace) -> None:
    """DEKR's adaptive convolutions exported as GridSample + a 1x1 Conv (``--opt adapt_conv=grid_sample``,
    opset 17: the plugin's default, what the vendor compilers take) vs one ONNX DeformConv node
    each (``--opt adapt_conv=deformconv --opset 19``): device-only speed at 512x768 and agreement
    of the outputs, same seeded weights."""
    import tempfile
    import time

    import numpy as np

    from hrdeploy.onnx_export import export
    from hrdeploy.reference import reference_inputs
    from hrdeploy.plugins import registry
    from hrdeploy.ort_runner import OrtRunner

    from hrbench.compat import batch_safe_reference_runs

    reg = registry()
    spec = reg.model("dekr")
    var = spec.variant("w32")
    tmp = Path(tempfile.mkdtemp())
    paths = {}
    for impl, opset in (("grid_sample", 17), ("deformconv", 19)):
        t0 = time.perf_counter()
        path = tmp / f"dekr_{impl}.onnx"
        with batch_safe_reference_runs():
            export(spec, var, path, weights=None, random_weights=True, seed=0, opset=opset,
                   options={"adapt_conv": impl}, log=lambda _m: None)
        print(f"exported the {impl} form in {time.perf_counter() - t0:.0f} s (parity vs PyTorch passed)")
        paths[f"{impl} (opset {opset})"] = path
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
    p.add_argument("experiment", choices=["threading", "dekr_adapt"])
    p.add_argument("--model", default="hrnet_cls/w18")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = p.parse_args()
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    sys.path.insert(0, str(HERE))
    {"threading": threading, "dekr_adapt": dekr_adapt}[args.experiment](args)


if __name__ == "__main__":
    main()
