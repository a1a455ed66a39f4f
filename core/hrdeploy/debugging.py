"""``hrdeploy debug``: where does a converted model lose accuracy?

The inputs are the artifact's stored reference inputs, or images of a dataset through the
model's own preprocessing (``--data KIND:DIR --limit N``). The source ONNX runs on onnxruntime
fp32 with every tensor exposed; the converted model runs through its target's
:meth:`~hrdeploy.target.Target.layer_outputs` when it runs here, or the target writes the
vendor's dump commands into a folder for the device machine
(:meth:`~hrdeploy.target.Target.layer_dump_plan`) and ``--from-dump`` reads their output back.
"""
from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .artifact import Artifact, load_reference, sha256_file
from .errors import UserError
from .io import atomic_write_json, read_image
from .layerwise import LayerReport, compare_layers, default_threshold, source_tensors
from .model import Item, PipelineRuntime, Sample
from .plugins import Registry
from .target import LayerDump, Target

PLAN_FILE = "debug-plan.json"


@dataclass
class DebugOutcome:
    """A report (the layers compared), or the plan written for a device machine."""

    artifact: Artifact
    report: LayerReport | None = None
    plan_folder: Path | None = None
    commands: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        head = {"artifact": str(self.artifact.path), "model": self.artifact.model,
                "variant": self.artifact.variant, "target": self.artifact.target,
                "precision": self.artifact.precision, "notes": self.notes}
        if self.report is not None:
            return {**head, **self.report.to_dict()}
        return {**head, "plan": str(self.plan_folder), "commands": self.commands}


def debug_inputs(registry: Registry, artifact: Artifact, data: str | None, limit: int | None,
                 options: dict[str, Any] | None = None) -> tuple[np.ndarray, str]:
    """The inputs to compare on and where they come from: the reference inputs stored in the
    artifact, or the first ``limit`` samples of ``data`` through the model's own pipeline
    (the most common input size, since one comparison needs one shape)."""
    if data is None:
        ref = artifact.file("reference", required=False)
        if ref is None or not ref.is_file():
            raise UserError(f"{artifact.path} stores no reference inputs", "pass --data KIND:DIR to debug on your images")
        x, _ = load_reference(ref)
        return x[:limit] if limit else x, f"the {len(x[:limit] if limit else x)} reference inputs stored in the artifact"
    from .evaluation import check_limit, parse_data
    from .session import check_model_options

    check_limit(limit)
    kind, path = parse_data(data)
    spec = registry.model(artifact.model)
    variant = spec.variant(artifact.variant)
    opts = check_model_options(spec, options)
    sizes = artifact.sizes
    runtime = PipelineRuntime(sizes=tuple(tuple(s) for s in sizes) if sizes and not artifact.input.fixed_size else None,
                              files=artifact.files(), target=artifact.target)
    pipeline = spec.pipeline(variant, opts, runtime=runtime)
    refs = list(spec.dataset(kind, path, opts))[: limit or 8]
    items: list[Item] = []
    for ref in refs:
        items.extend(pipeline.prepare(Sample(ref, read_image(ref.path))))
    if not items:
        raise UserError(f"no network input could be made from {data}")
    shape = Counter(tuple(it.tensor.shape) for it in items).most_common(1)[0][0]
    x = np.stack([it.tensor for it in items if tuple(it.tensor.shape) == shape]).astype(np.float32)
    return x, f"{len(x)} inputs of {len(refs)} images of {data} ({shape[-2]}x{shape[-1]})"


def _source_for(artifact: Artifact, source: Path | None, notes: list[str]) -> Path:
    recorded = artifact.manifest.get("source_onnx") or {}
    if source is None:
        path = Path(recorded["path"]) if recorded.get("path") else None
        if path is None or not path.is_file():
            raise UserError(f"the source ONNX of {artifact.path} is not at its recorded path",
                            "pass --source SOURCE.onnx (the file it was converted from)")
        source = path
    src = Artifact.load(source)
    if src.is_folder:
        raise UserError(f"--source {source} is an artifact folder", "give the exported .onnx file")
    if (src.model, src.variant) != (artifact.model, artifact.variant):
        raise UserError(f"--source is {src.model}/{src.variant}, the artifact {artifact.model}/{artifact.variant}",
                        "give the ONNX file the artifact was converted from")
    if recorded.get("sha256") and recorded["sha256"] != sha256_file(src.file("model")):
        notes.append(f"--source {source.name} is not the file this artifact was converted from (sha256 "
                     "differs): layers are compared against it anyway")
    return src.file("model")


def debug(registry: Registry, model_file: Path, source: Path | None = None, *, data: str | None = None,
          limit: int | None = None, threshold: float | None = None, keep: Path | None = None,
          from_dump: Path | None = None, plan_out: Path | None = None, options: dict[str, Any] | None = None,
          log: Callable[[str], None] = print) -> DebugOutcome:
    """Compare ``model_file`` (an artifact folder) layer by layer with its source ONNX."""
    artifact = Artifact.load(model_file)
    if not artifact.is_folder:
        raise UserError(f"{model_file} is an exported ONNX file", "debug an artifact folder made by 'hrdeploy convert'")
    if artifact.manifest.get("dry_run") and from_dump is None:
        raise UserError(f"{model_file} is a dry-run plan: nothing was compiled",
                        "compile it with 'hrdeploy convert --from-plan' first")
    artifact.check_integrity()
    target: Target = registry.target(artifact.target)
    if target.layer_debug_refusal:
        raise UserError(target.layer_debug_refusal, target.layer_debug_hint or None)
    notes: list[str] = []
    src = _source_for(artifact, source, notes)
    thr = default_threshold(artifact.precision) if threshold is None else threshold

    if from_dump is not None:
        dump = target.read_layer_dump(artifact, Path(from_dump), src)
        x = _plan_inputs(Path(from_dump))
        where = f"the inputs of the dump plan in {from_dump}"
    else:
        x, where = debug_inputs(registry, artifact, data, limit, options)
        caps = target.capabilities()
        runs_here = "layer_outputs" in caps and target.probe().available
        if not runs_here and "layer_dump_plan" in caps:
            return _write_plan(artifact, target, x, src, plan_out, where, notes, log)
        if "layer_outputs" not in caps:
            raise UserError(f"target {target.name!r} cannot expose the layers of its models",
                            "its plugin implements neither layer_outputs nor layer_dump_plan")
        target.require()
        dump = _run_layers(target, artifact, x, src, keep, log)
    log(f"comparing on {where}")
    ref = source_tensors(src, x)
    report = compare_layers(src, ref, dump, thr)
    report.notes = notes + report.notes
    if report.unmatched:
        report.notes.append(f"{len(report.unmatched)} source tensors have no counterpart in the converted "
                            "model (fused away or renamed by the toolchain); their inputs' figures carry over")
    return DebugOutcome(artifact, report, notes=report.notes)


def _run_layers(target: Target, artifact: Artifact, x: np.ndarray, src: Path, keep: Path | None,
                log: Callable[[str], None]) -> LayerDump:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        return target.layer_outputs(artifact, x, src, keep, log)
    with tempfile.TemporaryDirectory(prefix="hrdeploy-debug-") as tmp:
        return target.layer_outputs(artifact, x, src, Path(tmp), log)


def _write_plan(artifact: Artifact, target: Target, x: np.ndarray, src: Path, plan_out: Path | None,
                where: str, notes: list[str], log: Callable[[str], None]) -> DebugOutcome:
    from .outputs import discard_created, prepare_output_folder

    folder = Path(plan_out) if plan_out else artifact.path.with_name(artifact.path.name + ".debug")
    created = prepare_output_folder(folder, [artifact.path, src], force=False, option="--plan")
    try:
        np.save(folder / "debug-inputs.npy", x)
        commands = target.layer_dump_plan(artifact, x, src, folder)
    except BaseException:  # a target refusing this artifact leaves no half-written plan behind
        discard_created(created, keep_suffixes=())
        raise
    atomic_write_json(folder / PLAN_FILE, {"format": "hrdeploy-debug-plan-1", "artifact": str(artifact.path),
                                            "source": src.name, "inputs": where, "commands": commands})
    log(f"{target.name} models run on the device machine: the layer dump plan is in {folder}")
    return DebugOutcome(artifact, None, folder, commands, notes)


def _plan_inputs(folder: Path) -> np.ndarray:
    path = folder / "debug-inputs.npy"
    if not path.is_file():
        raise UserError(f"{folder} is not a debug plan folder: no debug-inputs.npy in it",
                        "give the folder 'hrdeploy debug' wrote for the device machine")
    return np.load(path, allow_pickle=False)
