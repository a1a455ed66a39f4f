"""The benchmark run: build (cached) -> wait for a quiet machine -> peak -> per model: GFLOPs,
device-only series in alternation, end-to-end, eval -> checks -> JSON, markdown, PNG."""
from __future__ import annotations

import datetime as _dt
import gc
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class ModelPlan:
    model: str
    variant: str
    batches: tuple[int, ...]
    image_size: tuple[int, int]          # (H, W) of the generated JPEGs
    landscape_only: bool = False         # DEKR: every image lands on the 512x768 gear
    calib: int = 32
    eval_imagenet: bool = False
    export_options: tuple[tuple[str, str], ...] = ()   # hrdeploy export --opt KEY=VALUE
    opset: int = 17

    @property
    def key(self) -> str:
        return f"{self.model}/{self.variant}"


PLANS = (
    ModelPlan("hrnet_cls", "w18", (1, 4, 8, 16), (375, 500), eval_imagenet=True),
    ModelPlan("tresnet", "m", (1, 4, 8, 16), (375, 500)),
    ModelPlan("hrnet_pose", "w32_256x192", (1, 4, 8, 16), (400, 300)),
    # 480x720 photographs: short side -> 512, long side -> 768 (the seeds' DEKR gear); the
    # onnxruntime export form of DEKR: DeformConv nodes (2.4x faster here than the GridSample
    # form, which the vendor compilers get)
    ModelPlan("dekr", "w32", (1,), (480, 720), landscape_only=True, calib=8,
              export_options=(("adapt_conv", "deformconv"),), opset=19),
)


@dataclass
class Settings:
    models: list[ModelPlan]
    batches: list[int] | None            # overrides every dynamic-batch model's defaults
    seconds: float
    warmup: int
    rounds: int
    threads: int
    eval_images: int
    peak_seconds: float
    e2e_images: int = 16
    wait_load: float | None = 1.5
    wait_max: float = 1200.0
    wait_poll: float = 60.0
    rebuild: bool = False
    build_only: bool = False
    cache: Path = Path("benchmarks/.cache")
    out_dir: Path = Path("benchmarks/results")
    command: str = ""
    quick: bool = False
    log: Callable[[str], None] = field(default=print)


def select(names: str | None) -> list[ModelPlan]:
    """``--models hrnet_cls,dekr/w32``: by model name or model/variant key."""
    if not names:
        return list(PLANS)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    chosen = [p for p in PLANS if any(w in (p.model, p.key) for w in wanted)]
    unknown = [w for w in wanted if not any(w in (p.model, p.key) for p in PLANS)]
    if unknown:
        raise SystemExit(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(p.key for p in PLANS)}")
    return chosen


def write_jpegs(folder: Path, count: int, size: tuple[int, int], landscape_only: bool, seed: int) -> list[Path]:
    import cv2

    from hrdeploy.synthetic import make_image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        h, w = size if landscape_only or i % 2 == 0 else (size[1], size[0])
        p = folder / f"img_{i:04d}.jpg"
        cv2.imwrite(str(p), make_image(h, w, seed + i), [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(p)
    return paths


def imagenet_folder(root: Path, count: int, seed: int = 500) -> Path:
    """``val_label.txt`` + ``ILSVRC2012_img_val/ILSVRC2012_val_NNNNNNNN.JPEG``, ImageNet-sized
    photographs (375x500 and 500x375), seeded labels."""
    import cv2

    from hrdeploy.synthetic import make_image

    images = root / "ILSVRC2012_img_val"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(1, count + 1):
        h, w = (375, 500) if i % 2 else (500, 375)
        name = f"ILSVRC2012_val_{i:08d}.JPEG"
        cv2.imwrite(str(images / name), make_image(h, w, seed + i), [cv2.IMWRITE_JPEG_QUALITY, 90])
        lines.append(f"{name} {int(rng.integers(0, 1000))}\n")
    (root / "val_label.txt").write_text("".join(lines))
    return root


def wait_for_quiet(s: Settings) -> dict[str, Any]:
    load = os.getloadavg()
    info: dict[str, Any] = {"load_at_start": [round(v, 2) for v in load], "waited_s": 0.0}
    if s.wait_load is None:
        return info
    t0 = time.monotonic()
    while load[0] >= s.wait_load and time.monotonic() - t0 < s.wait_max:
        s.log(f"load average {load[0]:.2f} >= {s.wait_load}: waiting for a quiet machine "
              f"({time.monotonic() - t0:.0f}/{s.wait_max:.0f} s)")
        time.sleep(s.wait_poll)
        load = os.getloadavg()
    info["waited_s"] = round(time.monotonic() - t0, 1)
    info["quiet"] = load[0] < s.wait_load
    if not info["quiet"]:
        s.log(f"machine still busy after {s.wait_max:.0f} s (load {load[0]:.2f}): measuring anyway")
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                return sorted(f for f in flags if f.startswith(("avx", "fma", "amx")) or "vnni" in f)
    except OSError:
        pass
    return []


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    import hrdeploy

    return {"hrdeploy": hrdeploy.__version__, "onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__,
            "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()}


def _with_peak(entry: dict[str, Any], ips_key: str, gflops: float, peak: float) -> dict[str, Any]:
    entry["peak_fraction"] = round(entry[ips_key] * gflops / peak, 4) if entry.get(ips_key) and peak else None
    return entry


def merge_peaks(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    out["fp32_gflops"] = max(a["fp32_gflops"], b["fp32_gflops"])
    out["int8_gops"] = max(a["int8_gops"], b["int8_gops"])
    out["detail"] = {k: max(a["detail"][k], b["detail"][k]) for k in a["detail"]}
    out["runs"] = [{"fp32_gflops": r["fp32_gflops"], "int8_gops": r["int8_gops"]} for r in (a, b)]
    out["method"] = a["method"] + "; measured before and after the models, the higher of the two"
    return out


def refresh_peak_fractions(model: dict[str, Any], peak: dict[str, Any]) -> None:
    gflops = model["flops"]["gflops"]
    peaks = {"fp32": peak["fp32_gflops"], "int8": peak["int8_gops"]}
    for p in model["points"]:
        for key, entry in p["device"].items():
            _with_peak(entry, "ips", gflops, peaks["int8" if key.endswith("int8") else "fp32"])
        for prec, entry in p["e2e"].items():
            _with_peak(entry, "e2e_ips", gflops * model["items_per_image"], peaks[prec])


def measure_model(plan: ModelPlan, built: Any, s: Settings, peak: dict[str, Any], registry: Any,
                  workdir: Path) -> dict[str, Any]:
    import onnx

    from hrdeploy.benchmark import device_only, end_to_end
    from hrdeploy.reference import reference_inputs
    from hrdeploy.model import Sample, SampleRef
    from hrdeploy.synthetic import make_image
    from hrdeploy.session import open_session

    from .artifacts import int8_parity
    from .flops import count_macs
    from .timing import BareOrt, TorchEager, loop_measure, paired

    spec = registry.model(plan.model)
    var = spec.variant(plan.variant)
    fixed = var.input.batch if isinstance(var.input.batch, int) else None
    batches = [fixed] if fixed else list(s.batches or plan.batches)

    # the input bench.device_only feeds: the model's own preprocessing of a synthetic photo
    x1 = reference_inputs(spec, var, None, count=1)
    flops = count_macs(onnx.load(str(built.onnx), load_external_data=False), x1.shape)
    gflops = flops["gflops"]
    s.log(f"  input {list(x1.shape[1:])}: {flops['macs'] / 1e9:.2f} GMACs = {gflops:.2f} GFLOPs per image")

    sessions = {p: open_session(registry, getattr(built, p), target_options={"threads": s.threads})
                for p in ("fp32", "int8")}
    bare = {p: BareOrt(sessions[p].artifact.file("model"), s.threads) for p in ("fp32", "int8")}
    eager = TorchEager(spec, var, s.threads)
    pipeline = sessions["fp32"].pipeline({})
    probe = make_image(*plan.image_size, seed=3)
    items_per_image = len(pipeline.prepare(Sample(SampleRef("probe", Path("probe.jpg")), probe)))
    images = write_jpegs(workdir / "e2e", s.e2e_images, plan.image_size, plan.landscape_only, seed=11)

    def hrdeploy_measure(session: Any, b: int) -> Callable[[float, int], tuple[float, int]]:
        def measure(seconds: float, warmup: int) -> tuple[float, int]:
            d = device_only(session, b, seconds, warmup)
            return float(d["latency_ms"]["mean"]), int(d["iterations"])
        return measure

    peaks = {"fp32": peak["fp32_gflops"], "int8": peak["int8_gops"]}
    points = []
    for b in batches:
        t0 = time.perf_counter()
        xb = np.ascontiguousarray(np.repeat(x1, b, axis=0))
        series = {
            "pytorch": loop_measure(eager.runner(xb)),
            "bare_fp32": loop_measure(bare["fp32"].runner(xb)),
            "hrdeploy_fp32": hrdeploy_measure(sessions["fp32"], b),
            "bare_int8": loop_measure(bare["int8"].runner(xb)),
            "hrdeploy_int8": hrdeploy_measure(sessions["int8"], b),
        }
        dev = paired(series, b, s.seconds, s.warmup, s.rounds, once=frozenset({"pytorch"}))
        for key, entry in dev.items():
            _with_peak(entry, "ips", gflops, peaks["int8" if key.endswith("int8") else "fp32"])
        e2e = {}
        for prec, sess in sessions.items():
            e = end_to_end(sess, b, s.seconds, images, {}, None)
            e2e[prec] = _with_peak(e, "e2e_ips", gflops * items_per_image, peaks[prec])
        points.append({"batch": b, "device": dev, "e2e": e2e})
        s.log(f"  batch {b:>2}: " + ", ".join(f"{k} {v['ips']:.2f}" for k, v in dev.items())
              + ", " + ", ".join(f"e2e {k} {v['e2e_ips']:.2f}" for k, v in e2e.items())
              + f" img/s ({time.perf_counter() - t0:.0f} s)")

    result: dict[str, Any] = {
        "key": plan.key, "model": plan.model, "variant": plan.variant, "input_shape": list(x1.shape[1:]),
        "flops": flops, "items_per_image": items_per_image,
        "breakdown_batch": min(batches, key=lambda v: (abs(v - 8), v)),
        "image_size": list(plan.image_size), "int8_parity": int8_parity(built.int8),
        "artifacts": {"cached": built.cached, "build_seconds": built.build_seconds,
                      "calibration_images": plan.calib},
        "points": points,
    }
    if plan.eval_imagenet:
        result["eval"] = run_eval(sessions, s, workdir, device_measure=hrdeploy_measure)
    del eager, bare, sessions
    gc.collect()
    return result


def run_eval(sessions: dict[str, Any], s: Settings, workdir: Path, batch: int = 8,
             device_measure: Callable[[Any, int], Callable[[float, int], tuple[float, int]]] | None = None
             ) -> dict[str, Any]:
    """``hrdeploy eval`` on a generated ImageNet folder, twice per precision, each run right
    after a device-only measurement at the same batch (the pair the check compares); the best
    run of each is the figure, all runs are kept."""
    from hrdeploy.evaluation import evaluate

    root = imagenet_folder(workdir / "imagenet", s.eval_images)
    runs: dict[str, list[dict[str, Any]]] = {p: [] for p in sessions}
    for _ in range(2):
        for prec, sess in sessions.items():
            dev = None
            if device_measure is not None:
                mean_ms, _n = device_measure(sess, batch)(s.seconds / 2, 1)
                dev = round(batch / (mean_ms / 1000), 3)
            res = evaluate(sess, f"imagenet:{root}", workdir / f"eval-{prec}.json", batch=batch,
                           log=lambda _m: None).document
            t = res["timing"]
            runs[prec].append({"batch": res["batch"], "images": t["images"], "seconds": t["seconds"],
                               "images_per_second": t["images_per_second"], "per_image_ms": t["per_image_ms"],
                               "top1": res["metric"].get("top1"), "device_ips": dev})
    out = {}
    for prec, rs in runs.items():
        best = max(rs, key=lambda r: r["images_per_second"])
        devs = [r["device_ips"] for r in rs if r["device_ips"]]
        out[prec] = {**{k: v for k, v in best.items() if k != "device_ips"},
                     "runs_ips": [r["images_per_second"] for r in rs],
                     "device_ips": max(devs) if devs else None, "device_runs_ips": devs}
        s.log(f"  eval {prec} bs{batch}: {best['images_per_second']:.2f} img/s over {best['images']} images "
              f"(runs: {', '.join(f'{r:.2f}' for r in out[prec]['runs_ips'])}; device-only alongside: "
              f"{', '.join(f'{d:.2f}' for d in devs)})")
    return out


def run(s: Settings) -> dict[str, Any] | None:
    from hrdeploy.plugins import registry as get_registry

    from . import report, verdicts
    from .artifacts import build
    from .compat import batch_safe_reference_runs
    from .peak import measure_peak

    t_start = time.perf_counter()
    started = _dt.datetime.now()
    registry = get_registry()
    s.cache.mkdir(parents=True, exist_ok=True)

    s.log(f"[build] models cached under {s.cache}")
    built = {}
    workaround = False
    for plan in s.models:
        var = registry.model(plan.model).variant(plan.variant)
        calib_size = plan.image_size
        if isinstance(var.input.batch, int):
            with batch_safe_reference_runs() as applied:
                workaround |= applied
                built[plan.key] = build(registry, s.cache, plan.model, plan.variant, seed=0, calib_count=plan.calib,
                                        calib_size=calib_size, rebuild=s.rebuild, log=s.log,
                                        options=dict(plan.export_options), opset=plan.opset)
        else:
            built[plan.key] = build(registry, s.cache, plan.model, plan.variant, seed=0, calib_count=plan.calib,
                                    calib_size=calib_size, rebuild=s.rebuild, log=s.log,
                                    options=dict(plan.export_options), opset=plan.opset)
        b = built[plan.key]
        s.log(f"  {plan.key}: {'cached' if b.cached else f'built in {b.build_seconds:.0f} s'}")
    t_built = time.perf_counter()
    if s.build_only:
        return None

    quiet = wait_for_quiet(s)
    load_before = os.getloadavg()
    t_measure = time.perf_counter()
    s.log(f"[peak] {s.threads} threads")
    peak = measure_peak(s.threads, s.peak_seconds)
    s.log(f"  fp32 {peak['fp32_gflops']:.1f} GFLOP/s, int8 {peak['int8_gops']:.1f} GOP/s")

    models = []
    with tempfile.TemporaryDirectory(prefix="hrbench-") as tmp:
        for plan in s.models:
            s.log(f"[{plan.key}]")
            models.append(measure_model(plan, built[plan.key], s, peak, registry, Path(tmp) / plan.key.replace("/", "-")))
    load_after = os.getloadavg()
    # measured again at the end: a burst of load during one measurement must not lower the peak
    again = measure_peak(s.threads, s.peak_seconds)
    s.log(f"[peak again] fp32 {again['fp32_gflops']:.1f} GFLOP/s, int8 {again['int8_gops']:.1f} GOP/s")
    peak = merge_peaks(peak, again)
    for m in models:
        refresh_peak_fractions(m, peak)

    host = os.uname().nodename
    results: dict[str, Any] = {
        "date": started.strftime("%Y-%m-%d"), "created": started.isoformat(timespec="seconds"), "host": host,
        "command": s.command,
        "machine": {"cpu": _cpu_name(), "cpu_flags": _cpu_flags(), "cpus": os.cpu_count(), "threads": s.threads,
                    "load_before": [round(v, 2) for v in load_before], "load_after": [round(v, 2) for v in load_after],
                    **quiet, "versions": _versions()},
        "settings": {"quick": s.quick, "seconds": s.seconds, "warmup": s.warmup, "rounds": s.rounds,
                     "eval_images": s.eval_images, "e2e_images": s.e2e_images,
                     "batches": {m["key"]: [pt["batch"] for pt in m["points"]] for m in models},
                     "core_workaround_fixed_batch_reference_runs": workaround},
        "peak": peak, "models": models,
        "timing_s": {"build": round(t_built - t_start, 1), "measure": round(time.perf_counter() - t_measure, 1),
                     "wait": quiet.get("waited_s", 0.0)},
    }
    results["checks"] = verdicts.compute(results)
    results["checks_summary"] = verdicts.summary_line(results["checks"])
    stem = s.out_dir / f"{results['date']}-{host}{'-quick' if s.quick else ''}"
    paths = report.write(results, stem)
    results["timing_s"]["total"] = round(time.perf_counter() - t_start, 1)
    s.log("")
    for r in results["checks"]:
        verdict = "not measured" if r["passed"] is None else ("PASS" if r["passed"] else "FAIL")
        val = "-" if r["value"] is None else f"{r['value']:.3f}"
        s.log(f"  [{verdict:>12}] {r['check']}: {val} (target {r['op']} {r['threshold']})"
              + ("" if r["required"] else " [informative]") + (f"  {r['detail']}" if r.get("detail") else ""))
    s.log(results["checks_summary"])
    s.log("wrote " + ", ".join(str(p) for p in paths) + f" in {results['timing_s']['total']:.0f} s")
    # the file carries the total too
    from hrdeploy.io import atomic_write_json

    atomic_write_json(paths[0], results)
    return results
