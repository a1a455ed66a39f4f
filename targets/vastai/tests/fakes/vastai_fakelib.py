"""Shared bits of the VastAI stand-ins: the stand-in "model three-piece" (prefix.so/.json/.params,
the ONNX bytes in .params), the device activation layout decoded with the reference formula,
the vdsp fusion op's arithmetic, and call logging."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MAGIC = b"HRDEPLOY-FAKE-VACC/1\n"


def write_model(prefix: Path, header: dict[str, Any], onnx_bytes: bytes) -> None:
    prefix.parent.mkdir(parents=True, exist_ok=True)
    Path(str(prefix) + ".so").write_bytes(MAGIC)
    Path(str(prefix) + ".json").write_text(json.dumps(header))
    Path(str(prefix) + ".params").write_bytes(onnx_bytes)


def read_model(prefix: str) -> tuple[dict[str, Any], bytes]:
    so = Path(prefix + ".so")
    if not so.is_file() or so.read_bytes() != MAGIC:
        raise RuntimeError(f"load model {prefix} failed")
    return json.loads(Path(prefix + ".json").read_text()), Path(prefix + ".params").read_bytes()


def detensorize(a, c: int, h: int, w: int):
    """Reference formula of VastModelZOO's get_activation_aligned, decoded element by element:
    value (n, c, h, w) lives at [n, w // 8, h // 8, c // 4, (c % 4) * 64 + (h % 8) * 8 + (w % 8)]."""
    import numpy as np

    n = a.shape[0]
    cc, hh, ww = np.meshgrid(np.arange(c), np.arange(h), np.arange(w), indexing="ij")
    addr = (cc % 4) * 64 + (hh % 8) * 8 + (ww % 8)
    out = np.empty((n, c, h, w), np.float32)
    for i in range(n):
        out[i] = a[i][ww // 8, hh // 8, cc // 4, addr]
    return out


def vdsp_apply(image, cfg: dict[str, Any]):
    """The fused resize / colour / crop / normalise op on one CHW uint8 planar image."""
    import numpy as np

    x = image.astype(np.float32)
    rh, rw = cfg["ResizeHeight"], cfg["ResizeWidth"]
    if (x.shape[1], x.shape[2]) != (rh, rw):
        import cv2

        x = cv2.resize(x.transpose(1, 2, 0), (rw, rh), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
    if cfg.get("ColorCvtCode") == "RGB2BGR":
        x = x[::-1]
    cy, cx = cfg["CropY"], cfg["CropX"]
    x = x[:, cy:cy + cfg["OimageHeight"], cx:cx + cfg["OimageWidth"]]
    mean = np.asarray(cfg["Mean"], np.float32).reshape(-1, 1, 1)
    std = np.asarray(cfg["Std"], np.float32).reshape(-1, 1, 1)
    if cfg["NormaType"] == "DIV255_MINUSMEAN_DIVSTD":
        x = (x / 255.0 - mean) / std
    elif cfg["NormaType"] == "MINUSMEAN_DIVSTD":
        x = (x - mean) / std
    else:
        raise RuntimeError(f"unknown NormaType {cfg['NormaType']}")
    return x.astype(np.float16).astype(np.float32)[None]


def log_call(argv: list[str]) -> None:
    target = os.environ.get("FAKE_VASTAI_CALLS")
    if target:
        with open(target, "a") as f:
            f.write(json.dumps({"argv": argv, "cwd": os.getcwd()}) + "\n")
