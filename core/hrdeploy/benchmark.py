"""``hrdeploy bench``: throughput over batch sizes, device-only and end-to-end, in one run.

* device-only: one prepared batch fed to ``Runner.run`` repeatedly (no host work), or the
  target's own tool (ais_bench, bmrt_test, vamp) when it has one and a device is present;
* end-to-end: JPEG files decoded, preprocessed, run and post-processed by the same streaming
  loop as ``eval``, with the time per stage reported per image.
"""
from __future__ import annotations

import datetime as _dt
import itertools
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from . import __version__
from .errors import UserError
from .model import SampleRef
from .reference import reference_inputs
from .results import BenchResult
from .session import Session
from .stream import Stream
from .synthetic import write_images


def _percentiles(lat_ms: Sequence[float]) -> dict[str, float]:
    a = np.asarray(lat_ms, np.float64)
    return {"mean": round(float(a.mean()), 3), "p50": round(float(np.percentile(a, 50)), 3),
            "p90": round(float(np.percentile(a, 90)), 3), "p99": round(float(np.percentile(a, 99)), 3)}


def _timed_loop(fn: Callable[[], Any], seconds: float, warmup: int, min_iters: int = 5,
                max_iters: int = 100000) -> tuple[list[float], int]:
    for _ in range(warmup):
        fn()
    lat = []
    start = time.perf_counter()
    while len(lat) < max_iters:
        t0 = time.perf_counter()
        fn()
        lat.append((time.perf_counter() - t0) * 1000)
        if len(lat) >= min_iters and time.perf_counter() - start >= seconds:
            break
    return lat, len(lat)


def _device_loop(session: Session, batch: int, seconds: float, warmup: int) -> tuple[list[float], list[int]]:
    """Per-call latencies (ms) of one prepared batch fed to the runner again and again."""
    x = reference_inputs(session.spec, session.variant, None, count=1)
    xb = np.ascontiguousarray(np.repeat(x, batch, axis=0))
    feeds = {session.runner.input_name: xb}
    lat, _ = _timed_loop(lambda: session.runner.run(feeds), seconds, warmup)
    return lat, list(xb.shape)


def _device_row(batch: int, lat: Sequence[float], warmup: int, shape: list[int]) -> dict[str, Any]:
    mean_s = float(np.mean(lat)) / 1000
    return {"device_ips": round(batch / mean_s, 3), "latency_ms": _percentiles(lat), "warmup": warmup,
            "iterations": len(lat), "input_shape": shape}


def device_only(session: Session, batch: int, seconds: float, warmup: int) -> dict[str, Any]:
    lat, shape = _device_loop(session, batch, seconds, warmup)
    return _device_row(batch, lat, warmup, shape)


def end_to_end(session: Session, batch: int, seconds: float, images: list[Path],
               options: dict[str, Any], workers: int | None) -> dict[str, Any]:
    pipeline = session.pipeline(options)
    refs = [SampleRef(p.name, p) for p in images]
    # warm up the pipeline (first calls allocate, cache resampling weights...)
    list(Stream(pipeline, session.runner, batch=batch, workers=workers).run(refs[:batch]))
    stream = Stream(pipeline, session.runner, batch=batch, workers=workers)
    deadline = time.perf_counter() + seconds
    min_images = batch * 3

    def feed() -> Iterator[SampleRef]:
        for n, ref in enumerate(itertools.cycle(refs)):
            if n >= min_images and time.perf_counter() > deadline:
                return
            yield SampleRef(f"{n}:{ref.id}", ref.path, ref.info)

    t0 = time.perf_counter()
    count = sum(1 for _ in stream.run(feed()))
    wall = time.perf_counter() - t0
    return {"e2e_ips": round(count / wall, 3), "e2e_images": count,
            "e2e_per_image_ms": stream.timings.per_image_ms(count), "workers": stream.workers}


def bench(session: Session, batches: Sequence[int], seconds: float = 5.0, warmup: int = 3,
          options: dict[str, Any] | None = None, workers: int | None = None, e2e: bool = True,
          images_dir: Path | None = None, log: Callable[[str], None] = print,
          devices: str | None = None, device: str | None = None) -> BenchResult:
    """``devices`` (``--devices``; or the target's own split, onnxruntime's ``--replicas``)
    measures every runner at once, each in its process: rows then hold the aggregate (device
    throughputs summed, latencies pooled) and ``per_device`` figures (:mod:`hrdeploy.devices`)."""
    from .devices import placements, wants_pool

    runner = session.runner
    spread = placements(session, devices) if wants_pool(session, devices) else None
    allowed = runner.batch_sizes
    report: dict[str, Any] = {
        **session.describe(), "seconds_per_point": seconds, "results": [], "skipped": [],
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": os.uname().nodename, "hrdeploy_version": __version__,
    }
    if runner.simulated:
        # host simulation time says nothing about the chip: no loops, the parity a user can trust
        from .verification import reference_report

        log("simulator: no throughput is measured; checking parity on the stored reference inputs instead")
        parity = reference_report(session)
        report.update(note="simulator: throughput is not measured (the simulator's speed is not the chip's); "
                           "parity against the stored onnxruntime fp32 reference instead",
                      parity=parity.to_dict(), device_timing=None)
        return _finished(BenchResult(report, parity))
    native = session.target.bench_native(session.artifact, batches, seconds)
    report["device_timing"] = "vendor tool" if native else "Runner.run wall time (host <-> device copies included)"
    native_rows = {int(r["batch"]): r for r in (native or [])}
    with tempfile.TemporaryDirectory() as tmp:
        if e2e:
            size = session.variant.input.fixed_size or (session.variant.input.gears[0] if session.variant.input.gears else (512, 512))
            images = (sorted(Path(images_dir).glob("*.jpg")) if images_dir else
                      write_images(Path(tmp), 16, size=(int(size[0] * 1.6), int(size[1] * 2.2)), seed=11))
            if not images:
                raise UserError(f"no .jpg images in {images_dir}")
        if spread is not None:
            from .devices import bench_devices

            todo = [b for b in batches if not (allowed and b not in allowed)]
            report["skipped"] += [{"batch": b, "reason": f"compiled batch sizes are {list(allowed)}"}
                                  for b in batches if b not in todo]
            report["devices"] = [p.slot for p in spread]
            report["device_timing"] = "Runner.run wall time, every runner at once, each in its own process"
            report["results"], report["runner"] = bench_devices(session, spread, device, todo, seconds, warmup,
                                                                images if e2e else None, options or {}, workers, log)
            return _finished(BenchResult(report))
        for b in batches:
            if allowed and b not in allowed:
                report["skipped"].append({"batch": b, "reason": f"compiled batch sizes are {list(allowed)}"})
                continue
            log(f"batch {b}: measuring ...")
            row: dict[str, Any] = {"batch": b}
            if b in native_rows:
                row.update(native_rows[b])
            else:
                row.update(device_only(session, b, seconds, warmup))
            if e2e:
                row.update(end_to_end(session, b, seconds, images, options or {}, workers))
            report["results"].append(row)
    return _finished(BenchResult(report))


def _finished(result: BenchResult) -> BenchResult:
    from .plugins import registry

    registry().call("hrdeploy_after_bench", report=result.document, result=result)
    return result


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["results"] if r.get("device_ips")]
    if not rows:
        raise UserError("nothing to plot: no throughput figures (simulator or no batch measured)")
    b = [r["batch"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    ax.plot(b, [r["device_ips"] for r in rows], "o-", label="device only")
    if any(r.get("e2e_ips") for r in rows):
        ax.plot(b, [r.get("e2e_ips") or np.nan for r in rows], "s--", label="end to end")
    ax.set_xscale("log", base=2)
    ax.set_xticks(b, [str(v) for v in b])
    ax.set_xlabel("batch size")
    ax.set_ylabel("images / second")
    ax.set_title(f"{report['model']}/{report['variant']} on {report['target']} ({report['precision']})", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    import io

    from .io import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def per_device_table(report: dict[str, Any]) -> Any:
    """``bench --devices``: each runner's figures per batch size, next to the aggregate table."""
    from rich.table import Table

    t = Table(title="per device (measured at once)", title_justify="left")
    for c in ("batch", "worker", "device img/s", "latency ms mean/p50/p90/p99", "e2e img/s", "iters"):
        t.add_column(c)
    for r in report["results"]:
        e2e = r.get("e2e_per_device") or {}
        for d in r.get("per_device") or []:
            lat = d["latency_ms"]
            t.add_row(str(r["batch"]), d["worker"], f"{d['device_ips']:.1f}",
                      f"{lat['mean']:.1f}/{lat['p50']:.1f}/{lat['p90']:.1f}/{lat['p99']:.1f}",
                      f"{e2e[d['worker']]:.1f}" if d["worker"] in e2e else "-", str(d["iterations"]))
    return t
