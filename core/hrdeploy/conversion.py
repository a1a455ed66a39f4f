"""``hrdeploy convert``: exported ONNX -> artifact folder for one target, with the parity of
the converted model against ONNX Runtime fp32 on the same inputs recorded in its manifest."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from . import __version__
from .artifact import (
    FORMAT,
    HASHES,
    MANIFEST,
    REFERENCE,
    Artifact,
    hash_files,
    load_reference,
    reference_meta,
    save_reference,
)
from .errors import ToolchainMissing, UserError
from .io import atomic_write_json, list_images, read_image
from .model import InputSpec, ModelSpec, PipelineRuntime, Sample, SampleRef, Variant
from .outputs import check_output_folder, discard_created, prepare_output_folder
from .parity import compare
from .plugins import Registry
from .reference import reference_inputs, run_onnx
from .target import ConvertRequest, Target, sha256_file
from .kit.toolrun import step_timeout as timeout_option
from .validate import batch_sizes


def calibration_source(spec: ModelSpec, variant: Variant, images: Sequence[Path],
                       options: dict[str, Any]) -> Callable[[int], Iterator[np.ndarray]]:
    """Calibration tensors made by the model's own preprocessing, first ``count`` images."""
    def generate(count: int) -> Iterator[np.ndarray]:
        pipeline = spec.pipeline(variant, options, runtime=PipelineRuntime.for_variant(variant))
        for path in images[:count]:
            for item in pipeline.prepare(Sample(SampleRef(path.name, path), read_image(path))):
                yield item.tensor
    return generate


def _reference_set(spec: ModelSpec, variant: Variant, src: Artifact, calib: list[Path], calib_count: int,
                   options: dict[str, Any], compiled: Sequence[tuple[int, int]] | None = None
                   ) -> tuple[np.ndarray, str]:
    """Inputs for the parity check: held-out calibration images when there are some (images
    the quantiser has not seen), else the reference inputs exported with the model, else
    synthetic images. ``compiled``: the gears chosen with ``--gears``, when stored reference
    inputs of another size cannot serve."""
    held_out = calib[calib_count:calib_count + 8]
    if held_out:
        return reference_inputs(spec, variant, held_out, count=8, options=options), \
            f"{len(held_out)} held-out images from --calib"
    ref_file = src.file("reference", required=False)
    if ref_file is not None and ref_file.is_file():
        src.check_integrity()  # the reference was stored for this very .onnx
        x, _ = load_reference(ref_file)
        # inputs at a size the chosen gears do not compile could not run on the artifact
        if compiled is None or tuple(x.shape[-2:]) in set(compiled):
            return x, f"reference inputs exported with the model ({ref_file.name})"
    return reference_inputs(spec, variant, None, options=options), "synthetic images"


def parse_batches(text: str | None, variant: Variant) -> list[int]:
    if isinstance(variant.input.batch, int):
        fixed = variant.input.batch
        if text and batch_sizes(text) != [fixed]:
            raise UserError(f"{variant.name} only runs at batch {fixed}")
        return [fixed]
    return batch_sizes(text) if text else [1]


def read_gear_file(path: Path, model: str | None = None, variant: str | None = None) -> list[tuple[int, int]]:
    """The (H, W) pairs of a gear file: ``{"gears": [[H, W], ...], ...}`` or ``[[H, W], ...]``.
    Refused with one line when it is missing, not JSON, holds no such list, or names another
    ``model``/``variant`` than the one converted (``hrdeploy gears`` records both: gears chosen
    for w48's 640 px short side do not serve w32). The pairs themselves are checked against
    the model by :func:`check_gears`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--gears {path}: no such file", "write one with 'hrdeploy gears MODEL --data ... -o FILE'")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"--gears {path} is not JSON: {e}") from None
    gears = doc.get("gears") if isinstance(doc, dict) else doc
    if isinstance(doc, dict):
        for key, want in (("model", model), ("variant", variant)):
            if want is not None and isinstance(doc.get(key), str) and doc[key] != want:
                raise UserError(f"--gears {path} was chosen for {key} {doc[key]!r}, not {want!r}",
                                "choose gears for this model with 'hrdeploy gears'")
    if not isinstance(gears, list):
        raise UserError(f"--gears {path} holds no gear list",
                        'expected {"gears": [[H, W], ...]} (as \'hrdeploy gears -o\' writes) or [[H, W], ...]')
    return _pairs(gears, f"--gears {path}")


def _pairs(gears: Any, where: str) -> list[tuple[int, int]]:
    if isinstance(gears, (str, bytes)) or not isinstance(gears, Sequence):
        raise UserError(f"{where}: expected a list of [H, W] pairs, got {type(gears).__name__}")
    out: list[tuple[int, int]] = []
    for g in gears:
        # bool is an int to Python, and 512.5 is no size: only whole numbers are taken
        if (isinstance(g, (str, bytes)) or not isinstance(g, Sequence) or len(g) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in g)):
            raise UserError(f"{where}: gear {json.dumps(g) if _jsonable(g) else g!r} is not an [H, W] pair of whole numbers")
        out.append((int(g[0]), int(g[1])))
    return out


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def check_gears(gears: Sequence[tuple[int, int]], variant: Variant, spec_input: InputSpec, where: str) -> list[tuple[int, int]]:
    """``gears`` if the model can be compiled at each: the model takes any size (a fixed-size
    model has nothing to choose), and every H and W is a positive multiple of its input stride.
    Duplicates are dropped, the order is kept (it is the order the compilers build them in)."""
    _takes_gears(variant, spec_input)
    if not gears:
        raise UserError(f"{where}: the gear list is empty")
    stride = max(int(spec_input.stride or 1), 1)
    for h, w in gears:
        if h <= 0 or w <= 0 or h % stride or w % stride:
            raise UserError(f"{where}: gear {h}x{w} is not a positive multiple of the input stride {stride} "
                            f"of {variant.name}")
    return list(dict.fromkeys((int(h), int(w)) for h, w in gears))


def _takes_gears(variant: Variant, spec_input: InputSpec) -> None:
    fixed = spec_input.fixed_size
    if fixed:
        raise UserError(f"{variant.name} has the fixed input size {fixed[0]}x{fixed[1]}: it takes no --gears",
                        "--gears is for models that take any input size (DEKR)")


def resolve_gears(gears: Any, variant: Variant, spec_input: InputSpec, spec: ModelSpec | None = None,
                  data: str | None = None, budget: int = 5) -> tuple[list[tuple[int, int]], str] | None:
    """(the checked gear set, its source for the manifest) of a ``gears=`` argument, or None
    when none was given. A path (or a string naming one) is read as a gear file; ``"auto"``
    chooses them from the image sizes of ``data`` (KIND:PATH) with at most ``budget`` gears,
    as ``hrdeploy gears`` does (:func:`hrdeploy.gears.model_gear_report`)."""
    if gears is None:
        if data is not None:
            raise UserError("--data is for --gears auto (the images whose sizes choose the gears)")
        return None
    _takes_gears(variant, spec_input)  # before any file is read: the first thing to say
    if str(gears) == "auto":
        if data is None:
            raise UserError("--gears auto needs --data KIND:PATH", "the images whose sizes choose the gears")
        from .evaluation import parse_data
        from .gears import model_gear_report

        kind, path = parse_data(data)
        report = model_gear_report(spec, variant, kind, path, budget=budget)
        pairs = _pairs(report["gears"], "--gears auto")
        return check_gears(pairs, variant, spec_input, "--gears auto"), f"auto: {data}, budget {int(budget)}"
    if data is not None:
        raise UserError("--data is for --gears auto; a gear file already lists the gears")
    if isinstance(gears, (str, Path)):
        pairs = read_gear_file(Path(gears), spec.name if spec is not None else None, variant.name)
        source, where = str(gears), f"--gears {gears}"
    else:
        pairs, source, where = _pairs(gears, "gears"), "argument", "gears"
    return check_gears(pairs, variant, spec_input, where), source


def convert(registry: Registry, onnx_path: Path, target_name: str, out_dir: Path, *, precision: str = "fp32",
            batch: str | None = None, calib_dir: Path | None = None, calib_count: int = 100,
            dry_run: bool = False, force: bool = False, target_options: dict[str, Any] | None = None,
            model_options: dict[str, Any] | None = None, log: Callable[[str], None] = print,
            toolchain_verdict: str = "record", step_timeout: float | None = None,
            gears: str | Path | Sequence[Sequence[int]] | None = None, gears_data: str | None = None,
            gears_budget: int = 5, keep_float: Sequence[str] | None = None) -> Artifact:
    """Convert ``onnx_path`` for ``target_name`` into the artifact folder ``out_dir`` and check
    its parity. ``gears``: the (H, W) sizes a static-shape target compiles instead of the
    variant's own gears (a gear file as ``hrdeploy gears -o`` writes, the pairs, or ``"auto"``:
    chosen from the image sizes of ``gears_data`` with at most ``gears_budget`` gears); a target
    that runs any shape (:attr:`Target.static_shapes` False) ignores them with a note. ``toolchain_verdict``: "record" (the vendor tools' own similarity verdicts are
    recorded and printed; hrdeploy's tolerance decides) or "decide" (a failed vendor verdict is
    a parity breach too). ``step_timeout``: seconds each vendor tool step may run (None: the
    default of :mod:`hrdeploy.kit.toolrun`, 0: no limit). ``out_dir`` must be new or empty, or an
    artifact of hrdeploy's with ``force`` (:mod:`hrdeploy.outputs`). ``keep_float``: source
    tensor names whose layers stay in float (mixed precision; targets with
    :attr:`Target.mixed_precision` only)."""
    _check_verdict_policy(toolchain_verdict)
    src = Artifact.load(onnx_path)
    if src.is_folder:
        raise UserError(f"{onnx_path} is already a converted artifact", "convert the exported .onnx file")
    spec: ModelSpec = registry.model(src.model)
    variant = spec.variant(src.variant)
    target: Target = registry.target(target_name)
    if precision not in target.precisions:
        raise UserError(f"target {target.name!r} does not support {precision}", "choose " + ", ".join(target.precisions))
    opts = target.check_options(target_options)
    if keep_float and not target.mixed_precision:
        raise UserError(f"target {target.name!r} cannot keep chosen layers in float (no mixed precision)",
                        "convert without an accuracy budget, or for a target whose 'hrdeploy list --json' "
                        "capabilities include mixed_precision")
    if keep_float and precision == "fp32":
        raise UserError("layers kept in float only mean something in a quantized build", "use --precision int8")
    timeout = timeout_option(step_timeout)
    out_dir = Path(out_dir)
    # what this conversion reads: never written over, nor removed by --force
    inputs = [Path(onnx_path), *src.files().values(), calib_dir]
    check_output_folder(out_dir, inputs, force=force)
    calib = list_images(calib_dir) if calib_dir else []
    if calib_dir and not calib:
        raise UserError(f"no images in --calib {calib_dir}")
    batches = parse_batches(batch, variant)
    model_opts = dict(model_options or {})
    # checked before anything is written: a bad gear file leaves no folder behind
    chosen = resolve_gears(gears, variant, src.input, spec, gears_data, gears_budget)
    net_input, gear_record = _gear_input(src.input, chosen, target, log)

    # the reference and calibration inputs are made at the sizes the target compiles
    net_variant = variant if net_input == src.input else dataclasses.replace(variant, input=net_input)
    ref_x, ref_source = _reference_set(spec, net_variant, src, calib, calib_count, model_opts,
                                       compiled=None if net_variant is variant else net_input.gears)
    # the manifest is written last, so a folder without one is never taken for an artifact;
    # a failed conversion removes what it wrote (recorded paths stay the final ones for --from-plan)
    folder = prepare_output_folder(out_dir, inputs, force=force)
    work = out_dir
    request = ConvertRequest(
        onnx_path=src.file("model").resolve(), out_dir=work, model=spec.name, variant=variant.name,
        task=spec.task, input=net_input, preprocess=src.manifest.get("preprocess", variant.preprocess),
        precision=precision, batch_sizes=batches, options=opts, dry_run=dry_run,
        calib_dir=calib_dir, calib_count=calib_count,
        calibration=calibration_source(spec, net_variant, calib, model_opts) if calib else None,
        reference_inputs=ref_x, log=log, step_timeout=timeout, keep_float=list(keep_float or []))
    try:
        result = target.convert(request)
        manifest: dict[str, Any] = {
            "format": FORMAT, "model": spec.name, "variant": variant.name, "task": spec.task,
            "input": _input_record(src.manifest.get("input", variant.input.to_dict()), net_input),
            "outputs": list(variant.outputs),
            "preprocess": request.preprocess, "tolerances": src.manifest.get("tolerances", {}),
            "weights": src.manifest.get("weights"), "target": target.name, "precision": precision,
            "batch_sizes": result.batch_sizes, "requested_batch_sizes": batches,
            "sizes": [list(s) for s in (result.sizes or [])] or None,
            "source_onnx": {"path": str(src.file("model")), "sha256": sha256_file(src.file("model"))},
            "toolchain": result.toolchain, "target_options": opts, "commands": request.commands,
            "checks": result.checks, "files": dict(result.files), "dry_run": dry_run,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "hrdeploy_version": __version__, **({"conversion": result.extra} if result.extra else {}),
            **({"gears": gear_record} if gear_record else {}),
        }
        # files the deployment needs besides the network (DEKR's rescore net) travel along
        for role, path in src.files().items():
            if role not in ("model", "reference") and path.is_file():
                shutil.copyfile(path, work / path.name)
                manifest["files"][role] = path.name
        # reference inputs + ONNX Runtime fp32 outputs: what `hrdeploy verify` compares against
        ref_y = run_onnx(src.file("model"), ref_x)
        save_reference(work / REFERENCE, ref_x, ref_y, variant.outputs, reference_meta(manifest))
        manifest["files"]["reference"] = REFERENCE
        manifest["reference"] = {"source": ref_source, "inputs": int(len(ref_x)), "runtime": "onnxruntime fp32"}
        # every file as written now: opening the artifact refuses one changed afterwards
        manifest[HASHES] = hash_files(work)
        atomic_write_json(work / MANIFEST, manifest)
    except BaseException:
        # keep the tool logs of a failed run (they are what the user needs to read); the folder
        # itself goes only if this conversion created it
        discard_created(folder)
        raise
    artifact = Artifact(work, manifest)
    if not dry_run:
        manifest["parity"] = judge_toolchain(check_parity(spec, variant, target, artifact, ref_x, ref_y,
                                                          precision, opts), manifest["checks"], toolchain_verdict)
        atomic_write_json(work / MANIFEST, manifest)
    return _converted(registry, Artifact(out_dir, manifest))


def _gear_input(spec_input: InputSpec, chosen: tuple[list[tuple[int, int]], str] | None, target: Target,
                log: Callable[[str], None]) -> tuple[InputSpec, dict[str, Any] | None]:
    """The input the target compiles and the manifest's ``gears`` record: the chosen gears
    replace the variant's on a static-shape target; a target that runs any shape keeps the
    input as exported and the record says the set was ignored. A fixed-size model without
    ``--gears`` has no gear record."""
    if chosen is None:
        if spec_input.fixed_size or not spec_input.gears:
            return spec_input, None
        return spec_input, {"sizes": [list(g) for g in spec_input.gears], "source": "variant"}
    sizes, source = chosen
    record: dict[str, Any] = {"sizes": [list(g) for g in sizes], "source": source}
    if not target.static_shapes:
        note = (f"target {target.name!r} runs any input size: the {len(sizes)} gears of {source} are not compiled "
                "(the pipeline keeps the model's own resize)")
        log(f"note: {note}")
        return spec_input, {**record, "ignored": note}
    return dataclasses.replace(spec_input, gears=tuple(sizes)), record


def _input_record(recorded: dict[str, Any], net_input: InputSpec) -> dict[str, Any]:
    """The manifest's ``input``: the exported one, with the gears the target was given."""
    out = dict(recorded)
    if not net_input.fixed_size and net_input.gears:
        out["gears"] = [list(g) for g in net_input.gears]
    return out


def check_parity(spec: ModelSpec, variant: Variant, target: Target, artifact: Artifact, ref_x: np.ndarray,
                 ref_y: list[np.ndarray], precision: str, options: dict[str, Any],
                 device: str | None = None) -> dict[str, Any]:
    """Run the converted model on the reference inputs and compare with ONNX Runtime fp32."""
    from .stream import run_arrays

    try:
        runner = target.open(artifact, device=device, options=options)
    except ToolchainMissing as e:
        return {"status": "not run", "reason": str(e),
                "hint": "run 'hrdeploy verify' on the machine that has the device"}
    with runner:
        test = run_arrays(runner, ref_x)
        label, simulated = runner.label, runner.simulated
    report = compare(spec, variant, ref_y, test, precision, "onnxruntime fp32 (source ONNX)",
                     f"{target.name} {precision}")
    return {"status": "passed" if report.passed else "failed", "runner": label, "simulated": simulated,
            **report.to_dict()}


def _converted(registry: Registry, artifact: Artifact) -> Artifact:
    """The artifact, after the ``hrdeploy_after_convert`` hook saw it (not for a dry run)."""
    if not artifact.manifest.get("dry_run"):
        registry.call("hrdeploy_after_convert", artifact=artifact)
    return artifact


def judge_toolchain(parity: dict[str, Any], checks: list[dict[str, Any]], policy: str) -> dict[str, Any]:
    """One parity policy for every target: the toolchain's own verdicts (``checks`` with a
    ``passed`` of True/False) are summarised under ``parity["toolchain"]``; only with the policy
    "decide" does a failed one make the parity fail (the artifact is kept either way)."""
    judged = [c for c in checks if isinstance(c, dict) and c.get("passed") is not None]
    failed = [str(c.get("text") or c) for c in judged if c["passed"] is False]
    parity["toolchain"] = {"verdicts": len(judged), "passed": not failed if judged else None,
                           "failed": failed, "decisive": policy == "decide"}
    if failed and policy == "decide" and parity.get("status") == "passed":
        parity["status"] = "failed"
    return parity


def _check_verdict_policy(policy: str) -> None:
    if policy not in ("record", "decide"):
        raise UserError(f"unknown toolchain verdict policy {policy!r}", "choose record or decide")


def convert_from_plan(registry: Registry, folder: Path, *, device: str | None = None,
                      log: Callable[[str], None] = print, toolchain_verdict: str = "record",
                      step_timeout: float | None = None) -> Artifact:
    """Compile a plan written by ``convert --dry-run`` (possibly on another machine): the target
    runs the recorded commands with the recorded configs, then the parity check runs here."""
    _check_verdict_policy(toolchain_verdict)
    timeout = timeout_option(step_timeout)
    art = Artifact.load(folder)
    if not art.is_folder or not art.manifest.get("dry_run"):
        raise UserError(f"{folder} is not a dry-run plan", "--from-plan takes a folder written by 'convert --dry-run'")
    target: Target = registry.target(art.target)
    if "run_plan" not in target.capabilities():  # refused before the plan's integrity is read
        target.run_plan(art.path)
    spec: ModelSpec = registry.model(art.model)
    variant = spec.variant(art.variant)
    art.check_integrity()  # the carried plan (source.onnx, plan.json, reference) is as it was written
    result = target.run_plan(art.path, log=log, step_timeout=timeout)
    m = art.manifest
    m["files"] = {**m.get("files", {}), **result.files}
    m["toolchain"] = result.toolchain or m.get("toolchain", {})
    m["checks"] = result.checks
    m["plan_commands"] = m.get("commands", [])
    m["commands"] = result.extra.get("commands", m.get("commands", []))
    if result.batch_sizes is not None:
        m["batch_sizes"] = result.batch_sizes
    if result.sizes:
        m["sizes"] = [list(s) for s in result.sizes]
    extra = {k: v for k, v in result.extra.items() if k != "commands"}
    if extra:
        m["conversion"] = extra
    m["dry_run"] = False
    m["compiled_from_plan"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    m[HASHES] = hash_files(art.path)
    atomic_write_json(art.path / MANIFEST, m)
    ref_x, stored = load_reference(art.file("reference"))
    ref_y = [stored[n] for n in variant.outputs]
    m["parity"] = judge_toolchain(check_parity(spec, variant, target, Artifact(art.path, m), ref_x, ref_y,
                                               art.precision, m.get("target_options", {}), device=device),
                                  m["checks"], toolchain_verdict)
    atomic_write_json(art.path / MANIFEST, m)
    return _converted(registry, Artifact(art.path, m))
