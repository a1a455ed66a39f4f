"""Stand-in for ``msit debug compare`` (msit's one-click per-layer compare of an .om against
its ONNX model): parses the command line the way msit does, checks the files the way its
argument types check them, and writes the per-layer table msit writes, with figures computed
honestly from the two models on the given input.

Where the behaviour comes from (public, read for this file):

* The command tree and options: ``msit debug compare`` is a sub-command of ``msit debug``
  (msit's ``BaseCommand`` tree); its ``argparse`` options are those of
  ``msit/components/debug/compare/msquickcmp/__main__.py`` (``CompareCommand.add_arguments``):
  ``-gm/--golden-model``, ``-om/--om-model``, ``-i/--input``, ``-c/--cann-path``, ``-o/--output``,
  ``-is/--input-shape``, ``-d/--device``, ``-ofs/--onnx-fusion-switch`` ... with their types from
  ``msquickcmp/common/args_check.py`` (model suffixes onnx/om/prototxt/pb, .om/.mindir for
  ``-om``, existing input files, ``-is`` characters ``[_A-Za-z0-9,;:/.-]``, device 0..255,
  booleans through ``str2bool``). argparse rejects an unknown option with exit code 2.
* Without ``-gm`` and ``-gp`` msit logs "The following args are required: -gm/--golden-model or
  -gp/--golden-path" and prints the help (``handle``).
* Output: ``{output}/{timestamp}/result_{timestamp}.csv`` (msit's docs, "输出结果说明"); the
  columns of :mod:`hrdeploy_target_ascend.msit_csv` (msaccucmp's ``get_result_title``); rows per
  NPU operator, inputs then outputs (msaccucmp compares both), ``TransData`` rows with
  GroundTruth ``*`` and NaN figures for the format conversions ATC inserts.

What the stand-in does instead of the device (each marked where it happens): the "NPU" side
is the ONNX model inside the stand-in .om (ascend_fakeom) run by onnxruntime, every tensor
rounded to float16 when ATC was told force_fp16 (the .om's precision), and ATC's fusion is
imitated for one pattern (a Conv whose only consumer is a Relu becomes one NPU operator named
``<conv><relu>``, GroundTruth ``<conv>,<relu>``). It writes no dump_data folder (nothing reads
it). Stricter than msit where msit's behaviour is not recorded: the ``-o`` folder must exist
(the plan script creates it), a .bin input must have exactly the bytes of the ``-is`` shape in
float32, and ``-is`` must fit the .om's compiled shapes.

Environment: FAKE_MSIT_CALLS names a JSON-lines file each call is appended to.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

import ascend_fakeom as fom

ALGORITHMS = ("CosineSimilarity", "MaxAbsoluteError", "AccumulatedRelativeError", "RelativeEuclideanDistance",
              "KullbackLeiblerDivergence", "StandardDeviation", "MeanAbsoluteError", "RootMeanSquareError",
              "MaxRelativeError", "MeanRelativeError")
HEADER = ["Index", "OpType", "NPUDump", "DataType", "Address", "GroundTruth", "DataType", "TensorIndex", "Shape",
          "OverFlow", *ALGORITHMS, "CompareFailReason"]
#: ATC's operator types for the ONNX ops the tests use (ATC maps ONNX Conv to Conv2D)
ATC_TYPES = {"Conv": "Conv2D", "GlobalAveragePool": "GlobalAveragePool", "Flatten": "Flatten", "Add": "Add",
             "Relu": "Relu"}
FLOAT_EPSILON = 1e-9


class MsitError(Exception):
    pass


# ------------------------------------------------------------------------------- argument types
def _file(value: str, suffixes: tuple[str, ...], what: str) -> str:
    if not os.path.isfile(value) or not os.access(value, os.R_OK) or not value.rsplit(".", 1)[-1] in suffixes:
        raise argparse.ArgumentTypeError(f"{what} path:{value} is illegal. Please check.")
    return value


def model_path(value: str) -> str:
    return _file(value, ("onnx", "om", "prototxt", "pb"), "model")


def om_path(value: str) -> str:
    return _file(value, ("om", "mindir"), "om")


def input_paths(value: str) -> str:
    for p in value.split(",") if value else []:
        if not os.path.isfile(p) or not os.access(p, os.R_OK):
            raise argparse.ArgumentTypeError(f"input path:{p} is illegal. Please check.")
    return value


def cann_path(value: str) -> str:
    if not re.fullmatch(r"[_A-Za-z0-9/.\-~]+", value or ""):
        raise argparse.ArgumentTypeError(f"cann path:{value} is illegal. Please check.")
    return value


def output_path(value: str) -> str:
    # stricter than msit (not recorded): the folder must already be there
    if value and not (os.path.isdir(value) and os.access(value, os.W_OK)):
        raise argparse.ArgumentTypeError(f"output path:{value} is illegal. Please check.")
    return value


def dict_kind(value: str) -> str:
    if value and re.search(r"[^_A-Za-z0-9,;:/.-]", value):
        raise argparse.ArgumentTypeError(f"dym string \"{value}\" is not a legal string")
    return value


def device(value: str) -> str:
    try:
        v = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"input:{value} is illegal.Please check") from None
    if not 0 <= v <= 255:
        raise argparse.ArgumentTypeError(f"device:{v} is invalid. valid value range is [0, 255]")
    return value


def str2bool(v: str) -> bool:
    if v.lower() in ("yes", "true", "t", "y", "1"):
        return True
    if v.lower() in ("no", "false", "f", "n", "0"):
        return False
    raise argparse.ArgumentTypeError("Boolean value expected true, 1, false, 0 with case insensitive.")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="msit")
    sub = top.add_subparsers(dest="command")
    debug = sub.add_parser("debug", help="debug a wide variety of model issues")
    dsub = debug.add_subparsers(dest="debug_command")
    p = dsub.add_parser("compare", help="one-click network-wide accuracy analysis of golden models.")
    p.add_argument("-gm", "--golden-model", dest="golden_model", type=model_path)
    p.add_argument("-om", "--om-model", dest="om_model", type=om_path)
    p.add_argument("-w", "--weight", dest="weight_path")
    p.add_argument("-i", "--input", default="", dest="input_data_path", type=input_paths)
    p.add_argument("-c", "--cann-path", default="/usr/local/Ascend/ascend-toolkit/latest", dest="cann_path",
                   type=cann_path)
    p.add_argument("-o", "--output", dest="out_path", default="", type=output_path)
    p.add_argument("-is", "--input-shape", type=dict_kind, dest="input_shape", default="")
    p.add_argument("-d", "--device", type=device, dest="device", default="0")
    p.add_argument("-outsize", "--output-size", dest="output_size", default="")
    p.add_argument("-n", "--output-nodes", type=dict_kind, dest="output_nodes", default="")
    p.add_argument("--advisor", action="store_true", dest="advisor")
    p.add_argument("-dr", "--dym-shape-range", dest="dym_shape_range", default="")
    p.add_argument("--dump", dest="dump", default=True, type=str2bool)
    p.add_argument("--convert", dest="bin2npy", default=False, type=str2bool)
    p.add_argument("--locat", default=False, dest="locat", type=str2bool)
    p.add_argument("-cp", "--custom-op", dest="custom_op", default="")
    p.add_argument("-ofs", "--onnx-fusion-switch", dest="onnx_fusion_switch", default=True, type=str2bool)
    p.add_argument("--fusion-switch-file", dest="fusion_switch_file")
    p.add_argument("-single", "--single-op", default=False, dest="single_op", type=str2bool)
    p.add_argument("-max", "--max-cmp-size", dest="max_cmp_size", default=0, type=int)
    p.add_argument("-q", "--quant-fusion-rule-file", dest="quant_fusion_rule_file", default="")
    p.add_argument("--saved_model_signature", dest="saved_model_signature", default="serving_default")
    p.add_argument("--saved_model_tag_set", dest="saved_model_tag_set", default="serve")
    p.add_argument("-mp", "--my-path", dest="my_path")
    p.add_argument("-gp", "--golden-path", dest="golden_path")
    p.add_argument("--ops-json", dest="ops_json")
    return top


# ------------------------------------------------------------------------------------ models
def _shape_arg(text: str) -> dict[str, list[int]]:
    out = {}
    for part in [p for p in text.split(";") if p]:
        name, _, dims = part.rpartition(":")
        out[name] = [int(d) for d in dims.split(",")]
    return out


def _exposed_run(onnx_bytes: bytes, feeds: dict[str, np.ndarray]) -> tuple[object, dict[str, np.ndarray]]:
    """Every node output of the model on ``feeds`` (graph optimisation off: -ofs False)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    original = onnx.load_from_string(onnx_bytes)
    model = onnx.load_from_string(onnx_bytes)
    have = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for out in node.output:
            if out and out not in have:
                model.graph.output.append(helper.make_empty_tensor_value_info(out))
                have.add(out)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    values = dict(zip(names, sess.run(names, feeds)))
    return original, {**{k: np.asarray(v) for k, v in feeds.items()}, **values}


def _npu_ops(model) -> list[dict]:
    """The .om's operators: ONNX nodes, with Conv->Relu (the Relu the Conv's only consumer)
    fused into one operator the way ATC's fusion passes name them."""
    nodes = list(model.graph.node)
    consumers: dict[str, list] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in model.graph.output}
    ops, fused = [], set()
    for n in nodes:
        if n.name in fused:
            continue
        group = [n]
        cons = consumers.get(n.output[0], [])
        if n.op_type == "Conv" and len(cons) == 1 and cons[0].op_type == "Relu" and n.output[0] not in outputs:
            group.append(cons[0])
            fused.add(cons[0].name)
        ops.append({"name": "".join(g.name for g in group), "type": ATC_TYPES.get(n.op_type, n.op_type),
                    "nodes": group, "outputs": list(group[-1].output)})
    return ops


def _fmt(v: float) -> str:
    return "NaN" if v is None or not math.isfinite(v) else f"{v:.6f}"


def _figures(my: np.ndarray, gt: np.ndarray) -> list[str]:
    a = my.astype(np.float64).ravel()
    b = gt.astype(np.float64).ravel()
    diff = a - b
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    cos = float(a @ b / (na * nb)) if na > FLOAT_EPSILON and nb > FLOAT_EPSILON else float("nan")
    red = 0.0 if nb <= FLOAT_EPSILON else float(np.sqrt(np.sum(diff ** 2) / np.sum(b ** 2)))
    sb = float(np.sum(np.abs(b)))
    are = float(np.sum(np.abs(diff)) / sb) if sb > FLOAT_EPSILON else float("nan")
    with np.errstate(all="ignore"):
        rel = np.abs(diff) / np.abs(b)
    rel = rel[np.isfinite(rel)]
    std = f"({a.mean():.6f};{a.std():.6f}),({b.mean():.6f};{b.std():.6f})"
    # KullbackLeiblerDivergence is not imitated: NaN, as msaccucmp writes when it cannot compute one
    vals = [_fmt(cos), _fmt(float(np.max(np.abs(diff)))), _fmt(are), _fmt(red), "NaN", std,
            _fmt(float(np.mean(np.abs(diff)))), _fmt(float(np.sqrt(np.mean(diff ** 2)))),
            _fmt(float(rel.max()) if rel.size else float("nan")), _fmt(float(rel.mean()) if rel.size else float("nan"))]
    return vals


def compare(args: argparse.Namespace) -> int:
    header, om_onnx = fom.read_om(args.om_model)
    golden_bytes = Path(args.golden_model).read_bytes()
    if not args.golden_model.endswith(".onnx"):
        raise MsitError("stand-in msit compares against ONNX golden models only")
    from hrdeploy.testing.onnxwire import onnx_inputs

    ginputs = onnx_inputs(Path(args.golden_model))
    shapes = _shape_arg(args.input_shape)
    if not shapes:
        dyn = [n for n, dims in ginputs.items() if any(d is None for d in dims)]
        if dyn:
            raise MsitError(f"The model input {dyn[0]} has a dynamic shape: please set -is/--input-shape")
        shapes = {n: [int(d) for d in dims] for n, dims in ginputs.items()}
    for name in shapes:
        if name not in ginputs:
            raise MsitError(f"input_shape node {name} is not an input of {args.golden_model}")
    files = [p for p in args.input_data_path.split(",") if p]
    if len(files) != len(ginputs):
        raise MsitError(f"the model has {len(ginputs)} input(s), -i gives {len(files)}")
    feeds = {}
    for (name, dims), path in zip(shapes.items(), files):
        if path.endswith(".npy"):
            x = np.load(path).astype(np.float32)
        else:
            raw = np.fromfile(path, dtype=np.float32)
            if raw.size != int(np.prod(dims)):  # stricter than the recorded msit behaviour
                raise MsitError(f"input file {path} holds {raw.size * 4} bytes, {name}:{dims} in float32 needs "
                                f"{int(np.prod(dims)) * 4}")
            x = raw.reshape(dims)
        feeds[name] = x
    # the .om's compiled shapes: a fixed shape, or a dynamic batch with its gears
    om_name, om_dims = fom.parse_shape(header["input_shape"])
    x = feeds.get(om_name)
    if x is None:
        raise MsitError(f"the .om's input {om_name} is not among {sorted(feeds)}")
    batches = header.get("dynamic_batch_size") or [om_dims[0]]
    if list(x.shape[1:]) != [d for d in om_dims[1:]] or x.shape[0] not in batches:
        raise MsitError(f"input shape {list(x.shape)} does not fit the .om ({header['input_shape']}, "
                        f"batch {batches})")
    fp16 = header.get("precision_mode", "force_fp16") == "force_fp16"
    model, npu = _exposed_run(om_onnx, feeds)  # the device run, imitated
    _, golden = _exposed_run(golden_bytes, feeds)
    if fp16:
        npu = {k: v.astype(np.float16).astype(np.float32) if v.dtype == np.float32 else v for k, v in npu.items()}
    ts = time.strftime("%Y%m%d%H%M%S")
    out_dir = Path(args.out_path or ".") / ts
    out_dir.mkdir(parents=True, exist_ok=True)
    dtype = "float16" if fp16 else "float32"
    rows = [["0", "TransData", "trans_TransData_0", "NaN", "NaN", "*", "NaN", "trans_TransData_0:output:0", "NaN",
             "NaN", *["NaN"] * len(ALGORITHMS), "The data does not exist on the ground truth side."]]
    for idx, op in enumerate(_npu_ops(model), start=1):
        gt_names = ",".join(n.name for n in op["nodes"])
        first = op["nodes"][0]
        for i, t in enumerate(x for x in first.input if x in golden):
            rows.append([str(idx), op["type"], op["name"], dtype, "NaN", gt_names, "float32",
                         f"{op['name']}:input:{i}", "[" + ",".join(map(str, golden[t].shape)) + "]", "NO",
                         *_figures(npu[t], golden[t]), ""])
        for i, t in enumerate(op["outputs"]):
            rows.append([str(idx), op["type"], op["name"], dtype, "NaN", gt_names, "float32",
                         f"{op['name']}:output:{i}", "[" + ",".join(map(str, golden[t].shape)) + "]", "NO",
                         *_figures(npu[t], golden[t]), ""])
        print(f"[INFO] [{op['name']}] Result: compared {len(op['outputs'])} output(s)")
    with open(out_dir / f"result_{ts}.csv", "w", newline="") as f:
        csv.writer(f).writerows([HEADER, *rows])
    print(f"[INFO] The command was completed and took 1 seconds.\n[INFO] Compare Finished, result file: "
          f"{out_dir / f'result_{ts}.csv'}")
    return 0


def main() -> int:
    fom.log_call("FAKE_MSIT_CALLS", sys.argv[1:])
    top = parser()
    args = top.parse_args()  # argparse: unknown option -> usage + error on stderr, exit 2
    if args.command != "debug" or getattr(args, "debug_command", None) != "compare":
        top.print_help()
        return 2
    if not args.golden_model and not args.golden_path:
        print("[ERROR] The following args are required: -gm/--golden-model or -gp/--golden-path")
        top.print_help()
        return 0
    if not args.om_model:
        print("[ERROR] -om/--om-model is required to compare against an ONNX golden model")
        return 1
    try:
        return compare(args)
    except (MsitError, RuntimeError) as e:
        print(f"[ERROR] {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
