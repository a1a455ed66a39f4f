"""The seeds' hand-driven Ascend workflow, as ``hrdeploy ascend`` subcommands (registered
through the ``hrdeploy_commands`` hook): per-image float32 ``.bin`` files for driving
ais_bench by hand (``preprocess``), and scoring the outputs ais_bench recorded (``score``) with
the model's own post-processing and metric, printed also in imagenet_acc_eval.py's format."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from hrdeploy import __version__
from hrdeploy.artifact import Artifact
from hrdeploy.errors import UserError
from hrdeploy.io import atomic_write_bytes, atomic_write_json, check_output_file, list_images, read_image
from hrdeploy.model import ModelSpec, PipelineRuntime, Sample, SampleRef, Variant


def write_bins(spec: ModelSpec, variant: Variant, images: Path, output: Path,
               limit: int | None = None) -> tuple[int, dict[str, Any]]:
    """One ``<stem>.bin`` (float32 CHW, the model's own preprocessing) per network input and
    ``prep_bin.info`` (``index path width height``), as the seeds' preprocess scripts write
    them. Returns the number of files and the preprocessing parameters."""
    from hrdeploy.outputs import refuse_overlap

    if output.exists() and not output.is_dir():
        raise UserError(f"{output} is a file, but a folder is needed here (choose another location)")
    refuse_overlap(output, [images], "-o")  # .bin files never land among (or over) the images
    pipeline = spec.pipeline(variant, {}, runtime=PipelineRuntime.for_variant(variant))
    paths = list_images(images)[: limit or None]
    if not paths:
        raise UserError(f"no images in {images}")
    info_lines = []
    for p in paths:
        items = pipeline.prepare(Sample(SampleRef(p.name, p), read_image(p)))
        for k, item in enumerate(items):
            stem = p.name.split(".", 1)[0] + (f"_{k}" if len(items) > 1 else "")
            atomic_write_bytes(output / f"{stem}.bin", item.tensor.astype("float32").tobytes())
            info_lines.append(f"{len(info_lines)} {output / (stem + '.bin')} {item.tensor.shape[-1]} "
                              f"{item.tensor.shape[-2]}")
    atomic_write_bytes(output / "prep_bin.info", ("\n".join(info_lines) + "\n").encode())
    return len(info_lines), pipeline.params


def load_recorded(folder: Path, stem: str) -> np.ndarray | None:
    """An output file as ais_bench writes it: ``<stem>_0.txt`` (space-separated floats),
    ``<stem>_0.npy`` or ``<stem>_0.bin`` (raw float32)."""
    for suffix, reader in ((".npy", lambda p: np.load(p, allow_pickle=False)),
                           (".txt", lambda p: np.loadtxt(p, dtype=np.float32, ndmin=1)),
                           (".bin", lambda p: np.fromfile(p, dtype=np.float32))):
        path = folder / f"{stem}_0{suffix}"
        if path.is_file():
            try:
                return np.asarray(reader(path), np.float32).reshape(-1)
            except ValueError as e:
                raise UserError(f"cannot read {path}: {e}") from None
    return None


def ascend_format(summary: dict[str, Any]) -> dict[str, Any]:
    """The top-k summary in the layout of the Ascend guides' imagenet_acc_eval.py (result.json
    ``"Overall statistical evaluation"``), for side-by-side comparison with their figures."""
    tops = sorted((int(k[3:]), v) for k, v in summary.items() if k.startswith("top") and k[3:].isdigit())
    return {"title": "Overall statistical evaluation", "value": [
        {"key": "Number of images", "value": str(summary["images"])},
        {"key": "Number of classes", "value": str(summary["classes"])},
        *({"key": f"Top{i} accuracy", "value": f"{v:.2f}%"} for i, v in tops)]}


def score_outputs(spec: ModelSpec, variant: Variant, data: str, outputs_dir: Path, out: Path, *,
                  limit: int | None = None, options: dict[str, Any] | None = None,
                  describe: dict[str, Any] | None = None,
                  log: Callable[[str], None] = print) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Score network outputs recorded by ais_bench (``--output`` folders of TXT/NPY/BIN files,
    one per image) with the model's own post-processing and metric: the seeds'
    ``imagenet_acc_eval.py``, for any single-output classification model. Writes ``out``;
    returns the result and the metric's table rows."""
    from hrdeploy.evaluation import check_limit, parse_data, report_skipped
    from hrdeploy.session import check_model_options

    if spec.task != "classification":
        raise UserError("ascend score takes classification outputs only",
                        "for pose models run 'hrdeploy eval' on the artifact")
    if not Path(outputs_dir).is_dir():
        raise UserError(f"outputs folder not found: {outputs_dir}")
    check_limit(limit)
    kind, path = parse_data(data)
    opts = check_model_options(spec, options)
    pipeline = spec.pipeline(variant, opts)
    dataset = spec.dataset(kind, path, opts)
    metric = dataset.metric()
    refs = list(dataset)[:limit]
    report_skipped(dataset.info(), log)
    name = variant.outputs[0]
    scored = missing = 0
    for ref in refs:
        logits = load_recorded(Path(outputs_dir), ref.path.name.split(".", 1)[0])
        if logits is None:
            missing += 1
            continue
        if logits.size == 1001:  # a background-class model, as imagenet_acc_eval.py handles it
            logits = logits[1:]
        metric.update(ref, pipeline.finish(ref, [], [{name: logits.astype(np.float32)}]))
        scored += 1
    if scored == 0:
        raise UserError(f"no output file in {outputs_dir} matches an image of {data}",
                        "expected <image stem>_0.txt / .npy / .bin as ais_bench writes them")
    summary = metric.summary()
    summary["ascend_format"] = ascend_format(summary)
    result = {**(describe or {}), "model": spec.name, "variant": variant.name, "task": spec.task,
              "source": f"recorded outputs in {outputs_dir}",
              "data": {"spec": data, **dataset.info(), "evaluated": scored, "missing_outputs": missing},
              "metric": summary, "preprocess": pipeline.params, "options": opts, "hrdeploy_version": __version__}
    atomic_write_json(out, result)
    return result, metric.rows(summary) + [("missing outputs", str(missing))]


def register(cli: Any) -> None:
    """Add ``hrdeploy ascend preprocess|score`` to the command line (typer)."""
    import typer
    from hrdeploy.plugins import registry

    group = typer.Typer(no_args_is_help=True, help="The seeds' hand-driven Ascend workflow: .bin inputs "
                                                  "for ais_bench, scoring what ais_bench recorded.")
    cli.add_typer(group, name="ascend")

    def _model(model_file: Path) -> tuple[Artifact, ModelSpec, Variant]:
        art = Artifact.load(model_file)
        spec = registry().model(art.model)
        return art, spec, spec.variant(art.variant)

    @group.command("preprocess")
    def preprocess(model_file: Path = typer.Argument(..., help="Exported .onnx or artifact folder (for the model and variant)."),
                   images: Path = typer.Argument(..., help="Folder of images."),
                   output: Path = typer.Option(..., "-o", "--output", help="Folder for the .bin files."),
                   limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N images.")) -> None:
        """Write the seeds' per-image float32 .bin files (for driving ais_bench by hand)."""
        _, spec, var = _model(model_file)
        count, params = write_bins(spec, var, images, output, limit)
        typer.echo(f"wrote {count} .bin files for {spec.name}/{var.name} to {output} "
                   f"(float32 CHW; preprocessing: {json.dumps(params)})")

    @group.command("score")
    def score(model_file: Path = typer.Argument(..., help="The artifact (or .onnx) whose outputs ais_bench recorded."),
              data: str = typer.Option(..., "--data", help="KIND:PATH, e.g. imagenet:/data/ImageNet."),
              outputs: Path = typer.Option(..., "--outputs", help="ais_bench's --output folder (TXT/NPY/BIN per image)."),
              output: Path = typer.Option(Path("result.json"), "-o", "--output", help="Result JSON to write."),
              limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Score only the first N images."),
              labels: Optional[Path] = typer.Option(None, "--labels", help="Label file (if not DATA/val_label.txt).")) -> None:
        """Score recorded ais_bench outputs with the model's own post-processing and metric."""
        check_output_file(output, "-o")
        art, spec, var = _model(model_file)
        result, rows = score_outputs(spec, var, data, outputs, output, limit=limit,
                                     options={"labels": str(labels)} if labels else None,
                                     describe={"target": art.target, "precision": art.precision,
                                               "artifact": str(art.path)},
                                     log=lambda m: typer.echo(m, err=True))
        typer.echo(f"{spec.name}/{var.name}, {result['data']['evaluated']} images scored from {outputs}")
        for key, value in rows:
            typer.echo(f"  {key:<16} {value}")
        typer.echo(f"wrote {output}")
