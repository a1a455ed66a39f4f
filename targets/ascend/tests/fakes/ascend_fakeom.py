"""The stand-in .om format shared by the fake ``atc`` (writer) and the fake ``ais_bench``
(reader): a magic line, one JSON line with what ATC was told, then the ONNX bytes. The fake
runtime executes the ONNX model with onnxruntime and applies the recorded AIPP config the way
the CANN documentation defines it: out = (x - mean_chn - min_chn) * var_reci_chn."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MAGIC = b"HRDEPLOY-FAKE-OM/1\n"


def write_om(path: Path, header: dict[str, Any], onnx_bytes: bytes) -> None:
    path.write_bytes(MAGIC + json.dumps(header).encode() + b"\n" + onnx_bytes)


def read_om(path: str | Path) -> tuple[dict[str, Any], bytes]:
    data = Path(path).read_bytes()
    if not data.startswith(MAGIC):
        raise RuntimeError(f"load model {path} failed: not an offline model")
    rest = data[len(MAGIC):]
    line, _, onnx_bytes = rest.partition(b"\n")
    return json.loads(line), onnx_bytes


def parse_shape(text: str) -> tuple[str, list[int]]:
    name, _, dims = text.rpartition(":")
    return name, [int(d) for d in dims.split(",")]


def parse_aipp(text: str) -> dict[str, str]:
    """``key : value`` pairs of an AIPP config (protobuf text, one aipp_op block)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if ":" in line and not line.endswith("{"):
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    return out


def aipp_to_nchw(x: Any, aipp: dict[str, str]) -> Any:
    """uint8 NHWC -> float32 NCHW as the AIPP module computes it."""
    import numpy as np

    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise RuntimeError(f"AIPP input must be uint8 NHWC with 3 channels, got {x.dtype} {x.shape}")
    out = np.empty((x.shape[0], 3, x.shape[1], x.shape[2]), np.float32)
    for c in range(3):
        mean = float(aipp.get(f"mean_chn_{c}", 0))
        mn = float(aipp.get(f"min_chn_{c}", 0))
        var = float(aipp.get(f"var_reci_chn_{c}", 1))
        out[:, c] = (x[..., c].astype(np.float32) - mean - mn) * var
    return out


def _fields(buf: bytes):
    """(field number, wire type, value) of one protobuf message, wire format only."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, i = _varint(buf, i)
        elif wt == 2:
            n, i = _varint(buf, i)
            val, i = buf[i:i + n], i + n
        elif wt == 1:
            val, i = buf[i:i + 8], i + 8
        elif wt == 5:
            val, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"unsupported wire type {wt}")
        yield num, wt, val


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        b = buf[i]
        i += 1
        out |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return out, i


def onnx_inputs(data: bytes) -> dict[str, list[int | None]]:
    """Graph input name -> its dims (an int, or None where the dim is symbolic or unknown), read
    straight from the ONNX protobuf (ModelProto.graph=7, GraphProto.input=11 minus the
    initializers=5, ValueInfoProto.name=1/type=2, TypeProto.tensor_type=1, shape=2, dim=1,
    Dimension.dim_value=1/dim_param=2) so the stand-in atc starts fast without importing onnx."""
    graph = next(v for n, wt, v in _fields(data) if n == 7 and wt == 2)
    inits = {bytes(v2).decode() for n, wt, v in _fields(graph) if n == 5 and wt == 2
             for n2, wt2, v2 in _fields(v) if n2 == 8 and wt2 == 2}
    out: dict[str, list[int | None]] = {}
    for n, wt, vi in _fields(graph):
        if n != 11 or wt != 2:
            continue
        name, dims = "", []
        for n2, wt2, v2 in _fields(vi):
            if n2 == 1:
                name = bytes(v2).decode()
            elif n2 == 2:
                for n3, _, tt in _fields(v2):
                    if n3 == 1:
                        for n4, _, shape in _fields(tt):
                            if n4 == 2:
                                dims = [_dim(d) for n5, _, d in _fields(shape) if n5 == 1]
        if name not in inits:
            out[name] = dims
    return out


def _dim(buf: bytes) -> int | None:
    value = None
    for n, wt, v in _fields(buf):
        if n == 1 and wt == 0:
            value = v
    return value


def ort_session(onnx_bytes: bytes) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(onnx_bytes, sess_options=so, providers=["CPUExecutionProvider"])


def log_call(var: str, argv: list[str]) -> None:
    target = os.environ.get(var)
    if target:
        with open(target, "a") as f:
            f.write(json.dumps({"argv": argv, "cwd": os.getcwd(),
                                "env": {k: v for k, v in os.environ.items() if k.startswith("ASCEND_")}}) + "\n")
