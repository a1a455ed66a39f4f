"""``hrdeploy eval``: stream a dataset through an artifact, score it, write result.json
atomically. Predictions are appended to ``<result>.partial.jsonl`` as they come, so an
interrupted run continues with ``--resume`` where it stopped, exactly (see :mod:`.resume`)."""
from __future__ import annotations

import datetime as _dt
import json
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from . import __version__
from .crosscheck import OutputRecorder, check_reference, compare_recorded
from .errors import UserError
from .io import atomic_write_json, dumps
from .model import SampleRef
from .results import EvalResult
from .resume import RunIdentity, artifact_identity, dataset_identity, open_partial, partial_path, run_options
from .session import Session, check_model_options
from .executor import EvalPlan, ExecutorFactory, Finished, LocalExecutor

if TYPE_CHECKING:

    pass

ProgressFactory = Callable[[int, int], Any]


def parse_data(data: str) -> tuple[str, Path]:
    kind, sep, path = data.partition(":")
    if not sep or not kind or not path:
        raise UserError(f"--data expects KIND:PATH (e.g. imagenet:/data/ImageNet or coco:/data/coco), got {data!r}")
    return kind.lower(), Path(path)


def check_limit(limit: int | None) -> None:
    """None (every image) or a whole number >= 1: a negative limit used as a slice would
    silently drop images from the end, and 0 would evaluate nothing."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise UserError(f"--limit must be a whole number >= 1, got {limit!r}", "omit it to evaluate every image")


def report_skipped(info: dict[str, Any], log: Callable[[str], None]) -> None:
    """Say which entries ``--skip-missing`` left out (result.json lists them all)."""
    skipped = info.get("skipped_missing")
    if skipped:
        names = skipped["names"]
        log(f"--skip-missing: {skipped['count']} missing images skipped: "
            + ", ".join(names[:2]) + (", ... (all in data.skipped_missing)" if len(names) > 2 else ""))


def evaluate(session: Session, data: str, out: Path, *, limit: int | None = None, batch: int = 1,
             resume: bool = False, restart: bool = False, options: dict[str, Any] | None = None,
             workers: int | None = None, progress: Callable[[int, int], Iterator[None] | Any] | None = None,
             log: Callable[[str], None] = print, compare: Session | None = None,
             executor: ExecutorFactory | None = None) -> EvalResult:
    """Evaluate ``session`` on ``data`` and write the result JSON to ``out``. With ``compare``
    (a reference model, e.g. the source ONNX on onnxruntime), every network input of this run
    also goes through the reference and the outputs are compared (``result["compare"]``).
    ``resume`` continues the interrupted run of ``out`` if it is this very run; ``restart``
    discards it (without either, an interrupted run's file is refused, never replaced).
    ``executor`` chooses where the samples run (:mod:`hrdeploy.executor`; default: the
    session's runner in this process); the result is the same wherever they run, but for
    ``timing`` and the runner fields."""
    check_limit(limit)
    kind, path = parse_data(data)
    opts = check_model_options(session.spec, options)
    pipeline = session.pipeline(opts)
    dataset = session.spec.dataset(kind, path, opts)
    every: list[SampleRef] = list(dataset)
    refs = every[:limit]
    report_skipped(dataset.info(), log)
    metric = dataset.metric()
    recorder = None
    if compare is not None:
        check_reference(session, compare)
        recorder = OutputRecorder(list(session.runner.output_names))
    identity = RunIdentity(artifact_identity(session), dataset_identity(dataset, every),
                           run_options(session, opts, pipeline.params, batch, limit))
    partial = partial_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # made before the partial file is touched: an executor that cannot run refuses first
    source = (executor or LocalExecutor)(EvalPlan(session, pipeline, opts, batch, workers, observe=recorder))
    done, pf = open_partial(partial, identity, refs, metric, resume=resume, restart=restart, log=log)
    if resume:
        log(f"resuming: {len(done)} of {len(refs)} images already done ({partial.name})")
    todo = [r for r in refs if r.id not in done]
    gears = GearCount()
    if done:
        gears.add_stored(partial, done)
    per_worker: Counter[str] = Counter()
    t0 = time.perf_counter()
    with pf:
        tick = progress(len(refs), len(done)) if progress else None
        fresh = 0

        def arrived(f: Finished) -> None:  # written as it comes: an interruption loses nothing finished
            nonlocal fresh
            gears.add(f.input_sizes)
            per_worker[f.worker] += 1
            pf.write(dumps({"id": f.ref.id, "prediction": f.prediction, "input_sizes": f.input_sizes,
                            "worker": f.worker}, indent=None) + "\n")
            fresh += 1
            if fresh % 16 == 0:
                pf.flush()
            if tick is not None:
                tick(1)

        fresh_iter = source.predictions(todo)
        try:
            for ref, pred in in_dataset_order(refs, done, fresh_iter, arrived):
                metric.update(ref, pred)
        finally:  # an interrupted or refused run stops its workers now, not when collected
            close = getattr(fresh_iter, "close", None)
            if close is not None:
                close()
    wall = time.perf_counter() - t0
    summary = metric.summary()
    ran = source.describe()
    result = {
        **session.describe(), **{k: v for k, v in ran.items() if k != "timing"},
        "data": {"spec": data, **dataset.info(), "evaluated": len(refs), "limit": limit,
                 "per_gear": gears.per_gear()},
        "metric": summary, "preprocess": pipeline.params, "options": opts, "batch": source.batch,
        "timing": {"seconds": round(wall, 3), "images": len(todo),
                   "images_per_second": round(len(todo) / wall, 3) if wall > 0 and todo else None,
                   "per_image_ms": source.timings.per_image_ms(len(todo)), "resumed": len(done),
                   # this run's images (not the resumed ones) per worker and per host
                   "per_worker": dict(sorted(per_worker.items())), "per_host": _per_host(per_worker),
                   **(ran.get("timing") or {})},
        "created": _now(), "hrdeploy_version": __version__,
    }
    reports = []
    if recorder is not None:
        assert compare is not None
        log(f"--compare: running the {len(recorder.inputs)} network inputs of this run through {compare.artifact.path}")
        reports = compare_recorded(session, compare, recorder, batch=max(batch, 8))
        result["compare"] = [{"input_size": size, **r.to_dict()} for size, r in reports]
    extra = metric.extra_files()
    written = {}
    for name, obj in extra.items():
        target = out.with_name(f"{out.stem}.{name}")
        atomic_write_json(target, obj, indent=None)
        written[name] = target.name
    if written:
        result["files"] = written
    atomic_write_json(out, result)
    partial.unlink(missing_ok=True)
    outcome = EvalResult(result, Path(out), [*metric.rows(summary), *gears.rows()], reports)
    from .plugins import registry

    registry().call("hrdeploy_after_eval", result=result, result_path=Path(out), outcome=outcome)
    return outcome


def _per_host(per_worker: Counter[str]) -> dict[str, int]:
    hosts: Counter[str] = Counter()
    for worker, n in per_worker.items():
        hosts[worker.split("/", 1)[0]] += n
    return dict(sorted(hosts.items()))


class GearCount:
    """Images per network input size ("HxW"), counted as each image is finished: an image whose
    items (flip copies, test scales, person crops) have several sizes counts once under each.
    It shows how a dataset falls on an artifact's size gears (a fixed-size model has one
    entry). A resumed run counts its stored images from the partial file, so its result is
    the uninterrupted run's."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[int, int]] = Counter()

    def add(self, sizes: list[list[int]]) -> None:
        self.counts.update((int(h), int(w)) for h, w in sizes)

    def add_stored(self, partial: Path, done: dict[str, Any]) -> None:
        """Count the images a resumed run takes from ``partial`` (validated by
        :func:`hrdeploy.resume.open_partial`; records without sizes count nothing)."""
        for line in partial.read_text(encoding="utf-8").splitlines()[1:]:
            rec = json.loads(line) if line.strip() else None
            if isinstance(rec, dict) and rec.get("id") in done:
                self.counts.update(tuple(s) for s in rec.get("input_sizes", []))

    def per_gear(self) -> dict[str, int]:
        """{"HxW": images}, the most used size first."""
        ordered = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return {f"{h}x{w}": n for (h, w), n in ordered}

    def rows(self) -> list[tuple[str, str]]:
        """The eval table's row (none when no image reached the network)."""
        if not self.counts:
            return []
        return [("images per input size", ", ".join(f"{k}: {n}" for k, n in self.per_gear().items()))]


def in_dataset_order(refs: list[SampleRef], done: dict[str, dict[str, Any]], fresh: Iterator[Finished],
                     arrived: Callable[[Finished], None]) -> Iterator[tuple[SampleRef, dict[str, Any]]]:
    """Stored and new predictions in the dataset's order, whatever order ``fresh`` finishes
    them in (``arrived`` sees each new one as it comes): the metric (and the COCO results file
    it writes) then sees a resumed or multi-device run exactly as an uninterrupted one. A sample
    not asked for, finished twice, or never finished is refused with one line."""
    wanted = {r.id for r in refs if r.id not in done}
    buffered: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    pos = 0
    for f in fresh:
        key = f.ref.id
        if key not in wanted:
            raise UserError(f"the executor returned sample {key!r} (from {f.worker}), which was not asked for")
        if key in seen:
            raise UserError(f"the executor returned sample {key!r} twice (the second from {f.worker})")
        seen.add(key)
        arrived(f)
        buffered[key] = f.prediction
        while pos < len(refs) and (refs[pos].id in done or refs[pos].id in buffered):
            ref = refs[pos]
            yield ref, done[ref.id] if ref.id in done else buffered.pop(ref.id)
            pos += 1
    while pos < len(refs) and refs[pos].id in done:
        yield refs[pos], done[refs[pos].id]
        pos += 1
    if pos < len(refs):
        missing = [r.id for r in refs[pos:] if r.id not in done and r.id not in seen]
        raise UserError(f"the executor finished without {len(missing)} of the samples asked for "
                        f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


