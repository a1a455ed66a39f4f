"""Stand-in for ``vamc compile cfg.yaml`` / ``vamc build cfg.yaml``: checks the config
against the schema of its generation (VastModelZOO's build_in/build/*.yaml for compile,
vacc_code/build/*.yaml for build), checks int8 calibration data, and writes the stand-in
three-piece where the real vamc writes it.

FAKE_VAMC_MODE = ok (default) | fail (exit 1) | nofile (exit 0, nothing written);
FAKE_VASTAI_CALLS names a JSON-lines call log.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

import vastai_fakelib as lib

OPS = {"DecodeImage", "Resize", "CenterCrop", "Normalize", "ToTensor"}
QUANT = {"percentile", "max", "kl_divergence"}


class ConfigError(Exception):
    pass


def need(d: dict, key: str, where: str):
    if not isinstance(d, dict) or key not in d:
        raise ConfigError(f"missing '{key}' in {where}")
    return d[key]


def check_ops(ops, where: str) -> None:
    if not isinstance(ops, list) or not ops:
        raise ConfigError(f"{where} must be a list of ops")
    for op in ops:
        if op.get("type") not in OPS:
            raise ConfigError(f"unknown op {op.get('type')!r} in {where}")
        if op["type"] == "Normalize" and (len(op["mean"]) != 3 or len(op["std"]) != 3):
            raise ConfigError("Normalize needs 3 means and 3 stds")
        if op["type"] == "Resize" and len(op["size"]) != 2:
            raise ConfigError("Resize size must be [h, w]")


def check_dataset(ds: dict, ops_key: str) -> int:
    path = Path(need(ds, "path", "dataset"))
    sampler = need(ds, "sampler", "dataset")
    suffix, num = need(sampler, "suffix", "dataset.sampler"), need(sampler, "get_data_num", "dataset.sampler")
    if not path.is_dir():
        raise ConfigError(f"dataset path {path} not found")
    found = [p for p in path.iterdir() if p.suffix.lstrip(".") == suffix]
    if not found or not isinstance(num, int) or num < 1:
        raise ConfigError(f"no calibration data: {len(found)} *.{suffix} files in {path}, get_data_num {num}")
    check_ops(need(ds, ops_key, "dataset"), f"dataset.{ops_key}")
    return min(num, len(found))


def shape_of(shape_map: dict, onnx: Path) -> tuple[str, list[int]]:
    if not isinstance(shape_map, dict) or len(shape_map) != 1:
        raise ConfigError("exactly one input shape is expected")
    (name, shape), = shape_map.items()
    if len(shape) != 4 or shape[0] != 1:
        raise ConfigError(f"input shape {shape} must be [1, C, H, W]")
    data = onnx.read_bytes()
    if name.encode() not in data:
        raise ConfigError(f"input {name!r} is not in {onnx}")
    return name, [int(v) for v in shape]


def compile_current(cfg: dict) -> tuple[Path, dict]:
    name = need(cfg, "name", "config")
    fe, be, ws = need(cfg, "frontend", "config"), need(cfg, "backend", "config"), need(cfg, "workspace", "config")
    if need(fe, "type", "frontend") != "onnx" or fe.get("dtype") != "fp32":
        raise ConfigError("frontend must be type onnx, dtype fp32")
    onnx = Path(need(fe, "checkpoint", "frontend"))
    if not onnx.is_file():
        raise ConfigError(f"checkpoint {onnx} not found")
    input_name, shape = shape_of(need(fe, "shape", "frontend"), onnx)
    if need(be, "type", "backend") not in ("tvm_vacc", "tvm_runmodel"):
        raise ConfigError("backend.type must be tvm_vacc or tvm_runmodel")
    dtype = need(be, "dtype", "backend")
    if dtype not in ("fp16", "int8"):
        raise ConfigError(f"backend.dtype {dtype}")
    calib = 0
    if dtype == "int8":
        if need(need(be, "quantize", "backend"), "calibrate_mode", "backend.quantize") not in QUANT:
            raise ConfigError("unknown calibrate_mode")
        calib = check_dataset(need(cfg, "dataset", "config"), "process_ops")
    softmax = (cfg.get("graph") or {}).get("extra_ops", {}).get("type") == "softmax"
    prefix = Path(need(ws, "path", "workspace")) / name / "mod"
    return prefix, {"input_name": input_name, "shape": shape, "dtype": dtype, "softmax": softmax,
                    "calibration_images": calib, "onnx": str(onnx)}


def build_old(cfg: dict) -> tuple[Path, dict]:
    model, engine, ws = need(cfg, "model", "config"), need(cfg, "engine", "config"), need(cfg, "workspace", "config")
    name = need(model, "name", "model")
    onnx = Path(need(model, "checkpoint", "model"))
    if not onnx.is_file():
        raise ConfigError(f"checkpoint {onnx} not found")
    input_name, shape = shape_of(need(model, "inputs", "model"), onnx)
    if need(engine, "type", "engine") != "vacc":
        raise ConfigError("engine.type must be vacc")
    quant = need(need(engine, "common", "engine"), "do_quantization", "engine.common")
    calib, mode = 0, "none"
    if quant is True:
        mode = need(need(engine, "calibration", "engine"), "quant_mode", "engine.calibration")
        if mode not in QUANT:
            raise ConfigError("unknown quant_mode")
        calib = check_dataset(need(cfg, "dataset", "config"), "transform_ops")
    elif quant is not False:
        raise ConfigError("do_quantization must be true or false")
    dtype = "int8" if quant else "fp16"
    softmax = (engine.get("add_extra_ops_to_graph") or {}).get("type") == "softmax"
    c, h, w = shape[1:]
    prefix = Path(need(ws, "work_dir", "workspace")) / f"{name}-{dtype}-{mode}-{c}_{h}_{w}-vacc" / name
    return prefix, {"input_name": input_name, "shape": shape, "dtype": dtype, "softmax": softmax,
                    "calibration_images": calib, "onnx": str(onnx)}


def main() -> int:
    argv = sys.argv[1:]
    lib.log_call(["vamc", *argv])
    if len(argv) != 2 or argv[0] not in ("compile", "build") or not Path(argv[1]).is_file():
        print("usage: vamc {compile,build} CONFIG.yaml")
        return 2
    cfg = yaml.safe_load(Path(argv[1]).read_text())
    mode = os.environ.get("FAKE_VAMC_MODE", "ok")
    try:
        prefix, header = (compile_current if argv[0] == "compile" else build_old)(cfg)
        if mode == "fail":
            raise ConfigError("TVMError: the stand-in was told to fail")
    except (ConfigError, KeyError, TypeError, AttributeError) as e:
        print(f"ERROR vamc {argv[0]}: {e}")
        return 1
    print(f"[vamc] {argv[0]} {header['dtype']} input {header['input_name']} {header['shape']}")
    if header["calibration_images"]:
        print(f"[vamc] calibrating with {header['calibration_images']} images")
    if mode != "nofile":
        lib.write_model(prefix, header, Path(header["onnx"]).read_bytes())
        print(f"[vamc] saved {prefix}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
