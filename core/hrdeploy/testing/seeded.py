"""Deterministic weights from a key -> shape manifest, for tests without checkpoints.

The rules match, bit for bit, the generator the official reference outputs in
tests/fixtures/ref/ were made with (``seeded_weights.py --seed 0`` in their meta): the plugins'
PyTorch modules reproduce those outputs from these weights (DEKR's heatmap exactly, in
plugins/dekr/tests/test_dekr_export.py). Each tensor gets its own ``torch.Generator`` seeded
with ``crc32(key) + seed``; normals come from Box-Muller over float64 uniforms (identical on
every CPU); conv/linear weights are N(0, 1/fan_in), other 1-d tensors N(0, 0.01); a
``.weight``/``.bias`` whose prefix also has a ``running_mean``/``running_var`` is a BatchNorm:
weight U(0.5, 1.5), bias N(0, 0.1), running_mean N(0, 0.1), running_var U(0.5, 1.5),
num_batches_tracked 0 (int64).
"""
from __future__ import annotations

import json
import math
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import torch


def load_manifest(path: str | Path) -> dict[str, Any]:
    manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(manifest, dict) or not isinstance(manifest.get("keys"), dict):
        raise ValueError(f"{path}: not a manifest (expected a JSON object with a 'keys' object)")
    return manifest


def _numel(shape: Sequence[int]) -> int:
    return math.prod(int(s) for s in shape)


def _generator(key: str, seed: int) -> torch.Generator:
    gen = torch.Generator(device="cpu")
    gen.manual_seed((zlib.crc32(key.encode("utf-8")) + int(seed)) % (2 ** 63))
    return gen


def _uniform(gen: torch.Generator, shape: Sequence[int], low: float, high: float) -> torch.Tensor:
    u = torch.rand(_numel(shape), generator=gen, dtype=torch.float64)
    return (low + (high - low) * u).to(torch.float32).reshape(list(shape))


def _normal(gen: torch.Generator, shape: Sequence[int], std: float) -> torch.Tensor:
    n = _numel(shape)
    half = (n + 1) // 2
    u = torch.rand(2 * half, generator=gen, dtype=torch.float64)
    radius = torch.sqrt(-2.0 * torch.log(1.0 - u[:half]))  # 1-u is in (0, 1]: log stays finite
    theta = 2.0 * math.pi * u[half:]
    z = torch.cat([radius * torch.cos(theta), radius * torch.sin(theta)])[:n]
    return (z * std).to(torch.float32).reshape(list(shape))


def seeded_tensor(key: str, shape: Sequence[int], seed: int, batchnorm_prefixes: set[str]) -> torch.Tensor:
    shape = [int(s) for s in shape]
    head, _, tail = key.rpartition(".")
    if tail == "num_batches_tracked":
        return torch.zeros(shape, dtype=torch.int64)
    gen = _generator(key, seed)
    if tail == "running_var" or (tail == "weight" and head in batchnorm_prefixes):
        return _uniform(gen, shape, 0.5, 1.5)
    if tail == "running_mean" or (tail == "bias" and head in batchnorm_prefixes):
        return _normal(gen, shape, 0.1)
    if len(shape) >= 2:
        return _normal(gen, shape, 1.0 / math.sqrt(max(1, _numel(shape[1:]))))
    return _normal(gen, shape, 0.01)


def seeded_state_dict(manifest: dict[str, Any] | str | Path, seed: int = 0) -> "OrderedDict[str, torch.Tensor]":
    """A state_dict with exactly the manifest's keys (in order) and shapes."""
    if not isinstance(manifest, dict):
        manifest = load_manifest(manifest)
    keys: dict[str, list[int]] = manifest["keys"]
    bn = {k.rpartition(".")[0] for k in keys if k.rpartition(".")[2] in ("running_mean", "running_var")}
    return OrderedDict((k, seeded_tensor(k, shape, seed, bn)) for k, shape in keys.items())
