"""``convert --precision int8 --accuracy-budget SPEC``: mixed precision chosen against an
accuracy budget, the same way on every target with :attr:`~hrdeploy.target.Target.mixed_precision`.

Start from full int8. When the budget does not hold on held-out inputs, the layer-wise
comparison (:mod:`hrdeploy.layerwise`) of that build gives the layers in topological order,
each with the noise it adds. Local noise alone is a poor guide to what to keep in float: noise
added near the output reaches it almost undamped while noise in an early high-resolution branch
is averaged away (measured on HRNet-W18-C: the 64 layers adding the most noise kept in float
moved the output cosine from 0.99958 to 0.99964, the last 30 layers to 0.99991). So the layers
are cut into contiguous segments along the depth, each segment is built in float once to
measure how much of the loss it accounts for (a sensitivity pass, as NNCF's accuracy control and
TPU-MLIR's quantize-table search do per layer), and segments join the float set, most
sensitive first, until the budget holds (the sensitivity pass runs from the output backwards and
stops at a segment that meets the budget alone); the last one joined is then halved while the budget
still holds. Every build's figures and throughput are recorded in the manifest of the build
kept: the smallest float set meeting the budget, or, when even every segment in float misses
it, the closest (exit 1).

Budgets:

* ``cosine=0.9999``: every output's worst per-sample cosine against the source (fp32);
* ``top1=0.995``: top-1 agreement with the source (classification);
* ``keypoints-px=1.0``: mean keypoint error in input pixels against the source (pose);
* ``metric-drop=0.5``: the task metric on ``--data`` (top-1 %, COCO AP) may drop at most this
  much below the source's on the same images.
"""
from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .artifact import Artifact
from .errors import UserError
from .io import atomic_write_json, list_images
from .model import ModelSpec, Tolerance, Variant
from .parity import compare_output
from .plugins import Registry

KINDS = {"cosine": "min cosine", "top1": "top-1 agreement", "keypoints-px": "keypoint error (px)",
         "metric-drop": "metric drop"}


@dataclass(frozen=True)
class Budget:
    kind: str
    value: float

    def __str__(self) -> str:
        return f"{self.kind}={self.value:g}"

    @property
    def task_name(self) -> str | None:
        """The :class:`~hrdeploy.model.TaskCheck` name the budget reads, if it is a task one."""
        return {"top1": "top-1 agreement", "keypoints-px": "keypoint error (px)"}.get(self.kind)


def parse_budget(text: str) -> Budget:
    kind, sep, raw = text.partition("=")
    kind = kind.strip().lower()
    if not sep or kind not in KINDS:
        raise UserError(f"--accuracy-budget expects KIND=VALUE with KIND one of {', '.join(KINDS)}, got {text!r}",
                        "e.g. --accuracy-budget cosine=0.9999")
    try:
        value = float(raw)
    except ValueError:
        raise UserError(f"--accuracy-budget {kind}: {raw!r} is not a number") from None
    if not math.isfinite(value) or (kind in ("cosine", "top1") and not 0 < value <= 1) or \
            (kind in ("keypoints-px", "metric-drop") and value < 0):
        limits = "in (0, 1]" if kind in ("cosine", "top1") else ">= 0"
        raise UserError(f"--accuracy-budget {kind}={raw}: the value must be {limits}")
    return Budget(kind, value)


def check_budget_fits(budget: Budget, spec: ModelSpec, data: str | None) -> None:
    """Refuse a budget the model cannot be judged by, before anything is converted."""
    if budget.kind == "metric-drop" and data is None:
        raise UserError("--accuracy-budget metric-drop needs --data KIND:DIR (the images the metric is taken on)")
    want = {"top1": "classification", "keypoints-px": "pose"}.get(budget.kind)
    if want and not spec.task.startswith(want):
        raise UserError(f"--accuracy-budget {budget.kind} is a {want} figure; {spec.name} is a {spec.task} model",
                        "use cosine=... (or metric-drop=... with --data)")


@dataclass
class Step:
    kept: list[str]
    folder: Path
    figures: dict[str, Any]
    met: bool

    def to_dict(self) -> dict[str, Any]:
        return {"layers_in_float": len(self.kept), "kept_float": self.kept, **self.figures, "met": self.met}


def held_out_inputs(spec: ModelSpec, variant: Variant, calib_dir: Path | None, calib_count: int,
                    options: dict[str, Any]) -> tuple[np.ndarray, str]:
    """Inputs the quantizer has not seen: calibration images beyond ``calib_count`` (up to 16),
    else synthetic photographs of a seed the calibration does not use."""
    from .reference import reference_inputs

    rest = list_images(calib_dir)[calib_count:calib_count + 16] if calib_dir else []
    if len(rest) >= 4:
        return reference_inputs(spec, variant, rest, count=len(rest), options=options), \
            f"{len(rest)} held-out images of --calib (beyond the {calib_count} calibrated on)"
    return reference_inputs(spec, variant, None, count=8, seed=9001, options=options), \
        "8 synthetic images (pass more --calib images than --calib-count to hold out real ones)"


def judge(spec: ModelSpec, variant: Variant, budget: Budget, ref: Sequence[np.ndarray],
          got: Sequence[np.ndarray]) -> dict[str, Any]:
    """The figures of one build on the held-out inputs and whether the budget holds."""
    names = list(variant.outputs)
    cos = {n: compare_output(n, r, t, Tolerance()).cosine_min for n, r, t in zip(names, ref, got)}
    tol = Tolerance(task=budget.value if budget.task_name else None)
    with np.errstate(all="ignore"):
        task = spec.task_check(variant, list(ref), list(got), tol)
    figures: dict[str, Any] = {"cosine": {n: round(c, 7) for n, c in cos.items()}, "min_cosine": round(min(cos.values()), 7)}
    if task is not None:
        figures["task"] = {"name": task.name, "value": task.value, "detail": task.text}
    if budget.kind == "cosine":
        met = min(cos.values()) >= budget.value
    elif budget.task_name:
        if task is None or task.name != budget.task_name:
            raise UserError(f"{spec.name} reports no {budget.task_name}", "use --accuracy-budget cosine=...")
        met = bool(task.passed)
    else:
        met = True  # metric-drop: decided on --data by the caller
    return {**figures, "met_on_held_out": met}


def _throughput(registry: Registry, folder: Path, batch: int, seconds: float) -> float | None:
    from .benchmark import device_only
    from .session import open_session

    with open_session(registry, folder) as session:
        if session.runner.simulated:
            return None
        b = batch if session.runner.batch_sizes is None or batch in session.runner.batch_sizes else \
            (session.runner.batch_sizes or [1])[0]
        return float(device_only(session, b, seconds, warmup=2)["device_ips"])


def _outputs(registry: Registry, folder: Path, x: np.ndarray) -> list[np.ndarray]:
    from .session import open_session
    from .stream import run_arrays

    with open_session(registry, folder) as session:
        return run_arrays(session.runner, x)


def _metric(registry: Registry, model: Path, data: str, limit: int | None, work: Path) -> float:
    from .evaluation import evaluate
    from .session import open_session

    with open_session(registry, model) as session:
        result = evaluate(session, data, work / f"eval-{abs(hash(str(model)))}.json", limit=limit, batch=8,
                          log=lambda m: None)
    summary = result.document["metric"]
    for key in ("top1", "AP", "ap"):
        if key in summary:
            return float(summary[key])
    raise UserError("the model's metric has no top1 or AP figure for --accuracy-budget metric-drop")


def _score(budget: Budget, figures: dict[str, Any]) -> float:
    """Higher is better, in the budget's own terms (for ordering candidate builds)."""
    if budget.kind == "metric-drop" and "metric" in figures:
        return -float(figures["metric"]["drop"])
    if budget.kind == "keypoints-px" and "task" in figures:
        return -float(figures["task"]["value"])
    if budget.kind == "top1" and "task" in figures:
        return float(figures["task"]["value"]) + 1e-3 * float(figures["min_cosine"])
    return float(figures["min_cosine"])


def segments(names: Sequence[str], count: int) -> list[list[str]]:
    """``names`` (topological order) cut into ``count`` contiguous, nearly equal parts."""
    count = max(1, min(count, len(names)))
    bounds = np.linspace(0, len(names), count + 1).round().astype(int)
    return [list(names[a:b]) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def budgeted_convert(registry: Registry, onnx_path: Path, target_name: str, out_dir: Path, budget: Budget, *,
                     convert_kwargs: dict[str, Any], data: str | None = None, limit: int | None = None,
                     max_steps: int = 14, parts: int = 8, bench_batch: int = 8, bench_seconds: float = 2.0,
                     log: Callable[[str], None] = print) -> tuple[Artifact, dict[str, Any]]:
    """Convert to int8 with layers moved to float until ``budget`` holds; see the module doc.
    At most ``max_steps`` builds; ``parts`` segments along the depth. Returns the artifact kept
    in ``out_dir`` and the record written to its manifest (``accuracy_budget``), whose ``met``
    says whether the budget held."""
    from .conversion import convert
    from .debugging import debug
    from .outputs import check_output_folder
    from .reference import run_onnx

    src = Artifact.load(onnx_path)
    spec = registry.model(src.model)
    variant = spec.variant(src.variant)
    target = registry.target(target_name)
    check_budget_fits(budget, spec, data)
    if not target.mixed_precision:
        raise UserError(f"target {target.name!r} cannot keep chosen layers in float, so it cannot meet an "
                        "accuracy budget by mixed precision", "convert without --accuracy-budget")
    check_output_folder(out_dir, [onnx_path, convert_kwargs.get("calib_dir")], force=bool(convert_kwargs.get("force")))
    x, where = held_out_inputs(spec, variant, convert_kwargs.get("calib_dir"), convert_kwargs.get("calib_count", 100),
                               convert_kwargs.get("model_options") or {})
    ref = run_onnx(src.file("model"), x)
    log(f"accuracy budget {budget}: judged on {where}")
    steps: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="hrdeploy-budget-", dir=Path(out_dir).absolute().parent) as tmp:
        work = Path(tmp)
        base_ips = _throughput(registry, src.path, bench_batch, bench_seconds) if target.name == "onnxruntime" else None
        source_metric = _metric(registry, src.path, data, limit, work) if budget.kind == "metric-drop" else None

        def build(kept: list[str], why: str) -> Step:
            folder = work / f"step-{len(steps)}"
            log(f"build {len(steps)}: int8, {len(kept)} layers in float ({why})")
            convert(registry, src.path, target.name, folder, precision="int8", keep_float=kept, log=lambda m: None,
                    **{**convert_kwargs, "force": False})
            figures = judge(spec, variant, budget, ref, _outputs(registry, folder, x))
            met = figures.pop("met_on_held_out")
            if source_metric is not None:
                value = _metric(registry, folder, data or "", limit, work)
                figures["metric"] = {"source": source_metric, "converted": value, "drop": round(source_metric - value, 4)}
                met = source_metric - value <= budget.value
            figures["images_per_second"] = _throughput(registry, folder, bench_batch, bench_seconds)
            figures["why"] = why
            step = Step(list(kept), folder, figures, met)
            steps.append(step)
            log(f"build {len(steps) - 1}: min cosine {figures['min_cosine']:.6f}"
                + (f", {figures['task']['name']} {figures['task']['value']:.4g}" if "task" in figures else "")
                + (f", {figures['images_per_second']:.1f} img/s" if figures["images_per_second"] else "")
                + (" - budget met" if met else ""))
            return step

        first = build([], "full int8")
        if not first.met:
            outcome = debug(registry, first.folder, src.path, limit=4, log=lambda m: None)
            assert outcome.report is not None
            names = [r.tensor for r in outcome.report.rows]
            parts_ = segments(names, min(parts, max(1, max_steps - 2)))
            # sensitivity pass: each segment alone in float, from the output backwards (noise
            # added there reaches the output undamped), stopping at one that meets it alone
            alone = {}
            for i in reversed(range(len(parts_))):
                seg = parts_[i]
                if len(steps) >= max_steps:
                    break
                alone[i] = build(seg, f"sensitivity: segment {i + 1}/{len(parts_)}, layers {names.index(seg[0])}"
                                      f"..{names.index(seg[-1])}")
                if alone[i].met:
                    break
            order = sorted(alone, key=lambda i: -_score(budget, alone[i].figures))
            kept: list[str] = []
            best = next((s for s in alone.values() if s.met), None)
            for i in order:
                if best is not None or len(steps) >= max_steps:
                    break
                kept = kept + parts_[i]
                step = alone[i] if kept == parts_[i] else build(sorted(kept, key=names.index),
                                                                f"segments joined: {len(kept)} layers")
                if step.met:
                    best = step
            # trim: halve the float set of the build that met the budget while it still holds
            while best is not None and len(best.kept) > 1 and len(steps) < max_steps:
                half = segments(best.kept, 2)
                tried = [build(h, f"trim: half of {len(best.kept)} layers") for h in half
                         if len(steps) < max_steps]
                good = [t for t in tried if t.met]
                if not good:
                    break
                best = min(good, key=lambda t: len(t.kept))
        met = [s for s in steps if s.met]
        chosen = min(met, key=lambda s: (len(s.kept), -_score(budget, s.figures))) if met else \
            max(steps, key=lambda s: _score(budget, s.figures))
        record = {
            "budget": str(budget), "held_out": where, "met": chosen.met,
            "chosen_step": steps.index(chosen), "kept_float": chosen.kept,
            "fp32_images_per_second": base_ips, "bench_batch": bench_batch,
            "steps": [s.to_dict() for s in steps],
        }
        int8_ips = steps[0].figures.get("images_per_second")
        cand_ips = chosen.figures.get("images_per_second")
        if base_ips and int8_ips and cand_ips:
            record["speedup_over_fp32"] = {"int8": round(int8_ips / base_ips, 3), "chosen": round(cand_ips / base_ips, 3),
                                           "kept_of_int8_speedup": round((cand_ips - base_ips) / (int8_ips - base_ips), 3)
                                           if int8_ips > base_ips else None}
        out_dir = Path(out_dir)
        if out_dir.exists():  # empty, or an hrdeploy folder --force may replace (checked above)
            shutil.rmtree(out_dir)
        shutil.move(str(chosen.folder), str(out_dir))
    art = Artifact.load(out_dir)
    art.manifest["accuracy_budget"] = record
    atomic_write_json(out_dir / "manifest.json", art.manifest)
    return Artifact.load(out_dir), record
