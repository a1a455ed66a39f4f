"""Several runners of one host: ``eval``/``bench --devices 0,1,2,3`` (one runner per device)
and onnxruntime's ``--replicas N`` (the CPU cores split into N runners).

Each runner lives in a worker process of its own, which opens the artifact on its device
(:meth:`hrdeploy.target.Target.split_devices` says which) and runs its own host pipeline
(decode + preprocess threads, then the runner, then postprocessing): the host's cores are used
by processes, so the GIL of one Python process never serialises the host work of all devices.
Samples are handed out in small chunks from one queue, so a fast device takes more of them;
each finished sample comes back with its worker label and :func:`hrdeploy.evaluation.evaluate`
merges them by sample id (:mod:`hrdeploy.executor`).

Workers are started with the ``spawn`` method: forking a process whose runtimes already run
threads (onnxruntime's pools, device SDKs) is unsafe.
"""
from __future__ import annotations

import itertools
import multiprocessing as mp
import queue
import time
import traceback
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .errors import UserError
from .executor import EvalPlan, Finished, host_name, input_sizes
from .model import Item, SampleRef
from .stream import Stream, Timings, choose_batch, default_workers
from .target import Placement

#: seconds between liveness checks of the workers while waiting for results
_POLL = 0.5
#: seconds a worker may take to open its runner and report ready
OPEN_TIMEOUT = 600.0


def placements(session: Any, devices: str | None) -> list[Placement]:
    """The runners a run opens for ``--devices`` and the session's target options (a single
    one, the session's own runner, when neither asks for more)."""
    return session.target.split_devices(devices, dict(session.options))


def wants_pool(session: Any, devices: str | None) -> bool:
    """True when ``--devices`` was given or the target splits itself (``--replicas`` > 1)."""
    return bool(devices) or len(placements(session, None)) > 1


# -- the worker process ------------------------------------------------------------------------------

def _worker_main(index: int, label: str, artifact: str, device: str | None, target_options: dict[str, Any],
                 model_options: dict[str, Any], batch: int, workers: int | None,
                 tasks: Any, control: Any, results: Any) -> None:
    """Open the runner, then run the chunks of samples taken from ``tasks`` until a stop mark
    (None), putting each finished sample on ``results``; then wait on ``control`` for the next
    run ("next") or the end ("quit"). Errors go back as one message."""
    try:
        from .plugins import registry
        from .session import open_session

        session = open_session(registry(), Path(artifact), device=device, target_options=target_options)
        with session.runner:
            pipeline = session.pipeline(model_options)
            last: dict[str, list[list[int]]] = {}

            def tap(ref: SampleRef, items: list[Item], outputs: list[dict[str, Any]]) -> None:
                last[ref.id] = input_sizes(items)

            if session.spec.task == "classification":  # its compiled preprocessing loads before "ready"
                from .tasks import pil_resample

                pil_resample.warm()
            results.put(("ready", index, session.runner.label, session.runner.threads))

            def refs() -> Iterator[SampleRef]:
                while True:
                    chunk = tasks.get()
                    if chunk is None:  # this worker's stop mark: it reads no more until "next"
                        return
                    yield from chunk

            while True:
                stream = Stream(pipeline, session.runner, batch=batch, workers=workers, observe=tap)
                for ref, pred in stream.run(refs()):
                    results.put(("done", index, ref.id, pred, last.pop(ref.id, [])))
                results.put(("end", index, asdict(stream.timings)))
                if control.get() != "next":
                    return
    except UserError as e:
        results.put(("error", index, f"{label}: {e.message}", e.hint))
    except BaseException as e:  # noqa: BLE001 - any failure must reach the driver as one line
        tb = traceback.extract_tb(e.__traceback__)[-1:]
        where = f" ({Path(tb[0].filename).name}:{tb[0].lineno})" if tb else ""
        results.put(("error", index, f"{label}: {type(e).__name__}: {e}{where}", None))


# -- the driver side ---------------------------------------------------------------------------------

class WorkerPool:
    """Worker processes, one per :class:`Placement`, each with its runner open; ``run`` hands
    them samples and yields ``(worker index, sample id, prediction, input sizes)``."""

    def __init__(self, artifact: Path, placements: list[Placement], device: str | None,
                 model_options: dict[str, Any], batch: int, workers: int | None,
                 open_timeout: float = OPEN_TIMEOUT) -> None:
        self.placements = placements
        self.labels = [f"{host_name()}/{p.slot}" for p in placements]
        self.batch = batch
        self.workers = workers
        self.timings = [Timings() for _ in placements]
        self.runner_labels: list[str] = [""] * len(placements)
        self.threads: list[int | None] = [None] * len(placements)
        t0 = time.perf_counter()
        ctx = mp.get_context("spawn")
        self._tasks = ctx.Queue()
        self._results = ctx.Queue()
        self._control = [ctx.Queue() for _ in placements]
        self._ended: set[int] = set()
        self._runs = 0
        self._open_timeout = open_timeout
        self._procs = [ctx.Process(target=_worker_main, name=f"hrdeploy-{p.slot}", daemon=True,
                                   args=(i, self.labels[i], str(artifact), p.device if p.device is not None else device,
                                         p.options, model_options, batch, workers, self._tasks, self._control[i],
                                         self._results))
                       for i, p in enumerate(placements)]
        for proc in self._procs:
            proc.start()
        try:
            self._wait_ready(open_timeout)
        except BaseException:
            self.close()
            raise
        #: seconds from starting the processes to every runner open (spawn, imports, model load)
        self.open_seconds = round(time.perf_counter() - t0, 3)

    def _wait_ready(self, timeout: float) -> None:
        ready: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(ready) < len(self._procs):
            msg = self._get(deadline)
            if msg[0] == "ready":
                _, i, label, threads = msg
                self.runner_labels[i], self.threads[i] = label, threads
                ready.add(i)
            else:
                self._unexpected(msg)

    def _get(self, deadline: float | None = None) -> tuple[Any, ...]:
        """The next message; a worker that died without saying why is refused with one line."""
        while True:
            try:
                return self._results.get(timeout=_POLL)
            except queue.Empty:
                pass
            for i, proc in enumerate(self._procs):
                if i not in self._ended and not proc.is_alive():
                    try:  # its last messages may still be in the pipe
                        return self._results.get(timeout=_POLL * 2)
                    except queue.Empty:
                        raise UserError(f"{self.labels[i]}: the worker process died (exit code {proc.exitcode})",
                                        "see its output above; lower --batch or --workers if it ran out of memory") from None
            if deadline is not None and time.monotonic() > deadline:
                raise UserError(f"the workers did not open their runners within {self._open_timeout:.0f} s")

    def _unexpected(self, msg: tuple[Any, ...]) -> None:
        if msg[0] == "error":
            raise UserError(msg[2], msg[3])
        raise RuntimeError(f"worker message {msg[0]!r} out of turn")

    def run(self, refs: Iterable[SampleRef], chunk: int | None = None) -> Iterator[tuple[int, str, Any, list[list[int]]]]:
        """Every sample of ``refs`` through the workers (each once); results as they finish.
        ``refs`` is read lazily, a bounded number of samples ahead of the results (bench feeds
        an endless cycle that stops at its deadline)."""
        size = chunk or max(1, self.batch)
        # enough queued that no worker's prefetch window runs dry, few enough to stop soon
        ahead = len(self._procs) * 2 * (size + 4 * (self.workers or default_workers()) + self.batch)
        it = iter(refs)
        sent = returned = 0
        exhausted = False

        def top_up() -> None:
            nonlocal sent, exhausted
            while not exhausted and sent - returned < ahead:
                part = list(itertools.islice(it, size))
                if part:
                    self._tasks.put(part)
                    sent += len(part)
                if len(part) < size:
                    exhausted = True
                    for _ in self._procs:
                        self._tasks.put(None)

        if self._runs:
            for control in self._control:
                control.put("next")
        self._runs += 1
        self.timings = [Timings() for _ in self._procs]
        self._ended = set()
        top_up()
        while len(self._ended) < len(self._procs):
            msg = self._get()
            kind = msg[0]
            if kind == "done":
                _, i, key, pred, sizes = msg
                returned += 1
                yield i, key, pred, sizes
                top_up()
            elif kind == "end":
                _, i, timings = msg
                self.timings[i] = Timings(**{f.name: timings[f.name] for f in fields(Timings)})
                self._ended.add(i)
            else:
                self._unexpected(msg)

    def close(self) -> None:
        """Stop the workers (at once: an interrupted run does not wait for their queues)."""
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
        for proc in self._procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        for q in (self._tasks, self._results, *self._control):
            q.cancel_join_thread()
            q.close()

    def total_timings(self) -> Timings:
        total = Timings()
        for t in self.timings:
            for f in fields(Timings):
                setattr(total, f.name, getattr(total, f.name) + getattr(t, f.name))
        return total


class DevicePool:
    """The executor of a multi-device (or ``--replicas``) evaluation: one worker process per
    runner (:class:`WorkerPool`), samples in any order, labelled ``HOST/SLOT``."""

    def __init__(self, plan: EvalPlan, devices: str | None = None, device: str | None = None,
                 open_timeout: float = OPEN_TIMEOUT) -> None:
        if plan.observe is not None:
            raise UserError("--compare runs on the runner of this process only",
                            "drop --devices/--replicas to compare, or --compare to spread the run")
        self.plan = plan
        self._placements = placements(plan.session, devices)
        self._device = device
        self._open_timeout = open_timeout
        self.batch = choose_batch(plan.batch, plan.session.runner.batch_sizes)
        self.timings = Timings()
        self._pool: WorkerPool | None = None

    def predictions(self, todo: list[SampleRef]) -> Iterator[Finished]:
        by_id = {r.id: r for r in todo}
        pool = WorkerPool(self.plan.session.artifact.path, self._placements, self._device, self.plan.options,
                          self.plan.batch, self.plan.workers, self._open_timeout)
        self._pool = pool
        try:
            for i, key, pred, sizes in pool.run(todo):
                if key not in by_id:
                    raise UserError(f"{pool.labels[i]} returned sample {key!r}, which was not asked for")
                yield Finished(by_id[key], pred, sizes, pool.labels[i])
            self.timings = pool.total_timings()
        finally:
            pool.close()

    def describe(self) -> dict[str, Any]:
        pool = self._pool
        if pool is None:
            return {}
        labels = pool.runner_labels
        runner = f"{len(labels)} x {labels[0]}" if len(set(labels)) == 1 else "; ".join(labels)
        threads = [t for t in pool.threads if t]
        return {"runner": runner, "threads": sum(threads) if threads else None,
                "timing": {"workers": dict(zip(pool.labels, labels)), "open_seconds": pool.open_seconds}}


def device_pool(devices: str | None, device: str | None = None) -> Callable[[EvalPlan], DevicePool]:
    """The executor factory ``evaluate(..., executor=...)`` takes for ``--devices``/``--replicas``."""
    return lambda plan: DevicePool(plan, devices, device)


# -- bench --devices -----------------------------------------------------------------------------------

def _bench_worker(index: int, label: str, artifact: str, device: str | None, target_options: dict[str, Any],
                  batches: list[int], seconds: float, warmup: int, barrier: Any, results: Any) -> None:
    """Device-only loops on one runner, each batch size started with every other worker's
    (``barrier``), so the aggregate is what the devices give together."""
    try:
        from .benchmark import _device_loop
        from .plugins import registry
        from .session import open_session

        session = open_session(registry(), Path(artifact), device=device, target_options=target_options)
        with session.runner:
            results.put(("ready", index, session.runner.label, session.runner.threads))
            for b in batches:
                barrier.wait(timeout=OPEN_TIMEOUT)
                lat, shape = _device_loop(session, b, seconds, warmup)
                results.put(("row", index, b, lat, shape))
        results.put(("end", index, {}))
    except UserError as e:
        results.put(("error", index, f"{label}: {e.message}", e.hint))
    except BaseException as e:  # noqa: BLE001 - any failure must reach the driver as one line
        results.put(("error", index, f"{label}: {type(e).__name__}: {e}", None))


def _device_only_all(session: Any, spread: list[Placement], device: str | None, batches: list[int],
                     seconds: float, warmup: int) -> tuple[dict[int, list[tuple[str, list[float], list[int]]]], list[str]]:
    """{batch: [(worker label, latencies ms, input shape) per runner]}, all runners at once, and
    the runners' labels."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    barrier = ctx.Barrier(len(spread))
    labels = [f"{host_name()}/{p.slot}" for p in spread]
    procs = [ctx.Process(target=_bench_worker, daemon=True, name=f"hrdeploy-bench-{p.slot}",
                         args=(i, labels[i], str(session.artifact.path), p.device if p.device is not None else device,
                               p.options, batches, seconds, warmup, barrier, results))
             for i, p in enumerate(spread)]
    out: dict[int, list[tuple[str, list[float], list[int]]]] = {b: [] for b in batches}
    runners = [""] * len(procs)
    for proc in procs:
        proc.start()
    try:
        ended = 0
        while ended < len(procs):
            try:
                msg = results.get(timeout=_POLL)
            except queue.Empty:
                dead = [labels[i] for i, p in enumerate(procs) if not p.is_alive() and p.exitcode != 0]
                if dead:
                    raise UserError(f"{dead[0]}: the bench worker process died") from None
                continue
            if msg[0] == "ready":
                runners[msg[1]] = msg[2]
            elif msg[0] == "row":
                _, i, b, lat, shape = msg
                out[b].append((labels[i], lat, shape))
            elif msg[0] == "end":
                ended += 1
            elif msg[0] == "error":
                raise UserError(msg[2], msg[3])
        return out, runners
    finally:
        barrier.abort()  # a worker still waiting for the others gives up
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join(timeout=10)
        results.cancel_join_thread()
        results.close()


def bench_devices(session: Any, spread: list[Placement], device: str | None, batches: list[int], seconds: float,
                  warmup: int, images: list[Path] | None, options: dict[str, Any], workers: int | None,
                  log: Callable[[str], None]) -> tuple[list[dict[str, Any]], str]:
    """bench's rows for several runners: per batch size the aggregate (device img/s summed over
    the runners, latency percentiles of every call of every runner) and ``per_device``; with
    ``images``, end to end through a :class:`WorkerPool` (img/s in total and per runner).
    Returns the rows and what ran ("2 x onnxruntime ... 1 threads")."""
    from .benchmark import _device_row, _percentiles

    log(f"{len(spread)} runners ({', '.join(p.slot for p in spread)}): device-only, all at once ...")
    device_rows, runners = _device_only_all(session, spread, device, batches, seconds, warmup)
    rows: list[dict[str, Any]] = []
    for b in batches:
        per = [{"worker": w, **_device_row(b, lat, warmup, shape)} for w, lat, shape in sorted(device_rows[b])]
        every = [v for _, lat, _ in device_rows[b] for v in lat]
        row: dict[str, Any] = {"batch": b, "device_ips": round(sum(r["device_ips"] for r in per), 3),
                               "latency_ms": _percentiles(every), "warmup": warmup,
                               "iterations": len(every), "input_shape": per[0]["input_shape"] if per else None,
                               "per_device": per}
        if images is not None:
            log(f"batch {b}: end to end on {len(spread)} runners ...")
            row.update(_e2e_pool(session, spread, device, b, seconds, images, options, workers))
        rows.append(row)
    return rows, f"{len(runners)} x {runners[0]}" if len(set(runners)) == 1 else "; ".join(runners)


def _e2e_pool(session: Any, spread: list[Placement], device: str | None, batch: int, seconds: float,
              images: list[Path], options: dict[str, Any], workers: int | None) -> dict[str, Any]:
    refs = [SampleRef(p.name, p) for p in images]
    pool = WorkerPool(session.artifact.path, spread, device, options, batch, workers)
    try:
        # warm-up: every runner's first calls (allocations, resampling caches) outside the clock
        list(pool.run([SampleRef(f"w{n}:{r.id}", r.path) for n, r in
                       enumerate(itertools.islice(itertools.cycle(refs), batch * 2 * len(spread)))]))
        deadline = time.perf_counter() + seconds
        min_images = batch * 3 * len(spread)

        def feed() -> Iterator[SampleRef]:
            for n, ref in enumerate(itertools.cycle(refs)):
                if n >= min_images and time.perf_counter() > deadline:
                    return
                yield SampleRef(f"{n}:{ref.id}", ref.path, ref.info)

        counts = [0] * len(spread)
        t0 = time.perf_counter()
        for i, *_ in pool.run(feed()):
            counts[i] += 1
        wall = time.perf_counter() - t0
        total = sum(counts)
        return {"e2e_ips": round(total / wall, 3), "e2e_images": total,
                "e2e_per_image_ms": pool.total_timings().per_image_ms(total),
                "workers": workers or default_workers(),
                "e2e_per_device": {w: round(n / wall, 3) for w, n in zip(pool.labels, counts)}}
    finally:
        pool.close()
