"""Stand-in for CANN's ``atc``: checks its arguments against the ATC parameter rules the way
the real tool rejects them, prints ATC's recorded success/failure lines and writes a stand-in
``<output>.om`` (ascend_fakeom format).

Environment: FAKE_ATC_MODE = ok (default) | fail (exit 1 after the failure lines) | nofile
(exit 0, success line, no file); FAKE_ATC_SUFFIX is appended to the .om name (some hosts add
one); FAKE_ATC_CALLS names a JSON-lines file each call is appended to.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import ascend_fakeom as fom

SOC = re.compile(r"^Ascend(310|310P[1-9]|310B[1-4]|910[ABC]?|910B[1-4]|910_93)$")
PRECISION = {"force_fp16", "allow_fp32_to_fp16", "must_keep_origin_dtype", "allow_mix_precision",
             "allow_mix_precision_fp16", "allow_mix_precision_bf16", "force_fp32", "cube_fp16in_fp32out",
             "force_lowerprecision"}
LOG = {"debug", "info", "warning", "error", "null"}
FORMATS = {"NCHW", "NHWC", "ND", "NC1HWC0", "NCDHW", "NDHWC"}


class AtcError(Exception):
    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"{code}: {text}")


def fail(code: str, text: str) -> AtcError:
    return AtcError(code, text)


def parse_args(argv: list[str]) -> dict[str, str]:
    opts: dict[str, str] = {}
    for a in argv:
        if not a.startswith("--") or "=" not in a:
            raise fail("E10001", f"Value [{a}] for parameter is invalid: ATC options are written --name=value.")
        k, v = a[2:].split("=", 1)
        if k in opts:
            raise fail("E10001", f"parameter [--{k}] is given twice.")
        opts[k] = v
    return opts


def check(opts: dict[str, str]) -> dict:
    for req in ("framework", "model", "output", "soc_version"):
        if req not in opts:
            raise fail("E10004", f"parameter [--{req}] is required.")
    if opts["framework"] != "5":
        raise fail("E10001", f"Value [{opts['framework']}] for parameter [--framework] is invalid (ONNX is 5).")
    model_path = Path(opts["model"])
    if not model_path.is_file():
        raise fail("E10001", f"Value [{opts['model']}] for parameter [--model] is invalid: file not found.")
    try:
        inputs = fom.onnx_inputs(model_path.read_bytes())
    except (StopIteration, ValueError, IndexError, UnicodeDecodeError):
        raise fail("E10001", f"[--model] {model_path} is not an ONNX model.") from None
    if not SOC.match(opts["soc_version"]):
        raise fail("E10001", f"Value [{opts['soc_version']}] for parameter [--soc_version] is invalid.")
    if opts.get("precision_mode", "force_fp16") not in PRECISION:
        raise fail("E10001", f"Value [{opts['precision_mode']}] for parameter [--precision_mode] is invalid.")
    if opts.get("log", "null") not in LOG:
        raise fail("E10001", f"Value [{opts['log']}] for parameter [--log] is invalid.")
    fmt = opts.get("input_format", "NCHW")
    if fmt not in FORMATS:
        raise fail("E10001", f"Value [{fmt}] for parameter [--input_format] is invalid.")
    dyn = [k for k in ("dynamic_batch_size", "dynamic_image_size", "dynamic_dims") if k in opts]
    if len(dyn) > 1:
        raise fail("E10035", f"[--{dyn[0]}] and [--{dyn[1]}] cannot be used at the same time.")
    if "input_shape" not in opts:
        raise fail("E10004", "parameter [--input_shape] is required for this model.")
    name, dims = fom.parse_shape(opts["input_shape"])
    if name not in inputs:
        raise fail("E10016", f"input [{name}] given in --input_shape is not an input of the model {sorted(inputs)}.")
    if len(dims) != inputs[name]:
        raise fail("E10017", f"--input_shape [{opts['input_shape']}] has {len(dims)} dims, the input has {inputs[name]}.")
    unknown = [i for i, d in enumerate(dims) if d == -1]
    if any(d < -1 or d == 0 for d in dims):
        raise fail("E10001", f"Value [{opts['input_shape']}] for parameter [--input_shape] is invalid.")
    header: dict = {"input_shape": opts["input_shape"], "soc": opts["soc_version"],
                    "precision_mode": opts.get("precision_mode", "force_fp16"), "input_format": fmt,
                    "dynamic_batch_size": None, "dynamic_dims": None, "aipp": None}
    if "dynamic_batch_size" in opts:
        values = [int(v) for v in opts["dynamic_batch_size"].split(",")]
        if unknown != [0]:
            raise fail("E10018", "with --dynamic_batch_size only the batch dim of --input_shape may be -1.")
        if not 2 <= len(values) <= 100 or len(set(values)) != len(values):
            raise fail("E10035", "--dynamic_batch_size needs 2..100 distinct values.")
        header["dynamic_batch_size"] = values
    elif "dynamic_dims" in opts:
        if fmt != "ND":
            raise fail("E10001", "--dynamic_dims needs --input_format=ND.")
        gears = [[int(v) for v in g.split(",")] for g in opts["dynamic_dims"].split(";")]
        if not 2 <= len(gears) <= 100:
            raise fail("E10035", "--dynamic_dims needs 2..100 gears.")
        if any(len(g) != len(unknown) for g in gears):
            raise fail("E10018", f"each --dynamic_dims gear needs {len(unknown)} values (one per -1).")
        header["dynamic_dims"] = gears
    elif unknown:
        raise fail("E10018", "--input_shape has -1 but no gear option is given.")
    if "insert_op_conf" in opts:
        if "dynamic_dims" in opts:
            raise fail("E10001", "--insert_op_conf cannot be used with --dynamic_dims.")
        conf = Path(opts["insert_op_conf"])
        if not conf.is_file():
            raise fail("E10001", f"AIPP config [{conf}] not found.")
        kv = {}
        for line in conf.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if ":" in line and not line.endswith("{"):
                k, v = line.split(":", 1)
                kv[k.strip()] = v.strip()
        if kv.get("aipp_mode") != "static" or kv.get("input_format") != "RGB888_U8":
            raise fail("E10001", "only static RGB888_U8 AIPP is understood by this stand-in.")
        if (int(kv["src_image_size_h"]), int(kv["src_image_size_w"])) != (dims[2], dims[3]):
            raise fail("E10001", "AIPP src_image_size does not match --input_shape.")
        header["aipp"] = kv
    out = Path(opts["output"])
    if not out.parent.is_dir():
        raise fail("E10001", f"output directory [{out.parent}] does not exist.")
    return header


def main() -> int:
    argv = sys.argv[1:]
    fom.log_call("FAKE_ATC_CALLS", argv)
    print("ATC start working now, please wait for a moment.")
    mode = os.environ.get("FAKE_ATC_MODE", "ok")
    try:
        opts = parse_args(argv)
        header = check(opts)
        if mode == "fail":
            raise fail("E19999", "Inner Error! the stand-in was told to fail.")
    except AtcError as e:
        print(str(e))
        print("ATC run failed, Please check the detail log, Try 'atc --help' for more information")
        return 1
    print("W11001: Op [Relu_1] does not hit the high-priority operator information library, "
          "which might result in compromised performance.")
    if mode != "nofile":
        fom.write_om(Path(opts["output"] + os.environ.get("FAKE_ATC_SUFFIX", "") + ".om"), header,
                     Path(opts["model"]).read_bytes())
    print("ATC run success, welcome to the next use.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
