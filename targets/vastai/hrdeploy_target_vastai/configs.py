"""The files the VastAI toolchain reads, generated from the model's input spec and
preprocessing: the vamc build YAML in both generations, the vdsp_params JSON in both formats,
the old runstream model_info JSON, and the vamp command line.

Sources: VastModelZOO (current ``build_in/build/*.yaml`` + ``build_in/vdsp_params/*.json``;
history 92838c2/e80760b ``vacc_code/build/*.yaml`` + ``vacc_code/vdsp_params/*.json`` +
``model_info_*.json``), seed 003 (``vamc build``, ``vamp -m ... -i 1 -p 1 -b 1``).

Decisions: one build per input shape at batch 1 (the runtime batches: ``vsx.Model(prefix,
batch)``, ``vamp -b``), one build per size gear; no softmax appended unless asked (hrdeploy's
post-processing applies it, and the parity check compares raw outputs); the dataset block only
for int8.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any, Sequence

from hrdeploy.errors import UserError

from .preprocess import Preprocess, fp16_bits, fp16_value

VAMC = "vamc"
VAMP = "vamp"
ACTIVATE_VSX = "source /opt/vastai/vaststreamx/vaststreamx/bin/activate.sh"
ACTIVATE_VASTPIPE = "source /opt/vastai/vastpipe/vastpipe/bin/activate.sh"
#: one line for every "tool not found" message
SETUP_HINT = f"{ACTIVATE_VSX} && {ACTIVATE_VASTPIPE}; pip install the vamc wheel from the VastAI SDK"
GENERATIONS = ("compile", "build")
QUANT_MODES = ("percentile", "max", "kl_divergence")


@dataclass(frozen=True)
class CalibSet:
    """Calibration images copied into the artifact (``path`` relative to it)."""

    path: str
    suffix: str
    count: int


def transform_ops(pre: Preprocess) -> list[dict[str, Any]]:
    """The preprocessing as vamc's dataset ops (used to calibrate int8)."""
    ops: list[dict[str, Any]] = [{"type": "DecodeImage"}, {"type": "Resize", "size": list(pre.resize)}]
    if pre.crop != pre.resize:
        ops.append({"type": "CenterCrop", "crop_size": list(pre.crop)})
    ops.append({"type": "Normalize", "mean": [round(v, 6) for v in pre.mean01],
                "std": [round(v, 6) for v in pre.std01]})
    ops.append({"type": "ToTensor"})
    return ops


def vamc_compile_config(name: str, input_name: str, shape: Sequence[int], onnx: str, dtype: str, pre: Preprocess,
                        calib: CalibSet | None = None, *, softmax: bool = False, calib_mode: str = "percentile",
                        workspace: str = "./deploy_weights/") -> dict[str, Any]:
    """Current generation: ``vamc compile cfg.yaml`` (name/frontend/backend/graph/dataset/workspace)."""
    _check_dtype(dtype, calib)
    cfg: dict[str, Any] = {
        "name": name,
        "frontend": {"shape": {input_name: [int(v) for v in shape]}, "type": "onnx", "checkpoint": onnx,
                     "dtype": "fp32"},
        "backend": {"type": "tvm_vacc", "dtype": dtype, "compile": {"cluster_mode": 0}},
    }
    if dtype == "int8":
        cfg["backend"]["quantize"] = {"calibrate_mode": calib_mode, "quantize_per_channel": True}
    if softmax:
        cfg["graph"] = {"extra_ops": {"type": "softmax"}}
    if dtype == "int8" and calib is not None:
        cfg["dataset"] = {"type": "tvm", "path": calib.path,
                          "sampler": {"suffix": calib.suffix, "get_data_num": calib.count},
                          "process_ops": transform_ops(pre)}
    cfg["workspace"] = {"path": workspace}
    return cfg


def vamc_build_config(name: str, input_name: str, shape: Sequence[int], onnx: str, dtype: str, pre: Preprocess,
                      calib: CalibSet | None = None, *, softmax: bool = False, quant_mode: str = "percentile",
                      work_dir: str = "./deploy_weights") -> dict[str, Any]:
    """Older generation of seed 003: ``vamc build cfg.yaml`` (model/engine/dataset/workspace)."""
    _check_dtype(dtype, calib)
    engine: dict[str, Any] = {"type": "vacc", "common": {"do_quantization": dtype == "int8"}}
    if softmax:
        engine["add_extra_ops_to_graph"] = {"type": "softmax"}
    if dtype == "int8":
        engine["calibration"] = {"quant_mode": quant_mode, "per_channel": True}
    cfg: dict[str, Any] = {
        "model": {"name": name, "inputs": {input_name: [int(v) for v in shape]}, "checkpoint": onnx},
        "engine": engine,
    }
    if dtype == "int8" and calib is not None:
        cfg["dataset"] = {"path": calib.path, "sampler": {"suffix": calib.suffix, "get_data_num": calib.count},
                          "transform_ops": transform_ops(pre)}
    cfg["workspace"] = {"work_dir": work_dir, "enable_ir": False, "save_log": False}
    return cfg


def _check_dtype(dtype: str, calib: CalibSet | None) -> None:
    if dtype not in ("fp16", "int8"):
        raise UserError(f"vamc builds fp16 or int8, not {dtype}")
    if dtype == "int8" and calib is None:
        raise UserError("VastAI int8 needs calibration images", "pass --calib DIR")


def output_prefix(generation: str, name: str, dtype: str, quant_mode: str, shape: Sequence[int],
                  workspace: str = "deploy_weights") -> str:
    """Where vamc writes the "model three-piece" (.so/.json/.params), as the prefix vamp
    (``-m``) and ``vsx.Model`` take."""
    ws = workspace.strip("./") or "."
    if generation == "compile":
        return f"{ws}/{name}/mod"
    c, h, w = (int(v) for v in shape[-3:])
    mode = quant_mode if dtype == "int8" else "none"
    return f"{ws}/{name}-{dtype}-{mode}-{c}_{h}_{w}-vacc/{name}"


def vdsp_params(pre: Preprocess) -> dict[str, Any]:
    """Current vdsp_params (vamp, vaststreamx): one fused resize/colour/crop/normalise/tensorise
    op; Mean/Std fp16-rounded as the device keeps them."""
    (rh, rw), (ch, cw) = pre.resize, pre.crop
    cx, cy = pre.crop_xy
    return {
        "OpType": "FUSION_OP_RGB_RESIZE_CVTCOLOR_CROP_NORM_TENSOR",
        "OpConfig": {
            "IimageFormat": "RGB_PLANAR", "IimageWidth": rw, "IimageHeight": rh,
            "OimageWidth": cw, "OimageHeight": ch, "CropX": cx, "CropY": cy,
            "ResizeWidth": rw, "ResizeHeight": rh, "IimageWidthPitch": rw, "IimageHeightPitch": rh,
            "Mean": [fp16_value(v) for v in pre.mean01], "Std": [fp16_value(v) for v in pre.std01],
            "NormaType": "DIV255_MINUSMEAN_DIVSTD",
            "ColorCvtCode": "RGB2BGR" if pre.color == "bgr" else "NO_CHANGE",
            "ResizeType": "BILINEAR_CV",
        },
    }


def _prop(name: str, dtype: str, value: Any) -> dict[str, Any]:
    return {"Property": name, "DType": dtype, "ParamType": "ELEMENT", "Value": value}


def vdsp_params_sdk1(pre: Preprocess) -> dict[str, Any]:
    """sdk1.0 vdsp_params (old runstream samples): a property list; mean/std as the uint16 bit
    patterns of their fp16 values (0.485 -> 14275, 0.229 -> 13140)."""
    (rh, rw), ch = pre.resize, pre.crop[0]  # sdk1.0 takes one square crop size
    mean, std = pre.mean01, pre.std01
    return {
        "vdsp_op_type": "RGB_RESIZE_CVTCOLOR_CROP_NORMALIZATION_TENSORIZATION_U8",
        "config": [
            _prop("iimage_format", "UINT_32", "RGB_PLANAR"),
            _prop("iimage_width", "INT", rw), _prop("iimage_height", "INT", rh),
            _prop("iimage_width_pitch", "UINT_32", rw), _prop("iimage_height_pitch", "UINT_32", rh),
            _prop("short_edge_threshold", "INT", min(rh, rw)),
            _prop("crop_size", "UINT_32", ch),
            _prop("meanr", "UINT_16", fp16_bits(mean[0])), _prop("meang", "UINT_16", fp16_bits(mean[1])),
            _prop("meanb", "UINT_16", fp16_bits(mean[2])),
            _prop("stdr", "UINT_16", fp16_bits(std[0])), _prop("stdg", "UINT_16", fp16_bits(std[1])),
            _prop("stdb", "UINT_16", fp16_bits(std[2])),
            _prop("norma_type", "INT", "DIV255_MINUSMEAN_DIVSTD"),
            _prop("resize_type", "INT", "BILINEAR_CV"),
            _prop("color_cvt_code", "UINT_16", "COLOR_RGB2BGR" if pre.color == "bgr" else "COLOR_NO_CHANGE"),
            _prop("color_space", "UINT_16", "COLOR_SPACE_BT709"),
        ],
    }


def model_info(name: str, prefix: str, hw_config: str = "") -> dict[str, str]:
    """The old runstream samples' model_info JSON (the three files of one build)."""
    return {"model_name": name, "model_lib_path": prefix + ".so", "model_graph_path": prefix + ".json",
            "model_params_path": prefix + ".params", "hw_config_file": hw_config}


def vamp_argv(prefix: str, vdsp: str, *, batch: int, instances: int = 1, processes: int = 1,
              device: int | str | None = None, shape_chw: Sequence[int] | None = None,
              iterations: int | None = None, percentiles: Sequence[int] | None = (50, 90, 95, 99)) -> list[str]:
    """``vamp -m PREFIX --vdsp_params JSON -i I -p P -b B [-d D] [-s [C,H,W]]`` (seed 003 writes
    ``-i 1 -p 1 -b 1``; the ZOO docs' ``p 1`` without the dash is a typo)."""
    argv = [VAMP, "-m", prefix, "--vdsp_params", vdsp, "-i", str(instances), "-p", str(processes),
            "-b", str(batch)]
    if device is not None:
        argv += ["-d", str(device)]
    if shape_chw is not None:
        argv += ["-s", "[" + ",".join(str(int(v)) for v in shape_chw) + "]"]
    if iterations is not None:
        argv += ["--iterations", str(int(iterations))]
    if percentiles:
        argv += ["--percentiles", "[" + ",".join(str(int(p)) for p in percentiles) + "]"]
    return argv


def vamc_argv(generation: str, config: str) -> list[str]:
    if generation not in GENERATIONS:
        raise UserError(f"unknown vamc generation {generation!r}", "choose compile (current) or build (older SDK)")
    return [VAMC, generation, config]


def cmd(argv: Sequence[str]) -> str:
    return shlex.join(argv)
