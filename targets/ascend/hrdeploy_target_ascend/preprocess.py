"""The model's input normalisation, read from the preprocessing parameters a model plugin
records (``Variant.preprocess``, copied into the exported ONNX and the artifact manifest).

Accepted keys (anything else is ignored): ``mean`` and ``std`` (3 values, in the network's
channel order), optionally ``scale`` (the factor applied to 0..255 pixels before mean/std,
e.g. 1/255). Without ``scale`` the units are inferred: values all <= 1 mean "pixels / 255
first" (torchvision style: 0.485/0.229), larger values mean 0..255 units (mmcv style:
123.675/58.395). ``mean: [0,0,0], std: [1,1,1]`` therefore means "/255 only" (TResNet).

Everything is reduced to ``y = (pixel - mean255) / std255`` per channel, with pixel in 0..255,
which is what AIPP (``min_chn``/``var_reci_chn``) needs and what the runner inverts when it feeds
uint8 pixels to an AIPP model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from hrdeploy.errors import UserError


@dataclass(frozen=True)
class Normalisation:
    """``y = (pixel - mean255) / std255`` per channel, pixel in 0..255."""

    mean255: tuple[float, ...]
    std255: tuple[float, ...]

    @classmethod
    def from_preprocess(cls, pre: Mapping[str, Any] | None, channels: int = 3) -> "Normalisation":
        pre = dict(pre or {})
        if "mean" not in pre and "std" not in pre and "scale" not in pre:
            raise UserError("the model records no normalisation (mean/std) in its preprocessing",
                            "AIPP needs it; convert without --aipp")
        mean = _vector(pre.get("mean", [0.0] * channels), "mean", channels)
        std = _vector(pre.get("std", [1.0] * channels), "std", channels)
        if any(s == 0 for s in std):
            raise UserError(f"preprocessing std has a zero: {list(std)}")
        if pre.get("scale") is not None:
            scale = float(pre["scale"])
        elif max(abs(v) for v in (*mean, *std)) > 1.0:
            scale = 1.0
        else:
            scale = 1.0 / 255.0
        return cls(tuple(m / scale for m in mean), tuple(s / scale for s in std))

    def to_uint8_nhwc(self, x: np.ndarray) -> np.ndarray:
        """Invert the normalisation of an NCHW float batch back to the uint8 NHWC pixels it was
        made from (exact when the pipeline normalised uint8 pixels, which is the case for every
        resize/crop pipeline: the device then redoes the normalisation in AIPP)."""
        mean = np.asarray(self.mean255, dtype=np.float64).reshape(1, -1, 1, 1)
        std = np.asarray(self.std255, dtype=np.float64).reshape(1, -1, 1, 1)
        pixels = np.rint(x.astype(np.float64) * std + mean)
        return np.clip(pixels, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1).copy()

    def apply(self, pixels_nhwc: np.ndarray) -> np.ndarray:
        """uint8 NHWC -> normalised float32 NCHW (the forward direction, for checks)."""
        x = pixels_nhwc.astype(np.float64).transpose(0, 3, 1, 2)
        mean = np.asarray(self.mean255).reshape(1, -1, 1, 1)
        std = np.asarray(self.std255).reshape(1, -1, 1, 1)
        return ((x - mean) / std).astype(np.float32)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean255": list(self.mean255), "std255": list(self.std255)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Normalisation":
        return cls(tuple(float(v) for v in d["mean255"]), tuple(float(v) for v in d["std255"]))


def _vector(value: Any, name: str, channels: int) -> tuple[float, ...]:
    if isinstance(value, (int, float)):
        return (float(value),) * channels
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise UserError(f"preprocessing {name} is not a list of numbers: {value!r}") from None
    if len(out) != channels:
        raise UserError(f"preprocessing {name} has {len(out)} values, the input has {channels} channels")
    return out
