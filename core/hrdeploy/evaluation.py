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
from .model import Item, SampleRef
from .results import EvalResult
from .resume import RunIdentity, artifact_identity, dataset_identity, open_partial, partial_path, run_options
from .session import Session, check_model_options
from .stream import Observer, Stream

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
             log: Callable[[str], None] = print, compare: Session | None = None) -> EvalResult:
    """Evaluate ``session`` on ``data`` and write the result JSON to ``out``. With ``compare``
    (a reference model, e.g. the source ONNX on onnxruntime), every network input of this run
    also goes through the reference and the outputs are compared (``result["compare"]``).
    ``resume`` continues the interrupted run of ``out`` if it is this very run; ``restart``
    discards it (without either, an interrupted run's file is refused, never replaced)."""
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
    done, pf = open_partial(partial, identity, refs, metric, resume=resume, restart=restart, log=log)
    if resume:
        log(f"resuming: {len(done)} of {len(refs)} images already done ({partial.name})")
    todo = [r for r in refs if r.id not in done]
    gears = GearCount(recorder)
    if done:
        gears.add_stored(partial, done)
    stream = Stream(pipeline, session.runner, batch=batch, workers=workers, observe=gears)
    t0 = time.perf_counter()
    with pf:
        tick = progress(len(refs), len(done)) if progress else None
        fresh = 0
        for ref, pred, new in _in_dataset_order(refs, done, stream.run(todo)):
            metric.update(ref, pred)
            if not new:
                continue
            pf.write(dumps({"id": ref.id, "prediction": pred, "input_sizes": gears.last.pop(ref.id, [])},
                           indent=None) + "\n")
            fresh += 1
            if fresh % 16 == 0:
                pf.flush()
            if tick is not None:
                tick(1)
    wall = time.perf_counter() - t0
    summary = metric.summary()
    result = {
        **session.describe(), "data": {"spec": data, **dataset.info(), "evaluated": len(refs), "limit": limit,
                                       "per_gear": gears.per_gear()},
        "metric": summary, "preprocess": pipeline.params, "options": opts, "batch": stream.batch,
        "timing": {"seconds": round(wall, 3), "images": len(todo),
                   "images_per_second": round(len(todo) / wall, 3) if wall > 0 and todo else None,
                   "per_image_ms": stream.timings.per_image_ms(len(todo)), "resumed": len(done)},
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


class GearCount:
    """Images per network input size ("HxW"), counted as the stream finishes each image: an
    image whose items (flip copies, test scales, person crops) have several sizes counts once
    under each. It shows how a dataset falls on an artifact's size gears (a fixed-size model
    has one entry). Passes every finished image on to ``then`` (``eval --compare``'s recorder)."""

    def __init__(self, then: Observer | None = None) -> None:
        self.then = then
        self.counts: Counter[tuple[int, int]] = Counter()
        #: each finished sample's sizes until its record is written: a resumed run counts its
        #: stored images from the partial file, so its result is the uninterrupted run's
        self.last: dict[str, list[list[int]]] = {}

    def __call__(self, ref: SampleRef, items: list[Item], outputs: list[dict[str, Any]]) -> None:
        sizes = sorted({(int(it.tensor.shape[-2]), int(it.tensor.shape[-1])) for it in items})
        self.counts.update(sizes)
        self.last[ref.id] = [list(s) for s in sizes]
        if self.then is not None:
            self.then(ref, items, outputs)

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


def _in_dataset_order(refs: list[SampleRef], done: dict[str, dict[str, Any]],
                      fresh: Iterator[tuple[SampleRef, dict[str, Any]]]) -> Iterator[tuple[SampleRef, dict[str, Any], bool]]:
    """Stored and new predictions in the dataset's order, flagged new: the metric (and the COCO
    results file it writes) then sees a resumed run exactly as an uninterrupted one."""
    for ref in refs:
        if ref.id in done:
            yield ref, done[ref.id], False
            continue
        got, pred = next(fresh)
        if got.id != ref.id:
            raise RuntimeError(f"the stream returned {got.id!r} where {ref.id!r} was due")
        yield ref, pred, True
    for got, _ in fresh:  # runs the stream to its end (its workers stop, its timings close)
        raise RuntimeError(f"the stream returned {got.id!r}, which was not asked for")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


