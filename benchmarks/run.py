#!/usr/bin/env python3
"""hrdeploy's benchmark suite: one command, one machine, every figure of issue 8.

    python benchmarks/run.py            # full run (< 30 min on 2 cores; waits for a quiet machine first)
    python benchmarks/run.py --quick    # hrnet_cls w18 only, batch 1 and 8, 1 s per point (< 3 min)

Writes benchmarks/results/<date>-<host>.{json,md,png}; see benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="hrnet_cls/w18 only, batches 1,8, 1 s per point, 1 round, no waiting for a quiet machine")
    p.add_argument("--models", help="comma-separated model names or model/variant keys "
                                    "(default: hrnet_cls/w18,tresnet/m,hrnet_pose/w32_256x192,dekr/w32)")
    p.add_argument("--batch", help="batch sizes for every dynamic-batch model, e.g. 1,4,8,16,32,64 "
                                   "(default per model: 1,4,8,16; DEKR always runs batch 1)")
    p.add_argument("--seconds", type=float, help="measuring time per point and series (default 3, quick 1)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up runs per point and series (default 1)")
    p.add_argument("--rounds", type=int, help="alternating rounds of the device-only series; each figure is the best round (default 2, quick 1)")
    p.add_argument("--threads", type=int, help="threads for ONNX Runtime, PyTorch and BLAS "
                                               "(default: the cores available to this process)")
    p.add_argument("--eval-images", type=int, help="generated ImageNet images for the eval check (default 64, quick 24)")
    p.add_argument("--wait-load", type=float, default=1.5,
                   help="before measuring, wait until the 1-minute load average is below this (default 1.5)")
    p.add_argument("--wait-max", type=float, default=1200, help="give up waiting after this many seconds (default 1200)")
    p.add_argument("--no-wait", action="store_true", help="measure at once, whatever the load")
    p.add_argument("--rebuild", action="store_true", help="re-export and re-convert the cached models")
    p.add_argument("--build-only", action="store_true", help="only export and convert the models into the cache")
    p.add_argument("--cache", type=Path, default=HERE / ".cache", help="model cache (default benchmarks/.cache)")
    p.add_argument("--out-dir", type=Path, default=HERE / "results", help="results folder (default benchmarks/results)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    threads = args.threads or len(os.sched_getaffinity(0))
    # BLAS pools size themselves when numpy is first imported: fix them before that happens
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    sys.path.insert(0, str(HERE))

    from hrbench.suite import PLANS, Settings, run, select

    quick = args.quick
    if quick and args.models is None:
        args.models = PLANS[0].key
    if args.batch:
        try:
            batches = sorted({int(b) for b in args.batch.split(",") if b.strip()})
        except ValueError:
            print(f"--batch expects comma-separated integers, got {args.batch!r}", file=sys.stderr)
            return 2
    else:
        batches = [1, 8] if quick else None

    def log(msg: str) -> None:
        print(msg, flush=True)

    settings = Settings(
        models=select(args.models), batches=batches,
        seconds=args.seconds or (1.0 if quick else 3.0), warmup=args.warmup if not quick else min(args.warmup, 1),
        rounds=args.rounds or (1 if quick else 2), threads=threads,
        eval_images=args.eval_images or (24 if quick else 64), peak_seconds=1.5 if quick else 3.0,
        wait_load=None if (args.no_wait or quick) else args.wait_load, wait_max=args.wait_max,
        rebuild=args.rebuild, build_only=args.build_only, cache=args.cache, out_dir=args.out_dir, quick=quick, log=log,
        command="python benchmarks/run.py" + "".join(" " + shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
    )
    results = run(settings)
    if results is None:  # --build-only
        return 0
    return 0 if all(r["passed"] is not False for r in results["checks"] if r["required"]) else 1


if __name__ == "__main__":
    sys.exit(main())
