"""Exported and converted models for the benchmark, cached under benchmarks/.cache/.

Each model gets ``<cache>/<model>-<variant>/`` with the seeded random-weight export
(``model.onnx``, made by ``hrdeploy.onnx_export.export``), its calibration images, and the
onnxruntime fp32 and int8 artifacts (made by ``hrdeploy.conversion.convert``; int8 calibrated
on the generated images through the model's own preprocessing, its parity measured on the
held-out ones). A ``stamp.json`` records what the cache was built with; a different hrdeploy
or onnxruntime version, seed or calibration count rebuilds it.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

HELD_OUT = 8  # calibration-folder images the quantiser does not see: convert's parity inputs


@dataclass
class Built:
    onnx: Path
    fp32: Path
    int8: Path
    build_seconds: float
    cached: bool


def _stamp(model: str, variant: str, seed: int, calib: int, calib_size: tuple[int, int],
           options: dict[str, str], opset: int) -> dict[str, Any]:
    import onnxruntime as ort

    import hrdeploy

    return {"model": model, "variant": variant, "seed": seed, "calib_count": calib, "held_out": HELD_OUT,
            "calib_image_size": list(calib_size), "export_options": options, "opset": opset,
            "hrdeploy": hrdeploy.__version__, "onnxruntime": ort.__version__}


def build(registry: Any, cache: Path, model: str, variant: str, *, seed: int, calib_count: int,
          calib_size: tuple[int, int], rebuild: bool, log: Callable[[str], None],
          options: dict[str, str] | None = None, opset: int = 17) -> Built:
    from hrdeploy.conversion import convert
    from hrdeploy.onnx_export import export
    from hrdeploy.synthetic import write_images

    folder = cache / f"{model}-{variant}"
    stamp = _stamp(model, variant, seed, calib_count, calib_size, dict(options or {}), opset)
    onnx_path, fp32, int8 = folder / "model.onnx", folder / "ort-fp32", folder / "ort-int8"
    done = all((p / "manifest.json").is_file() for p in (fp32, int8)) and onnx_path.is_file()
    stamp_file = folder / "stamp.json"
    if done and not rebuild and stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp:
        return Built(onnx_path, fp32, int8, 0.0, True)

    t0 = time.perf_counter()
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    spec = registry.model(model)
    var = spec.variant(variant)
    quiet = lambda _msg: None  # noqa: E731 - the library's tables are noise in the benchmark log
    opts = "".join(f", --opt {k}={v}" for k, v in (options or {}).items())
    log(f"  export {model}/{variant} (seeded random weights, seed {seed}, opset {opset}{opts})")
    export(spec, var, onnx_path, weights=None, random_weights=True, seed=seed, opset=opset,
           options=dict(options) if options else None, log=quiet)
    calib_dir = folder / "calib"
    write_images(calib_dir, calib_count + HELD_OUT, size=calib_size, seed=100)
    log(f"  convert onnxruntime fp32")
    convert(registry, onnx_path, "onnxruntime", fp32, precision="fp32", force=True, log=quiet)
    log(f"  convert onnxruntime int8 ({calib_count} calibration images, {HELD_OUT} held out)")
    convert(registry, onnx_path, "onnxruntime", int8, precision="int8", calib_dir=calib_dir,
            calib_count=calib_count, force=True, log=quiet)
    stamp_file.write_text(json.dumps(stamp, indent=1))
    return Built(onnx_path, fp32, int8, round(time.perf_counter() - t0, 1), False)


def int8_parity(int8_folder: Path) -> dict[str, Any]:
    """The int8-vs-fp32 figures convert recorded in the int8 artifact's manifest."""
    manifest = json.loads((int8_folder / "manifest.json").read_text())
    parity = manifest.get("parity") or {}
    out: dict[str, Any] = {"status": parity.get("status"), "source": (manifest.get("reference") or {}).get("source")}
    cosines = []
    for o in parity.get("outputs", []) if isinstance(parity.get("outputs"), list) else []:
        if o.get("cosine_min") is not None:
            cosines.append(float(o["cosine_min"]))
    out["min_cosine"] = min(cosines) if cosines else None
    out["outputs"] = parity.get("outputs")
    task = parity.get("task")
    if task:
        out["top1"] = task.get("text") or f"{task.get('name')}: {task.get('value')}"
        out["task"] = task
    out["quantization"] = (manifest.get("conversion") or {}).get("quantization")
    return out
