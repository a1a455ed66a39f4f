"""Stand-in for ``vamc compile cfg.yaml`` / ``vamc build cfg.yaml``: checks the config against
the schema of its generation, the input shape against the ONNX model's input, the int8
calibration data, and writes the stand-in three-piece where the real vamc writes it.

The schemas are the keys VastModelZOO's configs use, no more: ``build_in/build/*.yaml`` for
``compile`` (e.g. cv/classification/hrnet/build_in/build/official_hrnet.yaml; plus the keys of
docs/vamc/vamc_config.yaml) and ``vacc_code/build/*.yaml`` for ``build`` (seed 003's
timm_hrnet.yaml, the keras resnet config in classification/resnet/README.md). A key that is not
in them (a misspelling such as ``calibrate_mod``) is refused, as are values of the wrong type or
outside the documented choices. vamc's own wording for a bad config is not recorded anywhere;
the stand-in prints one ``ERROR vamc <command>: ...`` line and exits 1.

FAKE_VAMC_MODE = ok (default) | fail (exit 1) | nofile (exit 0, nothing written);
FAKE_VASTAI_CALLS names a JSON-lines call log.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml

import vastai_fakelib as lib
from hrdeploy.testing.onnxwire import onnx_inputs

QUANT = ("percentile", "max", "kl_divergence")
ANY = object()  # a value not checked further (paths are checked where they are used)


class ConfigError(Exception):
    pass


def _list_of(kind: type, n: int | None = None):
    def check(v: Any) -> bool:
        return isinstance(v, list) and (n is None or len(v) == n) and all(
            isinstance(x, kind) and not isinstance(x, bool) for x in v)
    return check


def _one_of(*values: Any):
    return lambda v: v in values


_STR = lambda v: isinstance(v, str) and v != ""  # noqa: E731
_INT = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
_BOOL = lambda v: isinstance(v, bool)  # noqa: E731
_NUMS3 = _list_of((int, float), 3)
_SIZE = _list_of(int, 2)

#: the preprocessing ops of the dataset block and their parameters
OPS: dict[str, dict[str, Any]] = {
    "DecodeImage": {}, "ToTensor": {}, "Resize": {"size": _SIZE}, "CenterCrop": {"crop_size": _SIZE},
    "Normalize": {"mean": _NUMS3, "std": _NUMS3},
    "CustomFunc": {"module_path": _STR, "func_name": _STR, "input_shape": _list_of(int, 4)},
}
SAMPLER = {"suffix": _STR, "get_data_num": lambda v: _INT(v) and v > 0}

COMPILE = {
    "name": _STR,
    "frontend": {"shape": ANY, "type": _one_of("onnx"), "checkpoint": _STR, "dtype": _one_of("fp32"),
                 "model_kwargs": ANY},
    "backend": {"type": _one_of("tvm_vacc", "tvm_runmodel"), "dtype": _one_of("fp16", "int8"),
                "merge_params": _BOOL,
                "compile": {"cluster_mode": _one_of(0, 1), "data_type": _INT, "gather_data_vccl_dsp_enable": _BOOL},
                "quantize": {"calibrate_mode": _one_of(*QUANT), "quantize_per_channel": _BOOL}},
    "graph": {"extra_ops": {"type": _one_of("softmax", None)}},
    "dataset": {"type": _one_of("tvm"), "path": _STR, "sampler": SAMPLER, "process_ops": "ops"},
    "workspace": {"path": _STR, "workers": _INT},
}
COMPILE_REQUIRED = ("name", "frontend", "frontend.shape", "frontend.type", "frontend.checkpoint", "frontend.dtype",
                    "backend", "backend.type", "backend.dtype", "workspace", "workspace.path")
BUILD = {
    "model": {"name": _STR, "inputs": ANY, "checkpoint": _STR},
    "engine": {"type": _one_of("vacc"), "common": {"do_quantization": _BOOL},
               "add_extra_ops_to_graph": {"type": _one_of("softmax", None)},
               "calibration": {"quant_mode": _one_of(*QUANT), "per_channel": _BOOL}},
    "dataset": {"path": _STR, "sampler": SAMPLER, "transform_ops": "ops"},
    "workspace": {"work_dir": _STR, "enable_ir": _BOOL, "save_log": _BOOL},
}
BUILD_REQUIRED = ("model", "model.name", "model.inputs", "model.checkpoint", "engine", "engine.type",
                  "engine.common", "engine.common.do_quantization", "workspace", "workspace.work_dir")


def check_schema(cfg: Any, schema: dict[str, Any], where: str = "") -> None:
    """Every key known, every value of its kind; nested blocks recursively."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"{where or 'the config'} must be a mapping, got {type(cfg).__name__}")
    for key, value in cfg.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in schema:
            raise ConfigError(f"unknown key '{path}' (known here: {', '.join(schema)})")
        rule = schema[key]
        if isinstance(rule, dict):
            check_schema(value, rule, path)
        elif rule == "ops":
            check_ops(value, path)
        elif rule is not ANY and not rule(value):
            raise ConfigError(f"invalid value {value!r} for '{path}'")


def check_ops(ops: Any, where: str) -> None:
    if not isinstance(ops, list) or not ops:
        raise ConfigError(f"{where} must be a non-empty list of ops")
    for i, op in enumerate(ops):
        if not isinstance(op, dict) or op.get("type") not in OPS:
            raise ConfigError(f"unknown op {op.get('type') if isinstance(op, dict) else op!r} in {where}[{i}] "
                              f"(known: {', '.join(OPS)})")
        params = {k: v for k, v in op.items() if k != "type"}
        check_schema(params, OPS[op["type"]], f"{where}[{i}]")
        missing = set(OPS[op["type"]]) - set(params)
        if missing:
            raise ConfigError(f"{where}[{i}] ({op['type']}) needs {', '.join(sorted(missing))}")


def need(cfg: dict, paths: tuple[str, ...]) -> None:
    for path in paths:
        node: Any = cfg
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"missing '{path}'")
            node = node[part]


def shape_of(shape_map: Any, onnx: Path, where: str) -> tuple[str, list[int]]:
    """The one input's [1, C, H, W], checked against the ONNX input: name, rank, fixed dims."""
    if not isinstance(shape_map, dict) or len(shape_map) != 1:
        raise ConfigError(f"{where} must name exactly one input")
    (name, shape), = shape_map.items()
    if not _list_of(int)(shape) or len(shape) != 4 or shape[0] != 1 or min(shape) < 1:
        raise ConfigError(f"{where}.{name} {shape} must be [1, C, H, W] (vamc builds batch 1; vamp -b batches)")
    if not onnx.is_file():
        raise ConfigError(f"checkpoint {onnx} not found")
    try:
        inputs = onnx_inputs(onnx)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if name not in inputs:
        raise ConfigError(f"input '{name}' of {where} is not an input of {onnx} (inputs: {', '.join(inputs)})")
    model = inputs[name]
    if len(model) != len(shape):
        raise ConfigError(f"{where}.{name} has {len(shape)} dims, the model input has {len(model)}")
    for i, (d, m) in enumerate(zip(shape, model)):
        if m is not None and d != m:
            raise ConfigError(f"{where}.{name} dim {i} is {d}, the model fixes it to {m}")
    return name, list(shape)


def check_dataset(ds: Any, ops_key: str) -> int:
    if not isinstance(ds, dict):
        raise ConfigError("int8 needs a dataset block with calibration images")
    need(ds, ("path", "sampler", "sampler.suffix", "sampler.get_data_num", ops_key))
    path, sampler = Path(ds["path"]), ds["sampler"]
    if not path.is_dir():
        raise ConfigError(f"dataset path {path} not found")
    found = [p for p in path.iterdir() if p.suffix.lstrip(".") == sampler["suffix"]]
    if not found:
        raise ConfigError(f"no calibration data: no *.{sampler['suffix']} files in {path}")
    return min(sampler["get_data_num"], len(found))


def compile_current(cfg: Any) -> tuple[Path, dict]:
    check_schema(cfg, COMPILE)
    need(cfg, COMPILE_REQUIRED)
    fe, be = cfg["frontend"], cfg["backend"]
    onnx = Path(fe["checkpoint"])
    input_name, shape = shape_of(fe["shape"], onnx, "frontend.shape")
    calib = 0
    if be["dtype"] == "int8":
        need(cfg, ("backend.quantize", "backend.quantize.calibrate_mode"))
        calib = check_dataset(cfg.get("dataset"), "process_ops")
    softmax = ((cfg.get("graph") or {}).get("extra_ops") or {}).get("type") == "softmax"
    prefix = Path(cfg["workspace"]["path"]) / cfg["name"] / "mod"
    return prefix, {"input_name": input_name, "shape": shape, "dtype": be["dtype"], "softmax": softmax,
                    "calibration_images": calib, "onnx": str(onnx)}


def build_old(cfg: Any) -> tuple[Path, dict]:
    check_schema(cfg, BUILD)
    need(cfg, BUILD_REQUIRED)
    model, engine = cfg["model"], cfg["engine"]
    onnx = Path(model["checkpoint"])
    input_name, shape = shape_of(model["inputs"], onnx, "model.inputs")
    calib, mode = 0, "none"
    if engine["common"]["do_quantization"]:
        need(cfg, ("engine.calibration", "engine.calibration.quant_mode"))
        mode = engine["calibration"]["quant_mode"]
        calib = check_dataset(cfg.get("dataset"), "transform_ops")
    dtype = "int8" if engine["common"]["do_quantization"] else "fp16"
    softmax = (engine.get("add_extra_ops_to_graph") or {}).get("type") == "softmax"
    c, h, w = shape[1:]
    name = model["name"]
    prefix = Path(cfg["workspace"]["work_dir"]) / f"{name}-{dtype}-{mode}-{c}_{h}_{w}-vacc" / name
    return prefix, {"input_name": input_name, "shape": shape, "dtype": dtype, "softmax": softmax,
                    "calibration_images": calib, "onnx": str(onnx)}


def main() -> int:
    argv = sys.argv[1:]
    lib.log_call(["vamc", *argv])
    if len(argv) != 2 or argv[0] not in ("compile", "build") or not Path(argv[1]).is_file():
        print("usage: vamc {compile,build} CONFIG.yaml")
        return 2
    mode = os.environ.get("FAKE_VAMC_MODE", "ok")
    try:
        try:
            cfg = yaml.safe_load(Path(argv[1]).read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"{argv[1]} is not YAML: {e}") from None
        prefix, header = (compile_current if argv[0] == "compile" else build_old)(cfg)
        if mode == "fail":
            raise ConfigError("TVMError: the stand-in was told to fail")
    except ConfigError as e:
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
