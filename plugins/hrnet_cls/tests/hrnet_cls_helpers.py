"""Helpers of the HRNet-C tests (a uniquely named module: tests run with --import-mode=importlib)."""
from __future__ import annotations

import json
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch


def manifest(fixtures_dir: Path, name: str) -> dict[str, Any]:
    return json.loads((fixtures_dir / "official" / name).read_text(encoding="utf-8"))


def shaped_checkpoint(keys: dict[str, list[int]]) -> "OrderedDict[str, torch.Tensor]":
    """Tensors of the manifest's shapes backed by one element each (stride 0), so a checkpoint
    file of a big model stays a few hundred kB; enough to test recognition of its layout."""
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for k, shape in keys.items():
        dtype = torch.int64 if k.endswith("num_batches_tracked") else torch.float32
        out[k] = torch.zeros(1, dtype=dtype).reshape([1] * len(shape)).expand(*shape) if shape else torch.zeros((), dtype=dtype)
    return out


def official_to_mmpretrain(sd: "OrderedDict[str, torch.Tensor]") -> "OrderedDict[str, torch.Tensor]":
    """The mmpretrain ImageClassifier layout of an official state_dict, written from
    mmpretrain's HRNet naming (backbone under ``backbone.``, the incre/downsamp/final layers under
    ``neck.0.``, the classifier as ``head.fc.``; independently of the plugin's loader): the
    four head conv biases are folded into the following BN's running_mean, which is exact."""
    head_bias = {"downsamp_modules.0.0.bias", "downsamp_modules.1.0.bias",
                 "downsamp_modules.2.0.bias", "final_layer.0.bias"}
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for k, v in sd.items():
        if k in head_bias:
            continue
        if k.endswith(".1.running_mean") and k.replace(".1.running_mean", ".0.bias") in head_bias:
            v = v - sd[k.replace(".1.running_mean", ".0.bias")]
        if k.startswith("incre_modules."):
            new = "neck.0.increase_layers." + k[len("incre_modules."):]
        elif k.startswith("downsamp_modules."):
            new = re.sub(r"^downsamp_modules\.(\d+)\.0\.", r"neck.0.downsample_layers.\1.conv.", k)
            new = re.sub(r"^downsamp_modules\.(\d+)\.1\.", r"neck.0.downsample_layers.\1.bn.", new)
        elif k.startswith("final_layer."):
            new = k.replace("final_layer.0.", "neck.0.final_layer.conv.").replace("final_layer.1.", "neck.0.final_layer.bn.")
        elif k.startswith("classifier."):
            new = "head.fc." + k[len("classifier."):]
        else:
            new = "backbone." + k
        out[new] = v
    return out


def max_rel(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(a - ref).max() / np.abs(ref).max())

