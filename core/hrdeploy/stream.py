"""The streaming loop shared by predict, eval and bench.

Decoding and preprocessing run in a thread pool (OpenCV and numpy release the GIL) while the
calling thread feeds the runner, so image decoding overlaps inference. Items are grouped by
input size and sent in batches the runner accepts (padding the last one for static-batch
targets); a sample is finished as soon as all its items are back.
"""
from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from .errors import UserError
from .io import read_image
from .model import Item, Pipeline, Sample, SampleRef
from .target import Runner


def default_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 2)))


def choose_batch(requested: int, allowed: Sequence[int] | None) -> int:
    """The batch size to fill: the requested one if the runner takes any, else the largest
    compiled size not above it (or the smallest compiled size)."""
    if not allowed:
        return max(1, requested)
    fitting = [b for b in allowed if b <= requested]
    return max(fitting) if fitting else min(allowed)


def pad_to(n: int, allowed: Sequence[int] | None) -> int:
    """The batch size a group of ``n`` items is sent as (static targets pad up)."""
    if not allowed:
        return n
    larger = [b for b in allowed if b >= n]
    return min(larger) if larger else max(allowed)


@dataclass
class Timings:
    """Seconds spent per stage, summed over the run (workers' time is CPU time in threads)."""

    decode: float = 0.0
    preprocess: float = 0.0
    infer: float = 0.0
    postprocess: float = 0.0
    batches: int = 0
    items: int = 0
    padded_items: int = 0

    def per_image_ms(self, images: int) -> dict[str, float]:
        n = max(images, 1)
        return {k: round(getattr(self, k) * 1000 / n, 3) for k in ("decode", "preprocess", "infer", "postprocess")}


@dataclass
class _Pending:
    ref: SampleRef
    items: list[Item]
    outputs: list[dict[str, np.ndarray] | None] = field(default_factory=list)
    left: int = 0


def _prepare(ref: SampleRef, pipeline: Pipeline, images: dict[str, np.ndarray] | None
             ) -> tuple[SampleRef, list[Item] | None, float, float, UserError | None]:
    t0 = time.perf_counter()
    try:
        image = images[ref.id] if images is not None and ref.id in images else read_image(ref.path)
    except UserError as e:  # a corrupt or missing image: the caller decides to stop or skip
        return ref, None, 0.0, 0.0, e
    t1 = time.perf_counter()
    items = pipeline.prepare(Sample(ref, image))  # may be empty: an image with no person box
    t2 = time.perf_counter()
    return ref, list(items), t1 - t0, t2 - t1, None


#: called with each finished sample's items and their network outputs (``eval --compare``)
Observer = Callable[[SampleRef, list[Item], list[dict[str, np.ndarray]]], None]


class Stream:
    """Runs samples through pipeline + runner; iterate :meth:`run` for (ref, prediction)."""

    def __init__(self, pipeline: Pipeline, runner: Runner, batch: int = 1, workers: int | None = None,
                 images: dict[str, np.ndarray] | None = None, skip_bad_images: bool = False,
                 observe: Observer | None = None) -> None:
        self.pipeline = pipeline
        self.runner = runner
        self.batch = choose_batch(batch, runner.batch_sizes)
        self.workers = workers or default_workers()
        self.images = images  # pre-decoded images by sample id (bench's in-memory set)
        self.timings = Timings()
        self.skip_bad_images = skip_bad_images
        self.skipped: list[tuple[SampleRef, str]] = []
        self.observe = observe

    # -- batching ------------------------------------------------------------------------------
    def _check_size(self, item: Item, ref: SampleRef) -> tuple[int, ...]:
        shape = tuple(item.tensor.shape)
        sizes = self.runner.sizes
        if sizes is not None and tuple(shape[-2:]) not in {tuple(s) for s in sizes}:
            raise UserError(f"{ref.path}: input size {shape[-2]}x{shape[-1]} is not one the compiled model "
                            f"takes ({', '.join(f'{h}x{w}' for h, w in sizes)})")
        return shape

    def _run_group(self, group: list[tuple[_Pending, int]]) -> None:
        n = len(group)
        size = pad_to(n, self.runner.batch_sizes)
        chunks = [group[i:i + size] for i in range(0, n, size)] if size < n else [group]
        for chunk in chunks:
            target = pad_to(len(chunk), self.runner.batch_sizes)
            tensors = [p.items[i].tensor for p, i in chunk]
            if target > len(chunk):  # static batch: repeat the last input, drop its outputs
                tensors += [tensors[-1]] * (target - len(chunk))
                self.timings.padded_items += target - len(chunk)
            x = np.stack(tensors)
            t0 = time.perf_counter()
            outs = self.runner.run({self.runner.input_name: x})
            self.timings.infer += time.perf_counter() - t0
            self.timings.batches += 1
            self.timings.items += len(chunk)
            names = self.runner.output_names
            for row, (p, i) in enumerate(chunk):
                p.outputs[i] = {name: out[row] for name, out in zip(names, outs)}
                p.left -= 1

    # -- the loop --------------------------------------------------------------------------------
    def run(self, refs: Iterable[SampleRef]) -> Iterator[tuple[SampleRef, dict[str, Any]]]:
        groups: dict[tuple[int, ...], list[tuple[_Pending, int]]] = {}
        waiting: deque[_Pending] = deque()
        ref_iter = iter(refs)
        in_flight: deque[Future[Any]] = deque()
        window = self.workers * 4 + self.batch

        with ThreadPoolExecutor(self.workers, thread_name_prefix="hrdeploy-prep") as pool:
            def submit_next() -> bool:
                ref = next(ref_iter, None)
                if ref is None:
                    return False
                in_flight.append(pool.submit(_prepare, ref, self.pipeline, self.images))
                return True

            while len(in_flight) < window and submit_next():
                pass
            while in_flight:
                fut = in_flight.popleft()
                submit_next()
                ref, items, t_dec, t_pre, err = fut.result()
                if err is not None or items is None:
                    if not self.skip_bad_images:
                        raise err or UserError(f"{ref.path}: no input")
                    self.skipped.append((ref, str(err)))
                    continue
                self.timings.decode += t_dec
                self.timings.preprocess += t_pre
                pend = _Pending(ref, items, [None] * len(items), len(items))
                waiting.append(pend)
                for i, item in enumerate(items):
                    shape = self._check_size(item, ref)
                    groups.setdefault(shape, []).append((pend, i))
                    if len(groups[shape]) >= self.batch:
                        self._run_group(groups.pop(shape))
                yield from self._finish_ready(waiting, final=False)
            for shape in list(groups):
                self._run_group(groups.pop(shape))
            yield from self._finish_ready(waiting, final=True)

    def _finish_ready(self, waiting: deque[_Pending], final: bool) -> Iterator[tuple[SampleRef, dict[str, Any]]]:
        done: list[_Pending] = []
        while waiting and waiting[0].left == 0:  # keep dataset order
            done.append(waiting.popleft())
        if not done:
            return
        t0 = time.perf_counter()
        preds = self.pipeline.finish_batch([p.ref for p in done], [p.items for p in done],
                                           [p.outputs for p in done])  # type: ignore[misc]
        self.timings.postprocess += time.perf_counter() - t0
        for p, pred in zip(done, preds):
            if self.observe is not None:
                self.observe(p.ref, p.items, p.outputs)  # type: ignore[arg-type]
            yield p.ref, pred


def run_arrays(runner: Runner, x: np.ndarray, batch: int | None = None) -> list[np.ndarray]:
    """Run a stack of inputs (N, C, H, W) through a runner in batches it accepts, padding as
    needed; returns the outputs concatenated, in ``runner.output_names`` order."""
    n = len(x)
    b = choose_batch(batch or n, runner.batch_sizes)
    parts: list[list[np.ndarray]] = []
    for start in range(0, n, b):
        chunk = x[start:start + b]
        target = pad_to(len(chunk), runner.batch_sizes)
        if target > len(chunk):
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], target - len(chunk), 0)])
        outs = runner.run({runner.input_name: np.ascontiguousarray(chunk)})
        parts.append([o[: min(b, n - start)] for o in outs])
    return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]
