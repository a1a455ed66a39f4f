"""The ImageNet preprocessing (short-side resize with Pillow's antialiased bilinear filter,
centre crop, normalisation) computed for the crop only, byte-identical to the reference.

The reference (:func:`hrdeploy.tasks.classification.preprocess_image`) lets Pillow resize the
whole image (500x375 -> 341x256), then crops 224x224 and normalises in numpy: a third of the
resampled pixels are thrown away and the image is copied four times. Here Pillow's own
algorithm (libImaging/Resample.c: ``precompute_coeffs``, ``normalize_coeffs_8bpc``, a
horizontal pass into uint8 rows, then a vertical pass, both in 22-bit fixed point) is run
with the coefficients of the *full* resize but only for the output rows and columns of the
crop, so every kept pixel is computed by exactly the same integer sums; the normalisation is a
per-channel lookup table built with the reference's own float32 operations, written straight
into the CHW tensor. Compiled with numba (``pip install 'hrdeploy[fast]'``); without it
:func:`available` is False and the reference path runs.

Byte identity is checked by tests/test_host_pipeline.py against the reference on many image
sizes (both directions, odd sizes, upscaling, crops at the border).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

PRECISION_BITS = 32 - 8 - 2  # Pillow's fixed point for 8-bit images

try:  # optional: the `fast` extra
    import numba as _numba
except ImportError:  # pragma: no cover - exercised in venvs without the extra
    _numba = None


def available() -> bool:
    """True when the compiled kernel can run here (numba importable)."""
    return _numba is not None


def _jit(func: Callable[..., Any]) -> Callable[..., Any]:
    # nogil: the eval's decode threads run it in parallel; cache: compiled once per machine
    return _numba.njit(cache=True, nogil=True)(func) if _numba is not None else func


@_jit
def _coeffs(in_size: int, out_size: int, first: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's bilinear ``precompute_coeffs`` + ``normalize_coeffs_8bpc`` for the full
    ``in_size -> out_size`` resize, kept for the outputs ``first .. first + count - 1``:
    (bounds (count, 2) = first input index and tap count, int32 fixed-point weights)."""
    scale = in_size / out_size
    filterscale = scale if scale >= 1.0 else 1.0
    support = 1.0 * filterscale  # the bilinear filter's support is 1
    ksize = int(math.ceil(support)) * 2 + 1
    bounds = np.zeros((count, 2), np.int64)
    kk = np.zeros((count, ksize), np.int64)
    w = np.zeros(ksize, np.float64)
    ss = 1.0 / filterscale
    for i in range(count):
        xx = first + i
        center = (xx + 0.5) * scale  # Pillow: in0 + (xx + 0.5) * scale with in0 = 0
        ww = 0.0
        xmin = int(center - support + 0.5)  # C's (int): truncation, as Python's int()
        if xmin < 0:
            xmin = 0
        xmax = int(center + support + 0.5)
        if xmax > in_size:
            xmax = in_size
        xmax -= xmin
        for x in range(xmax):
            t = (x + xmin - center + 0.5) * ss
            if t < 0.0:
                t = -t
            w[x] = 1.0 - t if t < 1.0 else 0.0
            ww += w[x]
        for x in range(xmax):
            v = w[x] / ww if ww != 0.0 else w[x]
            if v < 0:
                kk[i, x] = int(-0.5 + v * (1 << PRECISION_BITS))
            else:
                kk[i, x] = int(0.5 + v * (1 << PRECISION_BITS))
        bounds[i, 0] = xmin
        bounds[i, 1] = xmax
    return bounds, kk


@_jit
def _clip8(s: int) -> int:
    if s >= (1 << PRECISION_BITS) << 8:
        return 255
    if s <= 0:
        return 0
    return s >> PRECISION_BITS


@_jit
def _horizontal(src: np.ndarray, y0: int, y1: int, hb: np.ndarray, hk: np.ndarray, x0: int) -> np.ndarray:
    """Rows ``y0 .. y1 - 1`` of ``src`` (H, W, 3) resampled horizontally: output column ``i``
    sums the taps ``hb[i]`` (indices relative to ``x0``) with the weights ``hk[i]``."""
    half = 1 << (PRECISION_BITS - 1)
    cols = hb.shape[0]
    dst = np.empty((y1 - y0, cols, 3), np.uint8)
    for y in range(y0, y1):
        row = src[y]
        drow = dst[y - y0]
        for i in range(cols):
            xmin = hb[i, 0] - x0
            n = hb[i, 1]
            s0 = half
            s1 = half
            s2 = half
            for t in range(n):
                k = hk[i, t]
                s0 += np.int64(row[xmin + t, 0]) * k
                s1 += np.int64(row[xmin + t, 1]) * k
                s2 += np.int64(row[xmin + t, 2]) * k
            drow[i, 0] = _clip8(s0)
            drow[i, 1] = _clip8(s1)
            drow[i, 2] = _clip8(s2)
    return dst


@_jit
def _vertical(src: np.ndarray, x0: int, x1: int, vb: np.ndarray, vk: np.ndarray, y0: int) -> np.ndarray:
    """Columns ``x0 .. x1 - 1`` of ``src`` (H, W, 3) resampled vertically: output row ``j``
    sums the rows ``vb[j]`` (relative to ``y0``) with the weights ``vk[j]``, over contiguous
    runs of (x1 - x0) * 3 values (the loop the compiler vectorises)."""
    half = 1 << (PRECISION_BITS - 1)
    rows = vb.shape[0]
    width = (x1 - x0) * 3
    dst = np.empty((rows, x1 - x0, 3), np.uint8)
    flat = dst.reshape((rows, width))
    acc = np.empty(width, np.int64)
    for j in range(rows):
        ymin = vb[j, 0] - y0
        n = vb[j, 1]
        for q in range(width):
            acc[q] = half
        for t in range(n):
            k = vk[j, t]
            line = src[ymin + t, x0:x1].reshape(width)
            for q in range(width):
                acc[q] += np.int64(line[q]) * k
        for q in range(width):
            flat[j, q] = _clip8(acc[q])
    return dst


@_jit
def _span(bounds: np.ndarray) -> tuple[int, int]:
    """The input indices a set of outputs reads: [first, last)."""
    lo = bounds[0, 0]
    hi = lo
    for j in range(bounds.shape[0]):
        if bounds[j, 0] < lo:
            lo = bounds[j, 0]
        if bounds[j, 0] + bounds[j, 1] > hi:
            hi = bounds[j, 0] + bounds[j, 1]
    return lo, hi


@_jit
def _normalise_into(crop: np.ndarray, transposed: bool, lut: np.ndarray, src: np.ndarray, out: np.ndarray) -> None:
    """``out[c, y, x] = lut[c, crop[y, x, src[c]]]`` (``crop[x, y, ...]`` when ``transposed``):
    the CHW float32 tensor by table lookup."""
    for c in range(3):
        s = src[c]
        lc = lut[c]
        if transposed:
            for x in range(crop.shape[0]):
                col = crop[x]
                for y in range(crop.shape[1]):
                    out[c, y, x] = lc[col[y, s]]
        else:
            for y in range(crop.shape[0]):
                row = crop[y]
                oc = out[c, y]
                for x in range(crop.shape[1]):
                    oc[x] = lc[row[x, s]]


def normalise_table(scale: float, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(3, 256) float32: each channel's normalised value of every uint8 level, computed with
    the reference's operations (:func:`hrdeploy.tasks.classification.normalise`: a float32
    multiply, then a float32 add), so a lookup gives its exact bytes."""
    mul = (np.float32(scale) / np.asarray(std, np.float32))[:, None]
    add = -(np.asarray(mean, np.float32) / np.asarray(std, np.float32))[:, None]
    levels = np.broadcast_to(np.arange(256, dtype=np.uint8), (3, 256))
    out = np.empty((3, 256), np.float32)
    np.multiply(levels, mul, out=out)
    out += add
    return out


_TABLES: dict[tuple[float, tuple[float, ...], tuple[float, ...]], np.ndarray] = {}
#: per (h, w, new_h, new_w): True/False = this Pillow runs the vertical pass first or not
#: (Pillow 13 chooses per geometry), None = not reproduced here: the reference path runs
_ORDER: dict[tuple[int, int, int, int], bool | None] = {}
_ORDER_LIMIT = 65536


def _geometry(h: int, w: int, short: int, crop: int) -> tuple[int, int, int, int]:
    """(new_h, new_w, top, left) exactly as ``resize_short_crop`` computes them."""
    if w <= h:
        new_w, new_h = short, int(short * h / w)
    else:
        new_h, new_w = short, int(short * w / h)
    return new_h, new_w, int(round((new_h - crop) / 2.0)), int(round((new_w - crop) / 2.0))


def _crop(img: np.ndarray, new_h: int, new_w: int, top: int, left: int, crop: int,
          vertical_first: bool) -> tuple[np.ndarray, bool]:
    """The crop of Pillow's two-pass resize of ``img`` and whether it is returned transposed
    (W, H, 3). Both passes run as :func:`_vertical` (contiguous rows, vectorised): the
    horizontal one on the image transposed by OpenCV (an exact copy), which is several times
    faster than gathering taps along a row."""
    import cv2

    h, w = img.shape[:2]
    hb, hk = _coeffs(w, new_w, left, crop)
    vb, vk = _coeffs(h, new_h, top, crop)
    need_h, need_v = new_w != w, new_h != h  # Pillow skips a pass whose size does not change
    if need_h and need_v and vertical_first:
        x0, x1 = _span(hb)
        mid = _vertical(img, x0, x1, vb, vk, 0)                       # (crop, x1 - x0, 3)
        return _vertical(cv2.transpose(mid), 0, crop, hb, hk, x0), True  # (crop_w, crop_h, 3)
    if need_h:
        y0, y1 = _span(vb) if need_v else (top, top + crop)
        x0, x1 = _span(hb)
        across = _vertical(cv2.transpose(img[y0:y1, x0:x1]), 0, y1 - y0, hb, hk, x0)  # (crop_w, rows, 3)
        if not need_v:
            return across, True
        return _vertical(cv2.transpose(across), 0, crop, vb, vk, y0), False
    if need_v:
        return _vertical(img, left, left + crop, vb, vk, 0), False
    return img[top:top + crop, left:left + crop], False


def _upright(crop: np.ndarray, transposed: bool) -> np.ndarray:
    return crop.transpose(1, 0, 2) if transposed else crop


def pass_order(h: int, w: int, new_h: int, new_w: int, top: int, left: int, crop: int) -> bool | None:
    """Which pass the installed Pillow runs first for this geometry, found once by resizing a
    random image of this size with Pillow itself and comparing the crop both orders give: True
    (vertical first), False (horizontal first), or None when neither order reproduces Pillow's
    bytes (then the caller uses Pillow). Pillow up to 12 always runs the horizontal pass first;
    13 chooses per geometry, by a rule of its own this probe does not need to know."""
    key = (h, w, new_h, new_w)
    if key in _ORDER:
        return _ORDER[key]
    from PIL import Image

    found: bool | None = None
    for seed in range(3):  # a random image tells the orders apart unless they agree everywhere
        probe = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
        want = np.asarray(Image.fromarray(probe).resize((new_w, new_h), Image.BILINEAR))[top:top + crop, left:left + crop]
        hv = np.array_equal(_upright(*_crop(probe, new_h, new_w, top, left, crop, False)), want)
        vh = np.array_equal(_upright(*_crop(probe, new_h, new_w, top, left, crop, True)), want)
        if hv != vh:
            found = vh
            break
        if not hv:  # neither: not Pillow's algorithm for this geometry
            found = None
            break
        found = False  # both agree on this image: try another before trusting either
    if len(_ORDER) >= _ORDER_LIMIT:
        _ORDER.clear()
    _ORDER[key] = found
    return found


def resize_crop_normalise(bgr: np.ndarray, short: int, crop: int, scale: float, mean: Sequence[float],
                          std: Sequence[float], reverse_channels: bool) -> np.ndarray | None:
    """What ``normalise(resize_short_crop(bgr, short, crop, "pil-bilinear"), ...)`` returns,
    byte for byte (float32 CHW), computing only the crop; None when this geometry is not one
    reproduced exactly here (see :func:`pass_order`) and the reference must run. The caller
    checks the sizes (``resize_short_crop`` refuses a crop larger than the resized image)."""
    img = np.ascontiguousarray(bgr)
    h, w = img.shape[:2]
    new_h, new_w, top, left = _geometry(h, w, short, crop)
    order = pass_order(h, w, new_h, new_w, top, left, crop) if (new_h != h and new_w != w) else False
    if order is None:
        return None
    key = (float(scale), tuple(float(m) for m in mean), tuple(float(s) for s in std))
    lut = _TABLES.get(key)
    if lut is None:
        lut = _TABLES[key] = normalise_table(scale, mean, std)
    cropped, transposed = _crop(img, new_h, new_w, top, left, crop, order)
    out = np.empty((3, crop, crop), np.float32)
    _normalise_into(cropped, transposed, lut, np.array([2, 1, 0] if reverse_channels else [0, 1, 2], np.int64), out)
    return out


def warm() -> None:
    """Load the compiled kernels now (from numba's cache: about a second, more the first time
    on a machine), so that the first images of a run are not the ones that pay for it."""
    if available():
        resize_crop_normalise(np.zeros((300, 400, 3), np.uint8), 256, 224, 1 / 255, (0.5,) * 3, (0.25,) * 3, True)
