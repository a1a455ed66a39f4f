"""The reference loops the product is measured against, and the one timing loop they share.

* bare ONNX Runtime: a plain ``InferenceSession`` on the same model file, default session
  options except the thread count, fed the same contiguous array: what any user would write;
* PyTorch eager: the plugin's own ``ModelSpec.build`` module under ``torch.inference_mode``
  with ``torch.set_num_threads`` set to the same count.

The loop has the semantics of ``hrdeploy.bench.device_only`` (warm-up runs, then runs until
both a minimum count and the time budget are reached; throughput = batch / mean latency), so
the bare loop and hrdeploy are measured by the same rule.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

MIN_ITERS = 5  # what hrdeploy.bench's loop uses


def timed(fn: Callable[[], Any], seconds: float, warmup: int, min_iters: int = MIN_ITERS) -> list[float]:
    """Latencies in ms of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    lat: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        lat.append((time.perf_counter() - t0) * 1000)
        if len(lat) >= min_iters and time.perf_counter() - start >= seconds:
            return lat


def summarise(batch: int, lat_ms: list[float]) -> dict[str, Any]:
    a = np.asarray(lat_ms, np.float64)
    return {"ips": round(batch / (float(a.mean()) / 1000), 3), "latency_ms": round(float(a.mean()), 3),
            "p50_ms": round(float(np.percentile(a, 50)), 3), "iterations": int(a.size)}


class BareOrt:
    """The no-overhead reference: nothing between the caller and ``InferenceSession.run``."""

    def __init__(self, model_path: Path, threads: int) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.log_severity_level = 3
        self.session = ort.InferenceSession(str(model_path), sess_options=so, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def runner(self, x: np.ndarray) -> Callable[[], Any]:
        feeds = {self.input_name: x}
        return lambda: self.session.run(None, feeds)


class TorchEager:
    """The plugin's architecture in PyTorch eager mode, seeded weights, inference mode."""

    def __init__(self, spec: Any, variant: Any, threads: int, seed: int = 0) -> None:
        import torch

        from hrdeploy.export import seeded_weights

        torch.set_num_threads(threads)
        self.torch = torch
        self.module = spec.build(variant).eval()
        seeded_weights(self.module, seed)

    def runner(self, x: np.ndarray) -> Callable[[], Any]:
        t = self.torch.from_numpy(x)

        def run() -> Any:
            with self.torch.inference_mode():
                return self.module(t)
        return run


Measure = Callable[[float, int], tuple[float, int]]  # (seconds, warmup) -> (mean ms, iterations)


def loop_measure(fn: Callable[[], Any]) -> Measure:
    def measure(seconds: float, warmup: int) -> tuple[float, int]:
        lat = timed(fn, seconds, warmup)
        return float(np.mean(lat)), len(lat)
    return measure


def paired(measures: dict[str, Measure], batch: int, seconds: float, warmup: int,
           rounds: int) -> dict[str, dict[str, Any]]:
    """Measure several runners of the same work in alternation (``rounds`` times each, for
    ``seconds / rounds`` each time), so a change of load on a shared machine hits them alike.
    Each figure pools its iterations over the rounds: batch / (mean latency)."""
    out: dict[str, dict[str, Any]] = {}
    acc: dict[str, list[tuple[float, int]]] = {k: [] for k in measures}
    for r in range(rounds):
        for name, measure in measures.items():
            acc[name].append(measure(seconds / rounds, warmup if r == 0 else 1))
    for name, parts in acc.items():
        iters = sum(n for _, n in parts)
        mean_ms = sum(m * n for m, n in parts) / iters
        out[name] = {"ips": round(batch / (mean_ms / 1000), 3), "latency_ms": round(mean_ms, 3),
                     "iterations": iters, "rounds_ips": [round(batch / (m / 1000), 3) for m, _ in parts]}
    return out
