"""Issue 17: what ``eval --ray`` costs against the local paths, on this machine.

    python benchmarks/ray_overhead.py [--images 96] [--rounds 2] [--out benchmarks/results/ray-DATE-HOST.json]

Everything runs through :func:`hrdeploy.evaluation.evaluate` on generated 500x375 JPEGs in an
ImageNet layout, with a local Ray started here (``ray.init(num_cpus=CORES)``):

* **Ray's overhead per sample**: a near-free classifier (channel means @ a matrix, the tests'
  colour model), so a sample's time is decode + preprocessing + the path's own cost. Local:
  the one runner of this process (``--workers 1``, 1 thread); Ray: one actor of one CPU. The
  overhead is the difference of their steady per-sample times; the Ray run's fixed cost (the
  Dataset built from the image bytes, the actor pool started, the artifact shipped and
  opened) is its wall time minus its steady part.
* **the Ray path at equal workers**: HRNet-W18-C (seeded random weights, fp32 onnxruntime),
  1 worker = one local runner of 1 thread vs one actor of 1 CPU; 2 workers = ``--replicas 2``
  (two local runner processes of 1 thread, :class:`hrdeploy.devices.DevicePool`) vs two
  actors of 1 CPU. Goal: Ray >= 0.8x local.

Each configuration is evaluated on the first N/3 and on all N images (``--limit``; N is
``--images`` for HRNet, ``--overhead-images`` for the near-free model): the per-image cost is
the slope, (wall(N) - wall(N/3)) / (N - N/3), which leaves out every fixed
cost (pool start, shipping the artifact, Ray Data's planning) and is what a long evaluation
converges to; the fixed cost is wall(N) - N x slope. Wall times are ``evaluate``'s own, best of
``--rounds`` alternating rounds (other processes only slow a run down). The JSON has every run.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the colour classifier builder of the tests


def build(cache: Path, images: int, log: Callable[[str], None]) -> dict[str, Path]:
    from hrdeploy.synthetic import write_images

    cache.mkdir(parents=True, exist_ok=True)
    data = cache / f"imagenet-{images}"
    if not (data / "val_label.txt").is_file():
        paths = write_images(data / "ILSVRC2012_img_val", images, seed=1700, prefix="ILSVRC2012_val")
        (data / "val_label.txt").write_text("".join(f"{p.name} {i % 1000}\n" for i, p in enumerate(paths)))
    colour = cache / "colour.onnx"
    if not colour.is_file():
        from classification_data import colour_classifier_onnx

        colour_classifier_onnx(colour)
    w18 = cache / "w18.onnx"
    if not w18.is_file():
        from hrdeploy.cli import main

        log("exporting HRNet-W18-C (seeded random weights) once into the cache")
        try:
            main(["export", "hrnet_cls", "--variant", "w18", "--random-weights", "-o", str(w18)])
        except SystemExit as e:
            if e.code:
                raise
    return {"data": data, "colour": colour, "w18": w18}


def run_once(model: Path, data: Path, out: Path, path: str, workers: int, limit: int | None) -> dict[str, Any]:
    """One evaluation; ``path`` is "local" or "ray"; ``workers`` runners or actors of 1 thread."""
    from hrdeploy.cluster import ray_executor
    from hrdeploy.devices import device_pool
    from hrdeploy.evaluation import evaluate
    from hrdeploy.plugins import registry
    from hrdeploy.session import open_session

    options: dict[str, Any] = {"threads": 1}
    factory = None
    if path == "local" and workers > 1:
        options["replicas"] = workers
        factory = device_pool(None)
    elif path == "ray":
        factory = ray_executor("auto", actors=workers, log=lambda _m: None)
    with open_session(registry(), model, target_options=options) as session:
        t0 = time.perf_counter()
        res = evaluate(session, f"imagenet:{data}", out, restart=True, workers=1, limit=limit, log=lambda _m: None,
                       executor=factory).document
        wall = time.perf_counter() - t0
    n = res["timing"]["images"]
    return {"path": path, "workers": workers, "images": n, "wall_s": round(wall, 3),
            "wall_img_s": round(n / wall, 3),
            "per_image_ms": res["timing"]["per_image_ms"], "per_worker": res["timing"]["per_worker"],
            "top1": res["metric"]["top1"]}


def slope(runs: list[dict[str, Any]], small: int, large: int) -> dict[str, float]:
    """Per-image ms from the best wall time at each size, and the fixed seconds."""
    w_small = min(r["wall_s"] for r in runs if r["images"] == small)
    w_large = min(r["wall_s"] for r in runs if r["images"] == large)
    per = (w_large - w_small) / (large - small)
    return {"ms_per_image": round(per * 1000, 3), "img_s": round(1 / per, 3) if per > 0 else float("nan"),
            "fixed_s": round(w_large - large * per, 3), "wall_s": {str(small): w_small, str(large): w_large}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--overhead-images", type=int, default=1200, help="images of the near-free model")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / ".cache" / "ray_overhead")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    import ray

    paths = build(args.cache, args.images, log)
    # the near-free model needs many images: its slope is a ms or two a sample, the fixed cost seconds
    many = build(args.cache, args.overhead_images, log)["data"]
    cores = len(os.sched_getaffinity(0))
    load_before = os.getloadavg()
    t_init = time.perf_counter()
    ray.init(address="local", num_cpus=cores, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    init_s = time.perf_counter() - t_init
    work = args.cache / "runs"
    sizes = {"overhead": (args.overhead_images // 3, args.overhead_images), "w18": (max(2, args.images // 3), args.images)}
    data = {"overhead": many, "w18": paths["data"]}
    configs = [("overhead", paths["colour"], "local", 1), ("overhead", paths["colour"], "ray", 1),
               ("w18", paths["w18"], "local", 1), ("w18", paths["w18"], "ray", 1)]
    if cores >= 2:
        configs += [("w18", paths["w18"], "local", 2), ("w18", paths["w18"], "ray", 2)]
    rounds: dict[str, list[dict[str, Any]]] = {}
    try:
        for r in range(args.rounds):
            for name, model, path, workers in configs:
                key = f"{name}/{path}/{workers}"
                for limit in sizes[name]:
                    log(f"round {r + 1}/{args.rounds}: {key}, {limit} images")
                    rounds.setdefault(key, []).append(run_once(
                        model, data[name], work / f"{name}-{path}-{workers}.json", path, workers, limit))
    finally:
        ray.shutdown()
    fits = {key: slope(runs, *sizes[key.split("/")[0]]) for key, runs in rounds.items()}
    figures: dict[str, Any] = {"per_config": fits}
    loc, ry = fits["overhead/local/1"], fits["overhead/ray/1"]
    figures["overhead"] = {"local_ms_per_image": loc["ms_per_image"], "ray_ms_per_image": ry["ms_per_image"],
                           "ray_overhead_ms_per_image": round(ry["ms_per_image"] - loc["ms_per_image"], 3),
                           "ray_fixed_s": ry["fixed_s"], "local_fixed_s": loc["fixed_s"], "ray_init_s": round(init_s, 3)}
    for workers in (1, 2):
        if f"w18/local/{workers}" not in fits:
            continue
        lo, ra = fits[f"w18/local/{workers}"], fits[f"w18/ray/{workers}"]
        figures[f"w18_{workers}_workers"] = {
            "local_img_s": lo["img_s"], "ray_img_s": ra["img_s"], "ratio": round(ra["img_s"] / lo["img_s"], 3),
            "local_wall_img_s_at_N": round(args.images / lo["wall_s"][str(args.images)], 3),
            "ray_wall_img_s_at_N": round(args.images / ra["wall_s"][str(args.images)], 3), "goal": "ratio >= 0.8"}
    doc = {"created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "host": os.uname().nodename,
           "cores": cores, "images": args.images, "overhead_images": args.overhead_images, "rounds": args.rounds, "load_before": load_before,
           "load_after": os.getloadavg(), "ray": ray.__version__, "figures": figures, "runs": rounds}
    out = args.out or ROOT / "benchmarks" / "results" / f"ray-{dt.date.today().isoformat()}-{os.uname().nodename}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
