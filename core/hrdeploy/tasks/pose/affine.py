"""The affine maps between image pixels and network input / heatmap pixels, as the official
HRNet pose code (HRNet-Human-Pose-Estimation and DEKR ``lib/utils/transforms.py``) computes them.

A (center, scale) pair describes a square-pixel window of the image: its width is
``scale[0] * 200`` (the official ``pixel_std``), centred on ``center``. ``scale[1]`` is never
read: the output aspect ratio decides the height. There are no half-pixel terms anywhere:
``center`` maps to ``(out_w / 2, out_h / 2)`` exactly.

All functions accept one window (``center`` of shape (2,)) or a batch (shape (N, 2)); the
three point pairs are formed in float32 as the official code does, and the 2x3 matrix is
solved in float64 like ``cv2.getAffineTransform``. Inputs keep their float dtype (float32
in top-down, float64 scales in DEKR) because the official arithmetic does.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

PIXEL_STD = 200.0


def _as_float(a: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(a)
    return arr if np.issubdtype(arr.dtype, np.floating) else arr.astype(np.float64)


def _rotate(points: np.ndarray, rot_rad: np.ndarray) -> np.ndarray:
    """Official ``get_dir``: rotate (x, y) by ``rot_rad`` (per window)."""
    sn, cs = np.sin(rot_rad), np.cos(rot_rad)
    x, y = points[..., 0], points[..., 1]
    return np.stack([x * cs - y * sn, x * sn + y * cs], axis=-1)


def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Official ``get_3rd_point``: ``b`` plus ``a - b`` turned by 90 degrees."""
    d = a - b
    return b + np.stack([-d[..., 1], d[..., 0]], axis=-1)


def _solve_affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Batched ``cv2.getAffineTransform``: (N, 3, 2) float32 point pairs -> (N, 2, 3) float64."""
    a = np.concatenate([src.astype(np.float64), np.ones(src.shape[:-1] + (1,))], axis=-1)
    m = np.linalg.solve(a, dst.astype(np.float64))          # (N, 3, 2): a @ m = dst
    return np.swapaxes(m, -1, -2)


def get_affine_transform(center: Sequence[float] | np.ndarray, scale: Sequence[float] | np.ndarray,
                         rot: float | np.ndarray, out_size: Sequence[float],
                         inv: bool = False,
                         shift: Sequence[float] = (0.0, 0.0)) -> np.ndarray:
    """The 2x3 matrix mapping image pixels into an ``out_size`` = (w, h) window (or back with
    ``inv``). ``center``/``scale`` of shape (2,) give (2, 3); of shape (N, 2) give (N, 2, 3)."""
    # keep the callers' dtypes: top-down passes float32 (center, scale), DEKR integer centers
    # and float64 scales, and the official arithmetic rounds differently for each
    center = _as_float(center)
    single = center.ndim == 1
    center = center.reshape(-1, 2)
    scale = _as_float(scale)
    if scale.ndim == 0:  # the official code accepts a scalar scale
        scale = np.array([scale, scale], scale.dtype)
    scale = np.broadcast_to(scale.reshape(-1, 2), center.shape)
    n = center.shape[0]
    rot_rad = np.broadcast_to(np.pi * np.asarray(rot, np.float64) / 180.0, (n,))
    shift = np.asarray(shift, np.float32)

    scale_tmp = scale * PIXEL_STD
    src_w = scale_tmp[:, 0]
    dst_w, dst_h = float(out_size[0]), float(out_size[1])
    src_dir = _rotate(np.stack([np.zeros(n), src_w * -0.5], axis=-1), rot_rad)
    dst_dir = np.array([0.0, dst_w * -0.5], np.float32)

    src = np.zeros((n, 3, 2), np.float32)
    dst = np.zeros((n, 3, 2), np.float32)
    src[:, 0] = center + scale_tmp * shift
    src[:, 1] = center + src_dir + scale_tmp * shift
    dst[:, 0] = [dst_w * 0.5, dst_h * 0.5]
    dst[:, 1] = np.array([dst_w * 0.5, dst_h * 0.5]) + dst_dir
    src[:, 2] = _third_point(src[:, 0], src[:, 1])
    dst[:, 2] = _third_point(dst[:, 0], dst[:, 1])

    trans = _solve_affine(dst, src) if inv else _solve_affine(src, dst)
    return trans[0] if single else trans


def affine_transform(points: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """Apply 2x3 matrices to points: ``points`` (..., 2) with ``trans`` (2, 3), or (N, ..., 2)
    with one matrix per leading row ``trans`` (N, 2, 3). Returns float64."""
    pts = np.asarray(points, np.float64)
    t = np.asarray(trans, np.float64)
    if t.ndim == 2:
        return pts @ t[:, :2].T + t[:, 2]
    lead = (t.shape[0],) + (1,) * (pts.ndim - 2)
    lin = t[:, :, :2].reshape(lead + (2, 2))
    off = t[:, :, 2].reshape(lead + (2,))
    return np.einsum("...ij,...j->...i", lin, pts) + off


def transform_preds(coords: np.ndarray, center: np.ndarray, scale: np.ndarray,
                    out_size: Sequence[float]) -> np.ndarray:
    """Official ``transform_preds``: coordinates in an ``out_size`` (w, h) map back to image
    pixels. ``coords`` (K, 2) with one center/scale, or (N, K, 2) with (N, 2) each. Only x, y
    (the first two columns) are used; returns float64 (..., 2)."""
    coords = np.asarray(coords)
    trans = get_affine_transform(center, scale, 0, out_size, inv=True)
    return affine_transform(coords[..., :2], trans)


def warp_window(image: np.ndarray, center: np.ndarray, scale: np.ndarray,
                out_size: Sequence[int], rot: float = 0.0) -> np.ndarray:
    """Cut the (center, scale) window out of ``image`` into an ``out_size`` (w, h) array with
    ``cv2.warpAffine`` (bilinear, constant 0 border), as both official pipelines do."""
    import cv2

    trans = get_affine_transform(center, scale, rot, out_size)
    return cv2.warpAffine(image, trans, (int(out_size[0]), int(out_size[1])), flags=cv2.INTER_LINEAR)


__all__ = ["PIXEL_STD", "affine_transform", "get_affine_transform", "transform_preds", "warp_window"]
