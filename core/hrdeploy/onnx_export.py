"""``hrdeploy export``: PyTorch module -> checked ONNX file with hrdeploy metadata, and the
parity of ONNX Runtime against PyTorch on the same input."""
from __future__ import annotations

import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

from . import __version__
from .artifact import reference_meta, reference_path_for_onnx, save_reference, write_onnx_metadata
from .checkpoints import refuse_non_finite
from .errors import ParityError, UserError
from .io import atomic_write_bytes
from .model import ModelSpec, Variant
from .parity import compare, non_finite_count
from .reference import reference_inputs, run_onnx
from .results import ExportResult
from .target import sha256_file


def import_torch() -> Any:
    try:
        import torch
    except ImportError:
        raise UserError("torch is not installed: 'hrdeploy export' needs it",
                        "pip install torch==2.13.0 (the other commands run without torch)") from None
    return torch


def seeded_weights(module: Any, seed: int) -> None:
    """Fill ``module`` with the project's deterministic seeded weights (same rules as the test
    fixtures, keyed by state_dict name), so random-weight exports are reproducible."""
    from .testing.seeded import seeded_state_dict

    sd = module.state_dict()
    manifest = {"keys": {k: list(v.shape) for k, v in sd.items()}}
    module.load_state_dict(seeded_state_dict(manifest, seed), strict=True)


def model_metadata(spec: ModelSpec, variant: Variant, weights: str, batch: int | None) -> dict[str, Any]:
    return {
        "model": spec.name, "variant": variant.name, "task": spec.task,
        "input": {**variant.input.to_dict(), "batch": batch if batch else variant.input.batch},
        "outputs": list(variant.outputs), "preprocess": variant.preprocess,
        "tolerances": {k: t.to_dict() for k, t in variant.tolerances.items()},
        "weights": weights, "hrdeploy_version": __version__,
    }


def export(spec: ModelSpec, variant: Variant, out: Path, *, weights: Path | None, random_weights: bool,
           seed: int = 0, batch: int | None = None, opset: int = 17, strict: bool = True,
           ref_images: Sequence[Path] | None = None, options: dict[str, Any] | None = None,
           log: Callable[[str], None] = print) -> ExportResult:
    from .session import check_model_options

    options = check_model_options(spec, options)  # undeclared options refused before torch loads
    torch = import_torch()
    if weights is None and not random_weights:
        raise UserError("no weights given", "pass --weights CHECKPOINT, or --random-weights to export untrained weights")
    if weights is not None and not Path(weights).is_file():
        raise UserError(f"checkpoint not found: {weights}")
    if isinstance(variant.input.batch, int) and batch not in (None, variant.input.batch):
        raise UserError(f"{spec.name}/{variant.name} only runs at batch {variant.input.batch}")
    fixed_batch = batch or (variant.input.batch if isinstance(variant.input.batch, int) else None)
    module = spec.build(variant, options=options)
    module.eval()
    if weights is not None:
        layout = spec.load_weights(module, Path(weights), variant)
        refuse_non_finite(module.state_dict(), Path(weights).name)
        weights_desc = f"{Path(weights).name}: {layout}"
    else:
        seeded_weights(module, seed)
        weights_desc = f"RANDOM (seeded, seed {seed}): not a trained model"
    log(f"weights: {weights_desc}")

    x = spec.example_input(variant, batch=fixed_batch or 2, seed=seed)
    with torch.inference_mode():
        y = module(torch.from_numpy(x))
    torch_out = [t.detach().numpy() for t in (y if isinstance(y, (tuple, list)) else (y,))]
    for name, values in zip(variant.outputs, torch_out):
        bad = non_finite_count(values)
        if bad:  # not ONNX Runtime's fault: say so before exporting anything
            raise UserError(f"PyTorch itself produces NaN/inf in output {name!r} ({bad} of {values.size} values): "
                            "the weights or the model are broken")

    import onnx

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        tmp_path = Path(tmp) / "export.onnx"
        # the TorchScript exporter: the dynamo one turns HRNet's pooling into a fixed-size
        # AveragePool and takes 10x longer
        with warnings.catch_warnings():
            # the legacy exporter's deprecation and constant-folding notes are noise for users
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(module, (torch.from_numpy(x),), str(tmp_path),
                              input_names=[variant.input.name], output_names=list(variant.outputs),
                              dynamic_axes=spec.dynamic_axes(variant, dynamic_batch=fixed_batch is None) or None,
                              opset_version=opset, do_constant_folding=True, dynamo=False)
        model = onnx.load(str(tmp_path))
        meta = model_metadata(spec, variant, weights_desc, fixed_batch)
        meta["opset"] = opset
        extras = spec.artifact_files(variant, Path(weights) if weights else None, options=options)
        meta["extra_files"] = {name: f"{out.stem}.{name}" for name in extras}
        write_onnx_metadata(model, meta)
        try:
            onnx.checker.check_model(model)
        except Exception as e:
            text = " ".join(str(e).split())
            newer = re.search(r"No Op registered for (\w+) with domain_version of (\d+)", text)
            if newer:  # an operator newer than the requested opset (DEKR's DeformConv needs 19)
                op = newer.group(1)
                first = [d.since_version for d in onnx.defs.get_all_schemas_with_history()
                         if d.name == op and d.domain == ""]
                since = f"--opset {min(first)} or higher" if first else "a higher --opset"
                raise UserError(f"the exported graph uses {op}, which opset {opset} does not have",
                                f"export with {since}") from None
            raise UserError(f"the exported graph fails onnx.checker: {text[:200]}") from None
        onnx.save(model, str(tmp_path))
        ort_out = run_onnx(tmp_path, x)
        report = compare(spec, variant, torch_out, ort_out, "fp32", "pytorch", "onnxruntime")
        if not report.passed and strict:
            raise ParityError("ONNX Runtime does not reproduce PyTorch: " + "; ".join(report.failures()), report)
        os.replace(tmp_path, out)

    # reference inputs and outputs travel with the file: convert and verify compare against them
    ref_x = reference_inputs(spec, variant, ref_images)
    ref_y = run_onnx(out, ref_x)
    # the .ref.npz records the sha256 of this .onnx: opening the pair refuses a swapped or edited one
    save_reference(reference_path_for_onnx(out), ref_x, ref_y, list(variant.outputs),
                   reference_meta(meta, onnx_sha256=sha256_file(out)))
    for name, data in extras.items():
        atomic_write_bytes(out.with_name(meta["extra_files"][name]), data)
    result = ExportResult(Path(out), meta, report, reference_path_for_onnx(out))
    from .plugins import registry

    registry().call("hrdeploy_after_export", onnx_path=Path(out), report=result.to_json(), result=result)
    return result
