"""One OpenVINO conversion: ONNX -> IR (``model.xml`` + ``model.bin``) at a precision, run in
this process; or, on a dry run, the self-contained plan folder (``source.onnx``, the
calibration tensors, ``plan.json``) that ``convert --from-plan`` builds on another machine."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hrdeploy.errors import UserError
from hrdeploy.kit.plan import SOURCE_ONNX, place_source, plan_header, planned_note, write_plan
from hrdeploy.target import ConvertRequest, ConvertResult

from .deformconv import extensions
from .settings import execution_record

PLAN_FORMAT = "hrdeploy-openvino-plan/1"
#: what a machine needs to build a plan, in notes and hints
TOOLKIT = "OpenVINO ('pip install hrdeploy-target-openvino')"
MODEL_XML = "model.xml"
MODEL_BIN = "model.bin"
#: calibration tensors of a planned int8 conversion (made here by the model's preprocessing:
#: the machine that builds the plan needs no images and no model plugin pipeline)
CALIB_FILE = "calibration.npz"


def versions() -> dict[str, Any]:
    import openvino as ov

    from .probe import short_version

    out: dict[str, Any] = {"name": "openvino", "version": short_version(ov.__version__), "build": ov.__version__}
    try:
        import nncf

        out["nncf"] = nncf.__version__
    except ImportError:  # only int8 needs it; the version is informative
        out["nncf"] = None
    return out


def calibration_tensors(request: ConvertRequest) -> list[np.ndarray]:
    """The calibration tensors (CHW float32) of an int8 request, refused with one line without
    ``--calib``. Tensors of different sizes are fine (the IR takes any size NNCF feeds it)."""
    if request.calibration is None:
        raise UserError("int8 needs calibration images",
                        "pass --calib DIR (images run through the model's own preprocessing)")
    tensors = [np.ascontiguousarray(t, dtype=np.float32) for t in request.calibration(request.calib_count)]
    if not tensors:
        raise UserError("no calibration images were found", "check --calib DIR and --calib-count")
    return tensors


def _command(request: ConvertRequest, source: Path) -> list[str]:
    return ["hrdeploy", "convert", str(source), "--target", "openvino", "--precision", request.precision,
            "-o", str(request.out_dir)]


def _dynamic_batch(model: Any, request: ConvertRequest) -> str:
    """Make the batch axis dynamic when the export fixed it and the model allows any batch
    (hrdeploy's exports already have a dynamic batch; this covers third-party files)."""
    import openvino as ov

    shape = model.inputs[0].get_partial_shape()
    if shape.rank.is_dynamic or shape[0].is_dynamic:
        return "dynamic (as exported)"
    if isinstance(request.input.batch, int):
        return f"static {shape[0].get_length()} (the variant's fixed batch)"
    dims = [ov.Dimension(-1)] + [shape[i] for i in range(1, shape.rank.get_length())]
    try:
        model.reshape({model.inputs[0]: ov.PartialShape(dims)})
    except Exception as e:  # a graph with the batch baked into a Reshape constant
        return f"static {shape[0].get_length()} (OpenVINO could not make it dynamic: {' '.join(str(e).split())[:120]})"
    return "dynamic (made dynamic here)"


def build(request: ConvertRequest, source: Path, tensors: Sequence[np.ndarray] | None) -> ConvertResult:
    """Convert ``source`` into ``request.out_dir`` at ``request.precision``; ``tensors``: the
    int8 calibration set. Runs in this process (OpenVINO and NNCF are Python libraries)."""
    import openvino as ov

    tc = versions()
    entry = request.record(_command(request, source),
                           note=f"in-process: openvino {tc['version']} convert_model + save_model"
                                + (f", nncf {tc['nncf']} quantize" if request.precision == "int8" else ""))
    t0 = time.perf_counter()
    try:
        # DEKR's DeformConv form needs the extension; other graphs do not notice it
        model = ov.convert_model(str(source), extension=extensions())
    except Exception as e:  # the frontend's own error types: one line with what it said
        raise UserError(f"OpenVINO cannot convert {source.name}: {' '.join(str(e).split())[:240]}") from None
    if len(model.inputs) != 1:
        raise UserError(f"{source} has {len(model.inputs)} inputs; hrdeploy models take one image tensor")
    batch = _dynamic_batch(model, request)
    extra: dict[str, Any] = {"execution": execution_record(request.precision), "batch": batch,
                             "input_name": model.inputs[0].get_any_name(),
                             "onnx_outputs": [o.get_any_name() for o in model.outputs]}
    if request.precision == "int8":
        from .quantize import quantize_int8

        request.log(f"nncf: calibrating on {len(tensors or [])} tensor(s)")
        model, extra["quantization"] = quantize_int8(model, list(tensors or []), request.keep_float)
    out = request.out_dir
    ov.save_model(model, str(out / MODEL_XML), compress_to_fp16=request.precision == "fp16")
    entry["seconds"] = round(time.perf_counter() - t0, 3)
    entry["returncode"] = 0
    extra["ir"] = {"xml_bytes": (out / MODEL_XML).stat().st_size, "bin_bytes": (out / MODEL_BIN).stat().st_size}
    extra["summary"] = _summary(request.precision, extra)
    sizes = None
    shape = model.inputs[0].get_partial_shape()
    if shape.rank.is_static and shape.rank.get_length() == 4 and shape[2].is_static and shape[3].is_static:
        sizes = [(shape[2].get_length(), shape[3].get_length())]
    batches = None if shape.rank.is_dynamic or shape[0].is_dynamic else [shape[0].get_length()]
    return ConvertResult(files={"model": MODEL_XML, "weights": MODEL_BIN}, toolchain=tc, batch_sizes=batches,
                         sizes=sizes, extra=extra)  # type: ignore[arg-type]


def _summary(precision: str, extra: dict[str, Any]) -> str:
    hint = extra["execution"]["inference_precision_hint"]
    if precision == "int8":
        kept = (extra.get("quantization") or {}).get("kept_float")
        return "OpenVINO IR quantized to int8 by NNCF" + (f", {len(kept['tensors'])} layer(s) kept float" if kept else "") \
            + f"; float parts in {hint}"
    weights = {"fp16": "fp16-compressed weights", "bf16": "fp32 weights", "fp32": "fp32 weights"}[precision]
    return f"OpenVINO IR, {weights}, executed in {hint}" + (" (f32 where the device has no f16)" if precision == "fp16" else "")


# -- plans (--dry-run / --from-plan) ------------------------------------------------------------
def write_dry_run_plan(request: ConvertRequest, options: dict[str, Any], target: str) -> ConvertResult:
    """The plan folder of a dry run: the build step is recorded, nothing runs. int8 calibration
    tensors are made here, where the images and the model's preprocessing are."""
    place_source(request.onnx_path, request.out_dir)  # the plan carries its own copy of the source
    calib = 0
    if request.precision == "int8":
        tensors = calibration_tensors(request)
        np.savez(request.out_dir / CALIB_FILE, **{f"{i:05d}": t for i, t in enumerate(tensors)})
        calib = len(tensors)
    doc = {**plan_header(PLAN_FORMAT, target, request, options), "calibration_tensors": calib,
           "calibration_file": CALIB_FILE if calib else None, "keep_float": list(request.keep_float),
           "execution": execution_record(request.precision)}
    write_plan(request.out_dir, doc)
    request.record(["hrdeploy", "convert", "--from-plan", str(request.out_dir)], note=planned_note(TOOLKIT))
    files = {"source_onnx": SOURCE_ONNX, "plan": "plan.json"}
    if calib:
        files["calibration"] = CALIB_FILE
    return ConvertResult(files=files, toolchain={"name": "openvino", "version": None,
                                                 "origin": "planned (--dry-run): not run here"},
                         extra={"planned": True, "execution": doc["execution"], "calibration_tensors": calib})


def plan_calibration(folder: Path, doc: dict[str, Any]) -> list[np.ndarray] | None:
    if not doc.get("calibration_file"):
        return None
    path = folder / str(doc["calibration_file"])
    if not path.is_file():
        raise UserError(f"{path} is missing", "copy the whole plan folder")
    with np.load(path) as z:
        return [z[k] for k in sorted(z.files)]
