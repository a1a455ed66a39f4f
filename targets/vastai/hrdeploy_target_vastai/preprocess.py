"""The model's preprocessing as VastAI's two places for it need it: the vamc YAML's
transform ops (int8 calibration) and the vdsp_params JSON (device-side resize/crop/normalise,
read by vamp and vaststreamx).

Keys read from the model plugin's preprocessing parameters (others are ignored):
``mean``/``std`` (3 values in the network's channel order; values <= 1 mean "pixels / 255
first", larger values are 0..255 units, or give ``scale`` explicitly), ``resize`` (short side
as an int, or [h, w]; also ``resize_short``/``resize_size``), ``crop`` (int or [h, w]; also
``crop_size``/``center_crop``; a text value, such as DEKR's description of its affine
warp, means the host does it) and ``color`` (``rgb``, the default, or ``bgr``; also
``channel_order``/``pixel_format``). The mean/std part is :mod:`hrdeploy.kit.normalise`'s, shared
with the other targets.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from hrdeploy.errors import UserError
from hrdeploy.kit.normalise import Normalisation


def _size(value: Any, name: str) -> tuple[int, int] | int | None:
    if value is None or isinstance(value, str):
        # a description ("short side 512, long side ... warpAffine") is a host-side transform
        # the vdsp op cannot express: the host pipeline does it, the device only normalises
        return None
    if isinstance(value, (int, float)):
        return int(value)
    try:
        vals = [int(v) for v in value]
    except (TypeError, ValueError):
        raise UserError(f"preprocessing {name} must be an int or [h, w], got {value!r}") from None
    if len(vals) == 1:
        return vals[0]
    if len(vals) != 2:
        raise UserError(f"preprocessing {name} must be an int or [h, w], got {value!r}")
    return (vals[0], vals[1])


@dataclass(frozen=True)
class Preprocess:
    """``y = (pixel - mean255) / std255`` after resizing to ``resize`` (H, W) and
    center-cropping ``crop`` (H, W); ``color`` is the network's channel order."""

    mean255: tuple[float, ...]
    std255: tuple[float, ...]
    resize: tuple[int, int]
    crop: tuple[int, int]
    color: str = "rgb"

    @classmethod
    def from_params(cls, pre: Mapping[str, Any] | None, input_hw: tuple[int, int], channels: int = 3) -> "Preprocess":
        pre = dict(pre or {})
        norm = Normalisation.from_preprocess(pre, channels)
        crop = _size(next((pre[k] for k in ("crop", "crop_size", "center_crop") if k in pre), None), "crop")
        crop_hw = (crop, crop) if isinstance(crop, int) else crop or tuple(input_hw)
        if tuple(crop_hw) != tuple(input_hw):
            raise UserError(f"preprocessing crops {crop_hw}, the network input is {tuple(input_hw)}")
        resize = _size(next((pre[k] for k in ("resize", "resize_short", "resize_size") if k in pre), None), "resize")
        # an int is the short side; the vdsp op and the vamc transform ops resize to a square of
        # it (VastModelZOO's configs do the same: Resize [256, 256] then CenterCrop 224)
        resize_hw = (resize, resize) if isinstance(resize, int) else resize or tuple(crop_hw)
        color = str(pre.get("color", pre.get("channel_order", pre.get("pixel_format", "rgb")))).lower()
        if color not in ("rgb", "bgr"):
            raise UserError(f"preprocessing color must be rgb or bgr, got {color!r}")
        return cls(norm.mean255, norm.std255, tuple(resize_hw), tuple(crop_hw), color)  # type: ignore[arg-type]

    @property
    def norm(self) -> Normalisation:
        return Normalisation(self.mean255, self.std255)

    @property
    def mean01(self) -> list[float]:
        return self.norm.mean01

    @property
    def std01(self) -> list[float]:
        return self.norm.std01

    @property
    def crop_xy(self) -> tuple[int, int]:
        return ((self.resize[1] - self.crop[1]) // 2, (self.resize[0] - self.crop[0]) // 2)

    def to_uint8_nchw(self, x: np.ndarray) -> np.ndarray:
        """Invert the normalisation of a float NCHW batch back to its uint8 pixels (exact for
        pipelines that normalise uint8 images)."""
        return self.norm.to_uint8_nchw(x)

    def to_dict(self) -> dict[str, Any]:
        return {"mean255": list(self.mean255), "std255": list(self.std255), "resize": list(self.resize),
                "crop": list(self.crop), "color": self.color}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Preprocess":
        return cls(tuple(d["mean255"]), tuple(d["std255"]), tuple(d["resize"]), tuple(d["crop"]),  # type: ignore[arg-type]
                   d.get("color", "rgb"))


def fp16_value(v: float) -> float:
    """The value as the device stores it (VastModelZOO writes Mean/Std fp16-rounded:
    0.485 -> 0.485107421875)."""
    return float(np.float16(v))


def fp16_bits(v: float) -> int:
    """The uint16 bit pattern of the fp16 value (sdk1.0 vdsp_params: 0.485 -> 14275)."""
    return int(np.float16(v).view(np.uint16))
