"""The reference loops the product is measured against, and the one timing loop they share.

* bare ONNX Runtime: a plain ``InferenceSession`` on the same model file, default session
  options except the thread count, fed the same contiguous array: what any user would write;
* PyTorch eager: the plugin's own ``ModelSpec.build`` module under ``torch.inference_mode``
  with ``torch.set_num_threads`` set to the same count.

The loop has the semantics of ``hrdeploy.benchmark.device_only`` (warm-up runs, then runs until
both a minimum count and the time budget are reached; throughput = batch / mean latency), so
the bare loop and hrdeploy are measured by the same rule.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

MIN_ITERS = 5  # what hrdeploy.benchmark's loop uses


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

        from hrdeploy.onnx_export import seeded_weights

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
           rounds: int, once: frozenset[str] = frozenset()) -> dict[str, dict[str, Any]]:
    """Measure several runners of the same work in alternation, ``rounds`` times each for
    ``seconds / rounds`` (at least 5 iterations) each time, so a change of load on a shared
    machine hits them alike. A series' figure is its best round: load from other processes
    only ever slows a run down, so the best round is the closest to the runner's own speed;
    the pooled mean over all rounds is kept too. Series in ``once`` are measured in the first
    round only (PyTorch: the slowest series, compared with a wide margin). Rounds after the
    second are skipped once 1.5x the total time budget is spent (large batches, DEKR: the
    minimum iteration count already makes each round overrun)."""
    acc: dict[str, list[tuple[float, int]]] = {k: [] for k in measures}
    budget = 1.5 * seconds * len(measures)
    start = time.perf_counter()
    for r in range(rounds):
        if r >= 2 and time.perf_counter() - start > budget:
            break
        for name, measure in measures.items():
            if r == 0 or name not in once:
                acc[name].append(measure(seconds / rounds, warmup if r == 0 else 1))
    out: dict[str, dict[str, Any]] = {}
    for name, parts in acc.items():
        iters = sum(n for _, n in parts)
        mean_ms = sum(m * n for m, n in parts) / iters
        per_round = [round(batch / (m / 1000), 3) for m, _ in parts]
        out[name] = {"ips": max(per_round), "mean_ips": round(batch / (mean_ms / 1000), 3),
                     "rounds_ips": per_round, "latency_ms": round(1000 * batch / max(per_round), 3),
                     "iterations": iters}
    return out
