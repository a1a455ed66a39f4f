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
