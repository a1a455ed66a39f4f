"""Stand-in for CANN's ``atc``: parses its command line the way the real one does, checks the
options the way ATC checks them, prints ATC's lines and writes a stand-in ``<output>.om``
(ascend_fakeom format).

Where the behaviour comes from (all public, read for this file):

* Command-line parsing: ATC parses with gflags (``gflags::ParseCommandLineNonHelpFlags(&argc,
  &argv, true)`` in ``ge/offline/main.cc`` of mindspore-ai/graphengine, the CANN 5-7 sources).
  gflags accepts ``--name=value``, ``--name value``, ``-name``, treats ``-`` and ``_`` in a name
  alike, keeps the last of repeated flags, ignores non-flag words, and on an unknown flag or a
  bad int/bool value writes ``ERROR: unknown command line flag 'x'`` /
  ``ERROR: illegal value 'v' specified for int32 flag 'x'`` to stderr and exits 1
  (gflags.cc, ``CommandLineFlagParser::ParseNewCommandLineFlags`` / ``ReportErrors``). ATC has
  printed ``ATC start working now, please wait for a moment.`` before that.
* The flag set: the ``DEFINE_*`` lines of ``ge/offline/main.cc`` (CANN 7) plus those the CANN 8
  ``atc_flags.cc`` adds (``precision_mode_v2``, ``allow_hf32``, ``jit_compile``, ...).
* The order of the checks and the codes: ``main`` -> ``init`` (``--log``: ``E10010`` printed
  directly, return -1, i.e. exit 255) -> ``GenerateOmModel`` -> ``CheckInputFormat``
  (``kONNXFormatSupport = "only support NCHW, ND, NCDHW in ONNX model"``) -> ``CheckFlags``.
  Failures print ``ATC run failed, Please check the detail log, Try 'atc --help' for more
  information`` and then the error lines. Message texts: GE's ``error_code.json`` (E10001..E10049)
  in the bracketed form CANN 7 prints, as recorded in user reports, e.g.
  ``E10007: [--framework] is required. The value must be [0(Caffe) or 1(MindSpore) or
  3(TensorFlow) or 5(Onnx)].`` and ``E10001: Value [-1] for parameter [image] is invalid.
  Reason: maybe you should set input_shape to specify its shape`` (an ONNX input left dynamic).
  The exit code after a failed check is not in any recorded output; the stand-in exits 1 (the
  target keys on non-zero). Where neither a recording nor the sources give the text (an unknown
  --soc_version, a missing file, the reasons of the stricter checks below), the line is E10001's
  template with a reason of the stand-in's own, marked so where it is raised.
* Option values and rules: the CANN ATC parameter pages (hiascend ``atlasatcparam``): ONNX input
  formats NCHW/ND/NCDHW, ``--dynamic_dims`` needs ND and one value per ``-1``, 2..100 gears, the
  three gear options mutually exclusive, ``--insert_op_conf`` not with ``--dynamic_dims``.

Deliberately stricter than ATC where ATC would only fail later or build something hrdeploy
never asks for (each says so where it is raised): a static ONNX dim must be given its own value,
``-1`` is allowed only on a dim the ONNX leaves dynamic, and ``-1`` needs a gear option (CANN
>= 6.3 would build a dynamic-shape .om on non-310 SoCs; the stand-in runtime cannot run one).

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
from hrdeploy.testing.onnxwire import onnx_inputs
from hrdeploy_target_ascend.commands import parse_aipp_config

START = "ATC start working now, please wait for a moment."
FAILED = "ATC run failed, Please check the detail log, Try 'atc --help' for more information"
SUCCESS = "ATC run success, welcome to the next use."

# gflags flag types of every ATC flag (ge/offline/main.cc CANN 7, atc_flags.cc CANN 8); the
# rest are strings. gflags' own flags (help, flagfile, ...) are registered in every binary.
INT32 = {"framework", "mode", "encrypt_mode", "disable_reuse_memory", "op_debug_level", "virtual_type", "sparsity"}
BOOL = {"h", "help", "helpfull", "helpshort", "helppackage", "helpxml", "version", "raw_ge_options_ignore_unsupported"}
STRING = {
    "model", "output", "weight", "input_shape", "input_hint_shape", "input_shape_range", "cal_conf",
    "insert_op_conf", "op_name_map", "target", "om", "json", "encrypt_key", "certificate", "hardware_key",
    "private_key", "out_nodes", "op_precision_mode", "allow_hf32", "precision_mode", "precision_mode_v2",
    "modify_mixlist", "keep_dtype", "input_format", "check_report", "input_fp16_nodes",
    "is_output_adjust_hw_layout", "is_input_adjust_hw_layout", "output_type", "op_select_implmode",
    "optypelist_for_implmode", "singleop", "auto_tune_mode", "jit_compile", "optimization_switch",
    "static_model_ops_lower_limit", "raw_ge_options", "soc_version", "core_type", "aicore_num",
    "buffer_optimize", "fusion_switch_file", "compression_optimize_conf", "customize_dtypes",
    "op_debug_config", "save_original_model", "dynamic_batch_size", "dynamic_image_size", "dynamic_dims",
    "enable_small_channel", "enable_compress_weight", "enable_attr_compression", "compress_weight_conf",
    "enable_single_stream", "ac_parallel_enable", "tiling_schedule_optimize", "log", "dump_mode",
    "enable_scope_fusion_passes", "debug_dir", "status_check", "op_compiler_cache_dir",
    "op_compiler_cache_mode", "mdl_bank_path", "op_bank_path", "display_model_info", "device_id",
    "shape_generalized_build_mode", "atomic_clean_policy", "external_weight", "deterministic",
    "deterministic_level", "host_env_os", "host_env_cpu", "cluster_config", "hccl_sub_comm_config",
    "quant_dumpable", "is_weight_clip", "oo_level", "build_config",
    "flagfile", "fromenv", "tryfromenv", "undefok",
}
FLAG_TYPES = {**{k: "string" for k in STRING}, **{k: "int32" for k in INT32}, **{k: "bool" for k in BOOL}}
_TRUE, _FALSE = {"true", "t", "yes", "y", "1"}, {"false", "f", "no", "n", "0"}

#: --soc_version values ATC has a platform config for: torch_npu's socVersionMap
#: (torch_npu/csrc/core/npu/NpuVariables.cpp, the same names), Ascend310 (ATC's page:
#: "Ascend310", "Ascend310P*", "Ascend910*") and the Atlas A3 names ("Chip Name_NPU Name")
SOCS = {"Ascend310", "Ascend310P1", "Ascend310P2", "Ascend310P3", "Ascend310P4", "Ascend310B1", "Ascend310B2",
        "Ascend310B3", "Ascend310B4", "Ascend910PremiumA", "Ascend910ProA", "Ascend910A", "Ascend910ProB",
        "Ascend910B", "Ascend910B1", "Ascend910B2", "Ascend910B2C", "Ascend910B3", "Ascend910B4",
        "Ascend910_9391", "Ascend910_9392", "Ascend910_9381", "Ascend910_9382", "Ascend910_9372", "Ascend910_9362"}
PRECISION = ("force_fp16", "force_fp32", "cube_fp16in_fp32out", "allow_mix_precision", "allow_fp32_to_fp16",
             "must_keep_origin_dtype", "allow_mix_precision_fp16", "allow_mix_precision_bf16", "allow_fp32_to_bf16",
             "force_lowerprecision")
PRECISION_V2 = ("fp16", "origin", "cube_fp16in_fp32out", "mixed_float16", "mixed_bfloat16", "cube_hif8", "mixed_hif8")
LOG = ("debug", "info", "warning", "error", "null")
ONNX_FORMATS = ("NCHW", "ND", "NCDHW")
IMPLMODES = ("high_precision", "high_performance", "high_precision_for_all", "high_performance_for_all")
OUTPUT_TYPES = ("FP32", "FP16", "INT8", "INT16", "UINT16", "UINT8", "INT32", "INT64", "UINT32", "UINT64", "DOUBLE")
BUFFER_OPTIMIZE = ("l2_optimize", "l1_optimize", "off_optimize")
MAX_GEARS = 100
SHAPE_SAMPLE = '"input_name1:n1,c1,h1,w1;input_name2:n2,c2,h2,w2"'


class AtcError(Exception):
    """One ATC error line (``Exxxxx: text``)."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"{code}: {text}")


def invalid(value: str, parameter: str, reason: str) -> AtcError:
    """E10001, the generic "invalid value" of GE's error_code.json."""
    return AtcError("E10001", f"Value [{value}] for parameter [{parameter}] is invalid. Reason: {reason}")


# ----------------------------------------------------------------------------------- gflags
def parse_flags(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """gflags' ParseNewCommandLineFlags: the flags set (last one wins) and the error lines."""
    opts: dict[str, str] = {}
    errors: dict[str, str] = {}
    i = 0
    while i < len(argv):
        raw = argv[i]
        i += 1
        if not raw.startswith("-") or raw == "-":
            continue  # a program argument: gflags moves it to the end and atc never reads it
        arg = raw[2:] if raw.startswith("--") else raw[1:]
        if arg == "":
            break  # "--" ends the flags
        key, eq, value = arg.partition("=")
        name = key if key in FLAG_TYPES else key.replace("-", "_")
        kind = FLAG_TYPES.get(name)
        if kind is None and not eq and key.startswith("no") and FLAG_TYPES.get(key[2:]) == "bool":
            name, kind, value, eq = key[2:], "bool", "false", "="
        if kind is None:
            errors[key] = f"ERROR: unknown command line flag '{key}'"
            continue
        if not eq:
            if kind == "bool":
                value = "true"
            elif i >= len(argv):
                errors[key] = f"ERROR: flag '{raw}' is missing its argument"
                break
            else:
                value = argv[i]
                i += 1
        if kind == "int32" and not _is_int(value):
            errors[name] = f"ERROR: illegal value '{value}' specified for int32 flag '{name}'"
            continue
        if kind == "bool" and value.lower() not in _TRUE | _FALSE:
            errors[name] = f"ERROR: illegal value '{value}' specified for bool flag '{name}'"
            continue
        opts[name] = value
    return opts, [errors[k] for k in sorted(errors)]  # ReportErrors walks a std::map


def _is_int(text: str) -> bool:
    """gflags' int32 syntax: decimal, or hex after 0x."""
    return re.fullmatch(r"[+-]?(0[xX][0-9a-fA-F]+|\d+)", text) is not None


def _int(text: str) -> int:
    return int(text, 16) if text.lstrip("+-").lower().startswith("0x") else int(text)


# ------------------------------------------------------------------------------------- checks
def check_values(opts: dict[str, str]) -> None:
    """CheckInputFormat, then the value checks of CheckFlags that need no model."""
    framework = _int(opts.get("framework", "-1"))
    fmt = opts.get("input_format", "")
    if framework == 5 and fmt and fmt not in ONNX_FORMATS:
        raise invalid(fmt, "--input_format", "only support NCHW, ND, NCDHW in ONNX model")
    if not opts.get("model"):
        raise AtcError("E10004", "Value for [--model] is empty.")
    if not opts.get("output"):
        raise AtcError("E10004", "Value for [--output] is empty.")
    if framework not in (0, 1, 3, 5):
        raise AtcError("E10007", "[--framework] is required. The value must be "
                                 "[0(Caffe) or 1(MindSpore) or 3(TensorFlow) or 5(Onnx)].")
    if framework != 5:
        # a real check would pass a Caffe/TF/MindSpore model on; hrdeploy only converts ONNX
        raise invalid(str(framework), "--framework", "this stand-in converts ONNX models (5) only")
    for name, allowed in (("precision_mode", PRECISION), ("precision_mode_v2", PRECISION_V2),
                          ("op_select_implmode", IMPLMODES), ("buffer_optimize", BUFFER_OPTIMIZE),
                          ("core_type", ("AiCore", "VectorCore"))):
        if name in opts and opts[name] not in allowed:
            raise invalid(opts[name], f"--{name}", "The value must be one of " + ", ".join(allowed))
    if "precision_mode" in opts and "precision_mode_v2" in opts:
        raise AtcError("E10047", "[--precision_mode] and [--precision_mode_v2] are mutually exclusive.")
    # FP16 for every output, or "node:index:FP16;node2:index:FP32"
    if "output_type" in opts and any(p.split(":")[-1] not in OUTPUT_TYPES for p in opts["output_type"].split(";")):
        raise invalid(opts["output_type"], "--output_type", "The value must be one of " + ", ".join(OUTPUT_TYPES))
    for name in ("save_original_model", "enable_compress_weight", "enable_single_stream"):
        if opts.get(name, "") not in ("", "true", "false"):
            raise AtcError("E10005", f"Value [{opts[name]}] for parameter [--{name}] is invalid. "
                                     "The value must be either true or false.")
    for name in ("display_model_info", "enable_small_channel", "dump_mode"):
        if opts.get(name, "0") not in ("0", "1"):
            raise AtcError("E10006", f"Value [{opts[name]}] for parameter [--{name}] is invalid. "
                                     "The value must be either 1 or 0.")


def check_soc(opts: dict[str, str]) -> None:
    """GELib::Initialize loads the SoC's platform config (after CheckFlags)."""
    soc = opts.get("soc_version", "")
    if not soc:
        raise AtcError("E10004", "Value for [--soc_version] is empty.")
    if soc not in SOCS:
        # not in a recorded output: ATC fails initialising the platform for an unknown SoC
        raise invalid(soc, "--soc_version", "The soc version is not supported: no platform config "
                                            "for it (use \"Ascend\" + the Name column of npu-smi info)")


def parse_input_shape(text: str) -> dict[str, list[int]]:
    """``name:d,d,d;name2:d,d`` (E10002 on a malformed value, E10011 on a 0 or below -1)."""
    out: dict[str, list[int]] = {}
    for part in [p for p in text.split(";") if p]:
        name, sep, dims = part.rpartition(":")
        if not sep or not name:
            raise AtcError("E10002", f"Value [{text}] for parameter [--input_shape] is invalid. Reason: "
                                     f"split name and shape of [{part}] failed. The value must be formatted "
                                     f"as {SHAPE_SAMPLE}.")
        try:
            values = [int(d) for d in dims.split(",")] if dims else []
        except ValueError:
            raise AtcError("E10002", f"Value [{text}] for parameter [--input_shape] is invalid. Reason: "
                                     f"shape [{dims}] of [{name}] is not a list of integers. The value must be "
                                     f"formatted as {SHAPE_SAMPLE}.") from None
        bad = [d for d in values if d == 0 or d < -1]
        if bad:
            raise AtcError("E10011", f"Value [{text}] for parameter [--input_shape] is invalid. Shape values "
                                     f"must be positive integers. The error value in the shape is [{bad[0]}].")
        out[name] = values
    return out


def profiles(text: str, option: str) -> list[list[int]]:
    """The gears of a gear option: ``1,2,4`` (--dynamic_batch_size, one value per gear) or
    ``h,w;h,w`` (--dynamic_image_size, --dynamic_dims), checked as CheckDynamicInputParamValid
    checks them (E10035..E10039)."""
    groups = [[v] for v in text.split(",")] if option == "dynamic_batch_size" else \
        [g.split(",") for g in text.split(";")]
    try:
        out = [[int(v) for v in g] for g in groups]
    except ValueError:
        raise invalid(text, f"--{option}", "each profile must be integers separated by ','") from None
    for v in (v for g in out for v in g):
        if v <= 0:
            raise AtcError("E10038", f"Dimension size [{v}] is invalid. The value must be greater than 0.")
    which = "[--dynamic_batch_size], [--dynamic_image_size], or [--dynamic_dims]"
    if len(out) < 2:
        raise AtcError("E10035", f"{which} has [{len(out)}] profiles, which is less than the minimum [2].")
    if len(out) > MAX_GEARS:
        raise AtcError("E10036", f"{which} has [{len(out)}] profiles, which is greater than the maximum "
                                 f"[{MAX_GEARS}].")
    counts = sorted({len(g) for g in out})
    if len(counts) > 1:
        raise AtcError("E10037", f"The profiles configured in {which} have inconsistent dimension counts. "
                                 f"A profile has [{counts[0]}] dimensions while another has [{counts[1]}] dimensions.")
    if len({tuple(g) for g in out}) != len(out):
        raise AtcError("E10039", f"The {which} argument have duplicate profiles.")
    return out


def check_dynamic(opts: dict[str, str], shapes: dict[str, list[int]]) -> dict:
    """CheckDynamicInputParamValid: the gear option against the -1s of --input_shape."""
    given = [k for k in ("dynamic_batch_size", "dynamic_image_size", "dynamic_dims", "input_shape_range")
             if opts.get(k)]
    if len(given) > 1:
        raise AtcError("E10009", "[--dynamic_batch_size], [--dynamic_image_size], [--input_shape_range], and "
                                 "[--dynamic_dims] are mutually exclusive.")
    fmt = opts.get("input_format") or "NCHW"
    minus = {name: [i for i, d in enumerate(dims) if d == -1] for name, dims in shapes.items()}
    free = sum(len(v) for v in minus.values())
    out: dict = {"dynamic_batch_size": None, "dynamic_dims": None, "dynamic_image_size": None}
    if not given:
        if free:
            # stricter than ATC >= 6.3, which builds a dynamic-shape .om from a bare -1 on non-310 SoCs
            name = next(n for n, v in minus.items() if v)
            raise AtcError("E10011", f"Value [{opts['input_shape']}] for parameter [--input_shape] is invalid. "
                                     f"Shape values must be positive integers. The error value in the shape is "
                                     f"[{name}:-1].")
        return out
    option = given[0]
    if option == "input_shape_range":
        raise invalid(opts[option], "--input_shape_range", "shape ranges build a dynamic-shape model, which "
                                                           "this stand-in does not")
    if option != "dynamic_batch_size" and not free:
        raise AtcError("E10040", "As the [--dynamic_batch_size], [--dynamic_image_size], or [--dynamic_dims] "
                                 "argument is included, the corresponding nodes specified in [--input_shape] "
                                 "must have -1 axes and cannot have '~'.")
    if option == "dynamic_batch_size":
        gears = profiles(opts[option], option)
        if not any(0 in idx for idx in minus.values()):
            raise AtcError("E10031", "[--dynamic_batch_size] is included, but none of the nodes specified in "
                                     "[--input_shape] has a batch size equaling -1.")
        for idx in minus.values():
            if any(i != 0 for i in idx):
                raise AtcError("E10018", f"Value [{opts['input_shape']}] for shape [{max(idx)}] is invalid. When "
                                         "[--dynamic_batch_size] is included, only batch size N can be -1 in "
                                         "[--input_shape].")
        out["dynamic_batch_size"] = [g[0] for g in gears]
    elif option == "dynamic_image_size":
        gears = profiles(opts[option], option)
        if any(len(g) != 2 for g in gears):
            raise AtcError("E10020", f"Value [{opts[option]}] for parameter [--dynamic_image_size] is invalid.")
        hw = [2, 3] if fmt == "NCHW" else [1, 2]
        if any(idx and idx != hw for idx in minus.values()):
            raise AtcError("E10019", "When [--dynamic_image_size] is included, only the height and width axes "
                                     "can be -1 in [--input_shape].")
        out["dynamic_image_size"] = gears
    else:
        if fmt != "ND":
            raise invalid(fmt, "--input_format", "input_format must be ND when set dynamic_dims")
        gears = profiles(opts[option], option)
        if free > len(gears[0]):
            raise AtcError("E10045", "The number of -1 axes in the [--input_shape] argument exceeds the dimension "
                                     "count per profile in [--dynamic_dims].")
        if free < len(gears[0]):
            raise invalid(opts[option], "--dynamic_dims", f"each profile has {len(gears[0])} values but "
                                                          f"[--input_shape] has {free} -1 axes (one value per -1)")
        out["dynamic_dims"] = gears
    return out


def check_against_model(shapes: dict[str, list[int]], inputs: dict[str, list[int | None]], text: str) -> None:
    """The --input_shape names, ranks and dims against the ONNX graph inputs."""
    for name, dims in shapes.items():
        if name not in inputs:
            raise AtcError("E10016", f"Opname [{name}] specified in [--input_shape] is not found in the model. "
                                     "Confirm whether this node name exists, or the node is not split with the "
                                     "specified delimiter ';'.")
        model = inputs[name]
        if len(dims) != len(model):
            raise AtcError("E10049", f"Dimension count [{len(dims)}] configured in [--input_shape] does not match "
                                     f"dimension count [{len(model)}] of the node.")
        for i, (d, m) in enumerate(zip(dims, model)):
            # stricter than ATC, which would take the value and fail (or not) in shape inference
            if m is not None and d != m:
                raise invalid(text, "--input_shape", f"dim {i} of [{name}] is fixed to {m} in the model, "
                                                     f"the shape gives {d}")
    for name, model in inputs.items():
        if name not in shapes and any(m is None for m in model):
            raise invalid("-1", name, "maybe you should set input_shape to specify its shape")


def check_aipp(opts: dict[str, str]) -> dict | None:
    conf = opts.get("insert_op_conf")
    if not conf:
        return None
    if (opts.get("input_format") or "NCHW") not in ("NCHW", "NHWC"):
        raise invalid(opts["input_format"], "--input_format", "--input_format must be NCHW or NHWC with "
                                                              "--insert_op_conf")
    path = Path(conf)
    if not path.is_file():  # CheckInsertOpConfParamValid; its wording is not recorded
        raise invalid(conf, "--insert_op_conf", "the file does not exist")
    kv = parse_aipp_config(path.read_text())
    if kv.get("aipp_mode") != "static" or kv.get("input_format") != "RGB888_U8":
        raise AtcError("E10052", "AIPP configuration is invalid. Reason: only static RGB888_U8 AIPP is "
                                 "understood by this stand-in.")
    return kv


def check(opts: dict[str, str]) -> dict:
    check_values(opts)
    shapes = parse_input_shape(opts.get("input_shape", ""))
    if len(shapes) > 1:
        raise invalid(opts["input_shape"], "--input_shape", "this stand-in converts single-input models only")
    dynamic = check_dynamic(opts, shapes)
    if opts.get("insert_op_conf") and opts.get("dynamic_dims"):
        raise invalid(opts["insert_op_conf"], "--insert_op_conf", "dynamic dims function does not support aipp")
    model = Path(opts["model"])
    if not model.is_file():  # CheckInputPathValid; its wording is not recorded
        raise invalid(opts["model"], "--model", "the path does not exist")
    aipp = check_aipp(opts)
    output = opts["output"]
    if output.endswith(("/", "\\")):
        raise AtcError("E10022", f"Path [{output}] for parameter [--output] does not include the file name.")
    check_soc(opts)
    try:
        inputs = onnx_inputs(model)
    except ValueError:
        raise AtcError("E10041", f"Failed to load the model from [{model}].") from None
    check_against_model(shapes, inputs, opts.get("input_shape", ""))
    # with no --input_shape the model's own (static) shape is used
    name = next(iter(shapes)) if shapes else next(iter(inputs))
    dims = shapes.get(name) or [int(d) for d in inputs[name]]
    if aipp is not None and (int(aipp["src_image_size_h"]), int(aipp["src_image_size_w"])) != (dims[2], dims[3]):
        raise AtcError("E10052", "AIPP configuration is invalid. Reason: src_image_size does not match "
                                 "the model input's H and W.")
    return {"input_shape": f"{name}:{','.join(map(str, dims))}", "soc": opts["soc_version"],
            "precision_mode": opts.get("precision_mode", "force_fp16"),
            "input_format": opts.get("input_format") or "NCHW",
            "dynamic_batch_size": dynamic["dynamic_batch_size"], "dynamic_dims": dynamic["dynamic_dims"],
            "aipp": aipp}


def main() -> int:
    argv = sys.argv[1:]
    fom.log_call("FAKE_ATC_CALLS", argv)
    print(START, flush=True)
    opts, flag_errors = parse_flags(argv)
    if flag_errors:
        sys.stderr.write("".join(e + "\n" for e in flag_errors))
        return 1
    if any(opts.get(h, "false").lower() in _TRUE for h in ("h", "help", "helpfull", "helpshort")):
        # gflags' HandleCommandLineHelpFlags shows the usage and exits 1
        print("usage: ./atc <args>\ngenerate offline model example:\n./atc --model=./alexnet.prototxt "
              "--weight=./alexnet.caffemodel \n--framework=0 --output=./domi ")
        return 1
    if opts.get("log", "null") not in LOG:
        print(f"E10010: invalid value for --log:{opts['log']}, only support debug, info, warning, error, null")
        print(FAILED)
        return 255
    if _int(opts.get("mode", "0")) != 0:
        print(f"stand-in atc: --mode={opts['mode']} is not implemented (only 0, generate an offline model)")
        return 2
    mode = os.environ.get("FAKE_ATC_MODE", "ok")
    try:
        header = check(opts)
        if mode == "fail":
            raise AtcError("E19999", "Inner Error! the stand-in was told to fail.")
    except AtcError as e:
        print(FAILED)
        print(str(e))
        return 1
    print("W11001: Op [Relu_1] does not hit the high-priority operator information library, "
          "which might result in compromised performance.")
    if mode != "nofile":
        out = Path(opts["output"] + os.environ.get("FAKE_ATC_SUFFIX", "") + ".om")
        out.parent.mkdir(parents=True, exist_ok=True)  # CheckOutputPathValid creates the folder
        fom.write_om(out, header, Path(opts["model"]).read_bytes())
    print(SUCCESS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
