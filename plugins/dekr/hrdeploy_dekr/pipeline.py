"""DEKR pre-processing (official multiple-of-64 resize, or the Ascend gear policy) and the
hand-over to :mod:`hrdeploy_dekr.postprocess`. numpy + OpenCV only."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from hrdeploy.errors import UserError
from hrdeploy.model import Item, Pipeline, Sample, SampleRef
from hrdeploy.tasks.pose import IMAGENET_MEAN, IMAGENET_STD, warp_window

from .postprocess import DecodeConfig, ScaleMaps, decode, to_people
from .rescore import Rescorer

FLIP_SHIFT = 3   # the official flipped input is shifted this many input pixels left


def _ceil64(v: float) -> int:
    return int((v + 63) // 64 * 64)


def snap_to_gear(value: int, choices: Sequence[int]) -> int:
    """The Ascend ModelZoo rule (tool.py ``get_nearest_boader`` on gears 512/768/1024): the
    smallest gear >= ``value``, or the largest gear when none is (the image is then cropped)."""
    ordered = sorted(set(int(c) for c in choices))
    for c in ordered:
        if c >= value:
            return c
    return ordered[-1]


def resize_params(height: int, width: int, input_size: int, scale: float = 1.0,
                  gears: Sequence[tuple[int, int]] | None = None
                  ) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
    """Official ``get_multi_scale_size(image, input_size, scale, 1.0)``: returns the network
    input size (w, h), the integer image centre and the (center, scale) window scale.

    With ``gears`` ((H, W) pairs) the long side is snapped as the Ascend guide does, and the
    window scale follows the snapped size (uniform zoom; padding or symmetric cropping of the
    long side)."""
    h, w = int(height), int(width)
    center = np.array([int(w / 2.0 + 0.5), int(h / 2.0 + 0.5)])
    min_input = _ceil64(1.0 * input_size)
    if w < h:
        w_in = int(min_input * scale / 1.0)
        h_in = int(_ceil64(min_input / w * h) * scale / 1.0)
        if gears:
            longs = [g[0] for g in gears if int(g[1]) == w_in]
            if not longs:
                raise UserError(f"no compiled size gear has width {w_in} for this portrait image",
                                f"gears (H, W): {[tuple(g) for g in gears]}")
            h_in = snap_to_gear(h_in, longs)
        win = np.array([w / 200.0, h_in / w_in * w / 200.0])
    else:
        h_in = int(min_input * scale / 1.0)
        w_in = int(_ceil64(min_input / h * w) * scale / 1.0)
        if gears:
            longs = [g[1] for g in gears if int(g[0]) == h_in]
            if not longs:
                raise UserError(f"no compiled size gear has height {h_in} for this landscape image",
                                f"gears (H, W): {[tuple(g) for g in gears]}")
            w_in = snap_to_gear(w_in, longs)
        win = np.array([w_in / h_in * h / 200.0, h / 200.0])
    return (w_in, h_in), center, win


def flip_shift(chw: np.ndarray, shift: int = FLIP_SHIFT) -> np.ndarray:
    """``torch.flip(x, [3]); x[..., :-shift] = x[..., shift:]``: mirrored, moved ``shift`` px
    left; the last ``shift`` columns keep their mirrored values."""
    f = chw[:, :, ::-1]
    out = np.empty_like(chw)
    out[:, :, :-shift] = f[:, :, shift:]
    out[:, :, -shift:] = f[:, :, -shift:]
    return out


def normalise(rgb_u8: np.ndarray) -> np.ndarray:
    """ToTensor + Normalize of the official transforms: (x / 255 - mean) / std, CHW float32."""
    x = rgb_u8.astype(np.float32) / np.float32(255)
    x = (x - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


class DEKRPipeline(Pipeline):
    """One image -> one item per test scale (+ its flipped copy); all their outputs -> people."""

    def __init__(self, *, input_size: int, output_size: int, output_names: Sequence[str] = ("heatmap", "offset"),
                 flip: bool = True, scales: Sequence[float] = (1.0,),
                 gears: Sequence[tuple[int, int]] | None = None, rescorer: Rescorer | None = None,
                 rescore_note: str = "", nms_threshold: float | None = None) -> None:
        scales = sorted({float(s) for s in scales}, reverse=True)
        if 1.0 not in scales:
            raise UserError(f"--scales {','.join(f'{s:g}' for s in scales)} must include 1 "
                            "(the other scales are re-weighted against it)")
        if any(s <= 0 for s in scales):
            raise UserError("test scales must be positive")
        if gears and scales != [1.0]:
            raise UserError("multi-scale testing needs a runtime that takes any input size; this "
                            f"artifact is compiled for the size gears {[tuple(g) for g in gears]}",
                            "run the exported .onnx file, or drop --scales")
        self.input_size = int(input_size)
        if nms_threshold is not None and not 0 < nms_threshold < 1:
            raise UserError(f"--nms-threshold must be between 0 and 1, got {nms_threshold:g}",
                            "the official configurations use 0.05 (single scale) and 0.15 (multi-scale)")
        self.cfg = DecodeConfig(input_size=int(input_size), output_size=int(output_size),
                                **({"nms_threshold": float(nms_threshold)} if nms_threshold is not None else {}))
        self.names = tuple(output_names)
        self.flip = bool(flip)
        self.scales = scales
        self.gears = [tuple(int(v) for v in g) for g in gears] if gears else None
        self.rescorer = rescorer
        self.params = {
            "model": "dekr", "input_size": self.input_size, "output_size": int(output_size),
            "resize": ("size gears (Ascend rule: smallest gear >= long side, else the largest)"
                       if self.gears else "official: long side rounded up to a multiple of 64"),
            "gears": self.gears, "warp": "cv2.warpAffine INTER_LINEAR, border 0", "color": "rgb",
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "flip": self.flip, "flip_shift_px": FLIP_SHIFT if self.flip else None, "scales": self.scales,
            **{f"decode.{k}": v for k, v in self.cfg.to_dict().items()},
            "oks_nms": False,
            "rescore": rescore_note or ("on" if rescorer is not None else "off"),
        }

    # -- pre-processing -----------------------------------------------------------------------
    def prepare(self, sample: Sample) -> list[Item]:
        import cv2

        rgb = cv2.cvtColor(sample.image, cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        base_size, _, _ = resize_params(h, w, self.input_size, 1.0, self.gears)
        items: list[Item] = []
        for s in self.scales:
            size, center, win = resize_params(h, w, self.input_size, s, self.gears)
            t = normalise(warp_window(rgb, center, win, size))
            meta = {"scale": s, "flip": False, "center": center.tolist(), "window_scale": win.tolist(),
                    "base_size": list(base_size), "input_size": list(size)}
            items.append(Item(t, meta))
            if self.flip:
                items.append(Item(flip_shift(t), {**meta, "flip": True}))
        return items

    # -- post-processing ----------------------------------------------------------------------
    def scale_maps(self, items: Sequence[Item], outputs: Sequence[dict[str, np.ndarray]]) -> list[ScaleMaps]:
        hm_name, off_name = self.names
        by_scale: dict[float, dict[bool, dict[str, np.ndarray]]] = {}
        for it, out in zip(items, outputs):
            by_scale.setdefault(float(it.meta["scale"]), {})[bool(it.meta["flip"])] = out
        maps = []
        for s, runs in by_scale.items():
            plain, flipped = runs[False], runs.get(True)
            maps.append(ScaleMaps(s, _chw(plain[hm_name]), _chw(plain[off_name]),
                                  None if flipped is None else _chw(flipped[hm_name]),
                                  None if flipped is None else _chw(flipped[off_name])))
        return maps

    def finish(self, sample: SampleRef, items: list[Item],
               outputs: list[dict[str, np.ndarray]]) -> dict[str, Any]:
        maps = self.scale_maps(items, outputs)
        # valid.py maps back with the centre/scale of the last (smallest) scale it ran and the
        # scale-1 input size
        last = min(items, key=lambda it: it.meta["scale"]).meta
        result = decode(maps, last["center"], last["window_scale"], last["base_size"], self.cfg, self.rescorer)
        return {"people": to_people(result.poses, result.scores)}


def _chw(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float32)
    return a[0] if a.ndim == 4 else a
