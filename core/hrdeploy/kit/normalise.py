"""Pixel normalisation read from a model's preprocessing parameters, reduced to one form:
``y = (pixel - mean255) / std255`` per channel, with pixel in 0..255.

Shared because every target that normalises on the device needs exactly this reduction and
its inverse: Ascend's AIPP (``min_chn``/``var_reci_chn``), VastAI's vdsp op and vamc transform
ops; and their runners turn the core's normalised float batches back into the uint8 pixels
those device-side steps expect.

Keys read from ``Variant.preprocess`` (copied into the exported ONNX and the artifact
manifest; anything else is ignored): ``mean`` and ``std`` (one value or one per channel, in
the network's channel order), optionally ``scale`` (the factor applied to 0..255 pixels before
mean/std, e.g. 1/255). Without ``scale`` the units are inferred: values all <= 1 mean "pixels /
255 first" (torchvision style: 0.485/0.229), larger values mean 0..255 units (mmcv style:
123.675/58.395). ``mean: [0,0,0], std: [1,1,1]`` therefore means "/255 only" (TResNet).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..errors import UserError

#: the keys that make a preprocessing record state a normalisation
KEYS = ("mean", "std", "scale")


def records_normalisation(pre: Mapping[str, Any] | None) -> bool:
    """Whether the preprocessing parameters state a normalisation at all (without one,
    :meth:`Normalisation.from_preprocess` falls back to "/255 only")."""
    return any(k in (pre or {}) for k in KEYS)


def vector(value: Any, name: str, channels: int) -> tuple[float, ...]:
    """One float per channel from a scalar or a list; a wrong type or length is the model
    plugin's mistake, reported as a :class:`UserError` naming the key."""
    if isinstance(value, (int, float)):
        return (float(value),) * channels
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise UserError(f"preprocessing {name} is not a list of numbers: {value!r}") from None
    if len(out) != channels:
        raise UserError(f"preprocessing {name} has {len(out)} values, the input has {channels} channels")
    return out


@dataclass(frozen=True)
class Normalisation:
    """``y = (pixel - mean255) / std255`` per channel, pixel in 0..255."""

    mean255: tuple[float, ...]
    std255: tuple[float, ...]

    @classmethod
    def from_preprocess(cls, pre: Mapping[str, Any] | None, channels: int = 3) -> "Normalisation":
        pre = dict(pre or {})
        mean = vector(pre.get("mean", [0.0] * channels), "mean", channels)
        std = vector(pre.get("std", [1.0] * channels), "std", channels)
        if any(s == 0 for s in std):
            raise UserError(f"preprocessing std has a zero: {list(std)}")
        if pre.get("scale") is not None:
            scale = float(pre["scale"])
        elif max(abs(v) for v in (*mean, *std)) > 1.0:
            scale = 1.0
        else:
            scale = 1.0 / 255.0
        return cls(tuple(m / scale for m in mean), tuple(s / scale for s in std))

    @property
    def mean01(self) -> list[float]:
        """The mean in 0..1 pixel units (what torchvision-style configs write)."""
        return [m / 255.0 for m in self.mean255]

    @property
    def std01(self) -> list[float]:
        return [s / 255.0 for s in self.std255]

    def to_uint8_nchw(self, x: np.ndarray) -> np.ndarray:
        """Invert the normalisation of a float NCHW batch back to the uint8 pixels it was made
        from (exact when the pipeline normalised uint8 pixels, which every resize/crop pipeline
        does: the device then redoes the normalisation itself)."""
        mean = np.asarray(self.mean255, dtype=np.float64).reshape(1, -1, 1, 1)
        std = np.asarray(self.std255, dtype=np.float64).reshape(1, -1, 1, 1)
        return np.clip(np.rint(x.astype(np.float64) * std + mean), 0, 255).astype(np.uint8)

    def to_uint8_nhwc(self, x: np.ndarray) -> np.ndarray:
        """:meth:`to_uint8_nchw`, transposed to a contiguous NHWC batch."""
        return self.to_uint8_nchw(x).transpose(0, 2, 3, 1).copy()

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
