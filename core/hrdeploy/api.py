"""The Python API: the six verbs of the command line as functions, with the same checks, the
same files written and the same hooks fired (``docs/python-api.md`` has a runnable example).

Every function raises :class:`hrdeploy.errors.UserError` for what a user can fix and
:class:`hrdeploy.errors.ParityError` for a breach that is not kept; none of them prints unless
given a ``log`` callable (``log=print`` shows the progress lines the CLI shows on stderr)."""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Sequence

from .artifact import Artifact
from .results import BenchResult, EvalResult, ExportResult, VerifyResult
from .session import Session

Log = Callable[[str], None]


def _quiet(_message: str) -> None:
    pass


def _owned(session: Session, given: Any) -> Any:
    """Close the runner afterwards only when this call opened it: a session the caller passed
    in stays open for the caller."""
    return nullcontext() if given is session else session.runner


def _registry() -> Any:
    from .plugins import registry

    return registry()


def export(model: str, output: str | Path, *, variant: str | None = None, weights: str | Path | None = None,
           random_weights: bool = False, seed: int = 0, batch: int | None = None, opset: int = 17,
           strict: bool = True, ref_images: str | Path | None = None, options: dict[str, Any] | None = None,
           force: bool = False, log: Log = _quiet) -> ExportResult:
    """Export ``model`` (a name from ``hrdeploy list``) to the ONNX file ``output`` and check
    ONNX Runtime against PyTorch; the reference inputs and outputs are stored beside it."""
    from .io import list_images
    from .onnx_export import export as _export
    from .outputs import check_export_output

    spec = _registry().model(model)
    var = spec.variant(variant)
    output = Path(output)
    check_export_output(output, weights=Path(weights) if weights else None,
                        ref_images=Path(ref_images) if ref_images else None, options=options, force=force)
    return _export(spec, var, output, weights=Path(weights) if weights else None, random_weights=random_weights,
                   seed=seed, batch=batch, opset=opset, strict=strict,
                   ref_images=list_images(Path(ref_images)) if ref_images else None, options=options, log=log)


def convert(onnx_path: str | Path, output: str | Path, *, target: str = "onnxruntime", precision: str = "fp32",
            batch: Sequence[int] | str | None = None, calib: str | Path | None = None, calib_count: int = 100,
            dry_run: bool = False, force: bool = False, target_options: dict[str, Any] | None = None,
            model_options: dict[str, Any] | None = None, toolchain_verdict: str = "record",
            step_timeout: float | None = None, gears: str | Path | Sequence[Sequence[int]] | None = None,
            gears_data: str | None = None, gears_budget: int = 5, keep_float: Sequence[str] | None = None,
            log: Log = _quiet) -> Artifact:
    """Convert an exported ONNX file for ``target`` into the artifact folder ``output``; its
    ``manifest`` records every command and the parity against the source
    (``artifact.manifest["parity"]["status"]`` is ``"passed"``, ``"failed"`` or ``"not run"``).
    ``gears``: the (H, W) sizes a static-shape target compiles instead of the model's own (a
    gear file as ``hrdeploy gears -o`` writes, the pairs, or ``"auto"`` with ``gears_data``
    ``"coco:/data/coco"``: at most ``gears_budget`` gears chosen from its image sizes); recorded
    as ``manifest["gears"]``. ``keep_float``: source tensor names (as :func:`debug` lists
    them) whose layers stay in float in a quantized build."""
    from .conversion import convert as _convert

    if batch is not None and not isinstance(batch, str):
        batch = ",".join(str(int(b)) for b in batch)
    return _convert(_registry(), Path(onnx_path), target, Path(output), precision=precision.lower(), batch=batch,
                    calib_dir=Path(calib) if calib else None, calib_count=calib_count, dry_run=dry_run,
                    force=force, target_options=target_options, model_options=model_options, log=log,
                    toolchain_verdict=toolchain_verdict, step_timeout=step_timeout, gears=gears,
                    gears_data=gears_data, gears_budget=gears_budget, keep_float=keep_float)


def open(model_file: str | Path, *, device: str | None = None,  # noqa: A001 - the verb users expect
         target_options: dict[str, Any] | None = None) -> Session:
    """Open an exported ``.onnx`` or an artifact folder on its target: a :class:`Session`
    whose ``runner`` runs batches and whose ``pipeline()`` pre/post-processes. Use it as a
    context manager (``with hrdeploy.open(path) as session:``) to release the device."""
    from .session import open_session

    return open_session(_registry(), Path(model_file), device=device, target_options=target_options)


def evaluate(model: str | Path | Session, data: str, output: str | Path, *, limit: int | None = None,
             batch: int = 1, resume: bool = False, restart: bool = False, options: dict[str, Any] | None = None,
             workers: int | None = None, compare: str | Path | None = None, log: Log = _quiet) -> EvalResult:
    """Evaluate on ``data`` (``"imagenet:/data/ImageNet"``, ``"coco:/data/coco"``) with the
    model's own pre/post-processing and metric; writes ``output`` (result.json). With
    ``compare`` (the source ``.onnx``), every evaluated input also runs through it and
    ``result.compare`` holds the parity per input size."""
    from .evaluation import evaluate as _evaluate

    session = model if isinstance(model, Session) else open(model)
    with _owned(session, model):
        reference = open(compare) if compare is not None else None
        try:
            return _evaluate(session, data, Path(output), limit=limit, batch=batch, resume=resume, restart=restart,
                             options=options, workers=workers, log=log, compare=reference)
        finally:
            if reference is not None:
                reference.runner.close()


def bench(model: str | Path | Session, batch_sizes: Sequence[int] = (1, 8), *, seconds: float = 5.0,
          warmup: int = 3, e2e: bool = True, images_dir: str | Path | None = None, workers: int | None = None,
          log: Log = _quiet) -> BenchResult:
    """Throughput per batch size, device-only and end to end (``result.document["results"]``)."""
    from .benchmark import bench as _bench
    from .validate import batch_sizes as _check

    sizes = _check(",".join(str(int(b)) for b in batch_sizes))
    session = model if isinstance(model, Session) else open(model)
    with _owned(session, model):
        return _bench(session, sizes, seconds=seconds, warmup=warmup, e2e=e2e,
                      images_dir=Path(images_dir) if images_dir else None, workers=workers, log=log)


def verify(model_file: str | Path, *, device: str | None = None,
           target_options: dict[str, Any] | None = None) -> VerifyResult:
    """Re-check an artifact on this machine against the reference outputs stored in it."""
    from .verification import verify as _verify

    return _verify(_registry(), Path(model_file), device=device, target_options=target_options)


__all__ = ["bench", "convert", "evaluate", "export", "open", "verify"]
