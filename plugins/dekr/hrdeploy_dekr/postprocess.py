"""DEKR post-processing as in the official ``tools/valid.py`` path, in numpy.

The official code averages the flipped outputs over the whole map, builds pose maps for every
pixel and upsamples all 18 heatmaps to input resolution (18 x 512 x 768 floats) before it reads a
few hundred values from them. Here every quantity is evaluated only where it is read: the full
centre map (it is max-pooled), the pose maps at the <= 30 selected centres and the upsampled
joint heatmaps at the <= 30 x 17 proposal joints. The arithmetic per value is the official one
in the same float32 order, so results match the reference to rounding.

Conventions (official): heatmap (18, h, w) with the person centre last; offset (34, h, w) with
(dx, dy) per joint and pose = pixel - offset; the flipped input was mirrored and shifted 3 px
left (never undone).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from hrdeploy.tasks.pose.affine import transform_preds

NUM_JOINTS = 17
#: FLIP_CONFIG['COCO'] and FLIP_CONFIG['COCO_WITH_CENTER'] of the official code
FLIP_INDEX = np.array([0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15])
FLIP_INDEX_WITH_CENTER = np.append(FLIP_INDEX, 17)


@dataclass(frozen=True)
class DecodeConfig:
    """The TEST/DATASET settings of the official COCO yaml (w32 and w48 alike)."""

    input_size: int = 512          # DATASET.INPUT_SIZE (640 for w48)
    output_size: int = 128         # DATASET.OUTPUT_SIZE (160 for w48): the ratio is what matters
    max_people: int = 30           # DATASET.MAX_NUM_PEOPLE
    keypoint_threshold: float = 0.01  # TEST.KEYPOINT_THRESHOLD (centre score)
    pool_threshold1: float = 300   # TEST.POOL_THRESHOLD1
    pool_threshold2: float = 200   # TEST.POOL_THRESHOLD2
    nms_threshold: float = 0.05    # TEST.NMS_THRE
    nms_num_threshold: int = 8     # TEST.NMS_NUM_THRE
    decrease: float = 0.9          # TEST.DECREASE

    @property
    def ratio(self) -> float:
        return self.input_size * 1.0 / self.output_size

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ScaleMaps:
    """The raw network outputs of one test scale (batch axis removed)."""

    scale: float
    heatmap: np.ndarray                  # (18, h, w)
    offset: np.ndarray                   # (34, h, w)
    heatmap_flip: np.ndarray | None = None
    offset_flip: np.ndarray | None = None
    _centre: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.heatmap = np.asarray(self.heatmap, dtype=np.float32)
        self.offset = np.asarray(self.offset, dtype=np.float32)
        if (self.heatmap_flip is None) != (self.offset_flip is None):
            raise ValueError("give both flipped outputs or neither")
        if self.heatmap_flip is not None:
            self.heatmap_flip = np.asarray(self.heatmap_flip, dtype=np.float32)
            self.offset_flip = np.asarray(self.offset_flip, dtype=np.float32)
        if self.heatmap.ndim != 3 or self.heatmap.shape[0] != NUM_JOINTS + 1:
            raise ValueError(f"heatmap must be (18, h, w), got {self.heatmap.shape}")
        if self.offset.shape != (2 * NUM_JOINTS, *self.heatmap.shape[1:]):
            raise ValueError(f"offset must be (34, h, w) like the heatmap, got {self.offset.shape}")
        if self.heatmap_flip is not None and (self.heatmap_flip.shape != self.heatmap.shape
                                              or self.offset_flip.shape != self.offset.shape):
            raise ValueError("the flipped run's outputs must have the shapes of the original run's")

    @property
    def hw(self) -> tuple[int, int]:
        return self.heatmap.shape[1], self.heatmap.shape[2]

    @property
    def flip(self) -> bool:
        return self.heatmap_flip is not None

    def centre_map(self) -> np.ndarray:
        """Flip-averaged person-centre heatmap (h, w) (the centre channel maps to itself)."""
        if self._centre is None:
            c = self.heatmap[-1]
            if self.heatmap_flip is not None:
                c = (c + self.heatmap_flip[-1][:, ::-1]) / 2.0
            self._centre = np.ascontiguousarray(c, dtype=np.float32)
        return self._centre

    def heat_at(self, channels: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """Flip-averaged heatmap values ``heatmap[channels, ys, xs]`` (broadcast arrays)."""
        v = self.heatmap[channels, ys, xs]
        if self.heatmap_flip is not None:
            w = self.hw[1]
            v = (v + self.heatmap_flip[FLIP_INDEX_WITH_CENTER[channels], ys, w - 1 - xs]) / 2.0
        return v

    def pose_at(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """Flip-averaged pose map at map pixels (ys, xs) (1-d): (P, 17, 2) in map pixels."""
        j = np.arange(NUM_JOINTS)[None, :]
        y = ys[:, None]
        x = xs[:, None]
        yf = y.astype(np.float32)
        xf = x.astype(np.float32)
        px = xf - self.offset[2 * j, y, x]
        py = yf - self.offset[2 * j + 1, y, x]
        if self.offset_flip is not None:
            w = self.hw[1]
            xm = w - 1 - x   # the flipped map is read mirrored
            fj = FLIP_INDEX[j]
            fpx = xm.astype(np.float32) - self.offset_flip[2 * fj, y, xm]
            fpy = yf - self.offset_flip[2 * fj + 1, y, xm]
            fpx = (np.float32(w) - fpx) - np.float32(1)
            px = (px + fpx) / 2.0
            py = (py + fpy) / 2.0
        return np.stack([px, py], axis=-1).astype(np.float32, copy=False)


# -- full-map forms (reference semantics; used by tests and for inspection) ------------------
def flip_average_heatmap(maps: ScaleMaps) -> np.ndarray:
    """The official flip-averaged heatmap over the whole map: (18, h, w)."""
    h, w = maps.hw
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    ch = np.arange(NUM_JOINTS + 1)[:, None, None]
    return maps.heat_at(ch, ys[None], xs[None])


def posemap_full(maps: ScaleMaps) -> np.ndarray:
    """The official flip-averaged pose map: (34, h, w), channel 2j = x, 2j+1 = y."""
    h, w = maps.hw
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    p = maps.pose_at(ys.ravel(), xs.ravel())            # (h*w, 17, 2)
    return p.reshape(h, w, 2 * NUM_JOINTS).transpose(2, 0, 1)


def up_interpolate(x: np.ndarray, factor: float) -> np.ndarray:
    """Official ``up_interpolate`` of a (C, h, w) map to (int(factor*h), int(factor*w))."""
    c, h, w = x.shape
    hh, ww = int(factor * h), int(factor * w)
    ys, xs = np.meshgrid(np.arange(hh), np.arange(ww), indexing="ij")
    return _UpSampler(h, w, factor).sample(x, np.arange(c)[:, None, None], ys[None], xs[None])


class _UpSampler:
    """Point evaluation of the official ``up_interpolate``: bilinear with align_corners=True to
    (size - f + 1) then replicate padding of the last f - 1 rows/columns, f = int(size / n)."""

    def __init__(self, h: int, w: int, factor: float) -> None:
        self.h, self.w = h, w
        self.out_h, self.out_w = int(factor * h), int(factor * w)
        self.ry = self._axis(h, self.out_h)
        self.rx = self._axis(w, self.out_w)

    @staticmethod
    def _axis(n_in: int, size: int) -> tuple[int, np.float32]:
        f = int(size / n_in)
        n_interp = size - f + 1
        # torch's float32 ratio (input - 1) / (output - 1) of align_corners=True
        ratio = np.float32(n_in - 1) / np.float32(n_interp - 1) if n_interp > 1 else np.float32(0)
        return n_interp - 1, np.float32(ratio)

    def _weights(self, idx: np.ndarray, axis: tuple[int, np.float32], n_in: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        last, ratio = axis
        src = ratio * np.minimum(idx, last).astype(np.float32)
        i0 = src.astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        l1 = np.clip(src - i0.astype(np.float32), np.float32(0), np.float32(1))
        return i0, i1, np.float32(1) - l1, l1

    def sample(self, maps: Any, ch: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """``maps`` is an array (C, h, w) or a callable (ch, y, x) -> values."""
        get = maps if callable(maps) else (lambda c, y, x: maps[c, y, x])
        y0, y1, wy0, wy1 = self._weights(ys, self.ry, self.h)
        x0, x1, wx0, wx1 = self._weights(xs, self.rx, self.w)
        top = wx0 * get(ch, y0, x0) + wx1 * get(ch, y0, x1)
        bottom = wx0 * get(ch, y1, x0) + wx1 * get(ch, y1, x1)
        return (wy0 * top + wy1 * bottom).astype(np.float32, copy=False)


# -- the steps of valid.py ---------------------------------------------------------------------
def pool_kernel(h: int, w: int, cfg: DecodeConfig) -> int:
    """Centre NMS kernel by map size (``hierarchical_pool``)."""
    size = (h + w) / 2.0
    if size > cfg.pool_threshold1:
        return 7
    if size > cfg.pool_threshold2:
        return 5
    return 3


def max_pool_same(x: np.ndarray, k: int) -> np.ndarray:
    """MaxPool2d(k, stride 1, padding k//2) of a 2-d float32 map: a k x k grey dilation whose
    border never wins (OpenCV's default dilation border, like the pool's -inf padding)."""
    import cv2

    return cv2.dilate(np.ascontiguousarray(x, dtype=np.float32), np.ones((k, k), np.uint8))


def top_centres(maps: ScaleMaps, cfg: DecodeConfig) -> tuple[np.ndarray, np.ndarray]:
    """``get_maximum_from_heatmap``: flat indices and scores of the centre peaks, best first."""
    centre = maps.centre_map()
    h, w = centre.shape
    peaks = centre * (max_pool_same(centre, pool_kernel(h, w, cfg)) == centre)
    flat = peaks.ravel()
    k = min(cfg.max_people, flat.size)
    # top-k, ties broken by position (torch.topk leaves them unspecified)
    cand = np.argpartition(-flat, k - 1)[:k] if k < flat.size else np.arange(flat.size)
    kth = flat[cand].min()
    cand = np.flatnonzero(flat >= kth)
    order = cand[np.lexsort((cand, -flat[cand]))][:k]
    scores = flat[order]
    keep = scores > cfg.keypoint_threshold
    return order[keep], scores[keep]


def scale_proposals(maps: ScaleMaps, cfg: DecodeConfig) -> np.ndarray:
    """``aggregate_results`` (proposal part): (P, 17, 3) = input-px pose + centre score."""
    ind, score = top_centres(maps, cfg)
    w = maps.hw[1]
    pose = maps.pose_at(ind // w, ind % w)
    pose = pose * np.float32(cfg.ratio / maps.scale)
    ctr = np.broadcast_to(score.astype(np.float32)[:, None, None], (len(ind), NUM_JOINTS, 1))
    return np.concatenate([pose, ctr], axis=2)


class AveragedHeatmap:
    """``heatmap_avg`` = mean over scales of the upsampled flip-averaged heatmaps, evaluated
    on demand at integer pixels of the (scale-1) input resolution."""

    def __init__(self, scales: Sequence[ScaleMaps], cfg: DecodeConfig) -> None:
        self.parts = [(m, _UpSampler(*m.hw, cfg.ratio / m.scale)) for m in scales]
        self.n = len(scales)
        first = self.parts[0][1]
        self.shape = (first.out_h, first.out_w)

    def at(self, ch: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        total: Any = 0
        for maps, up in self.parts:
            total = total + up.sample(maps.heat_at, ch, ys, xs)
        return (total / np.float32(self.n)).astype(np.float32, copy=False)

    def full(self) -> np.ndarray:
        h, w = self.shape
        ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        return self.at(np.arange(NUM_JOINTS + 1)[:, None, None], ys[None], xs[None])


def heat_values(coords: np.ndarray, heat: AveragedHeatmap) -> np.ndarray:
    """``get_heat_value``: heatmap_avg[j, floor(y), floor(x)] (clamped) for (P, 17, 2)."""
    h, w = heat.shape
    y = np.clip(np.floor(coords[..., 1]), 0, h - 1).astype(np.int64)
    x = np.clip(np.floor(coords[..., 0]), 0, w - 1).astype(np.int64)
    ch = np.broadcast_to(np.arange(NUM_JOINTS)[None, :], y.shape)
    return heat.at(ch, y, x)


def nms_core(coords: np.ndarray, heat_score: np.ndarray, cfg: DecodeConfig) -> list[int]:
    """The official greedy pose NMS: two poses are the same person when more than
    ``nms_num_threshold`` joints are closer than ``nms_threshold * sqrt(area)``."""
    ext = coords.max(axis=1) - coords.min(axis=1)                  # (P, 2)
    area = ext[:, 0] * ext[:, 0] + ext[:, 1] * ext[:, 1]
    diff = coords[:, None, :, :] - coords[None, :, :, :]
    dist = np.sqrt((diff * diff).sum(axis=3))                      # (P, P, 17)
    thre = np.float32(cfg.nms_threshold) * np.sqrt(area)
    same = (dist < thre[:, None, None]).sum(axis=2) > cfg.nms_num_threshold
    ignored: set[int] = set()
    keep: list[int] = []
    for i in range(len(coords)):
        if i in ignored:
            continue
        group = np.flatnonzero(same[i])
        if group.size == 0:       # degenerate pose (all joints on one point): a group of its own
            group = np.array([i])
        best = int(group[np.argmax(heat_score[group])])
        if best in ignored:
            continue
        keep.append(best)
        ignored.update(int(g) for g in group)
    return keep


@dataclass
class NmsResult:
    poses: np.ndarray          # (K, 17, 3) input px; score = centre score * heat value
    scores: np.ndarray         # (K,) mean joint score
    heatval: np.ndarray        # (P, 17) heat values of all proposals (before NMS)


def pose_nms(proposals: Sequence[np.ndarray], heat: AveragedHeatmap, scale_factors: Sequence[float],
             cfg: DecodeConfig) -> NmsResult:
    """``pose_nms``: proposals per scale (scales in descending order, like valid.py)."""
    proposals = [p.copy() for p in proposals]
    s1 = list(scale_factors).index(1.0)
    norm = proposals[s1]
    max_score = norm[:, :, 2].max() if norm.shape[0] else 1
    for i, p in enumerate(proposals):
        if i != s1:
            max_scale = p[:, :, 2].max() if p.shape[0] else 1
            p[:, :, 2] = p[:, :, 2] / max_scale * max_score * cfg.decrease
    allp = np.concatenate(proposals, axis=0)
    if allp.shape[0] == 0:
        return NmsResult(np.zeros((0, NUM_JOINTS, 3), np.float32), np.zeros(0, np.float32),
                         np.zeros((0, NUM_JOINTS), np.float32))
    coords = allp[:, :, :2]
    heatval = heat_values(coords, heat)
    heat_score = heatval.sum(axis=1) / np.float32(NUM_JOINTS)
    poses = np.concatenate([coords, allp[:, :, 2:] * heatval[:, :, None]], axis=2)
    keep = nms_core(coords, heat_score, cfg)
    poses = poses[keep]
    heat_score = heat_score[keep]
    if len(keep) > cfg.max_people:
        top = np.argsort(-heat_score, kind="stable")[:cfg.max_people]
        poses = poses[top]
    scores = poses[:, :, 2].mean(axis=1)
    return NmsResult(poses.astype(np.float32), scores.astype(np.float32), heatval)


def final_preds(poses: np.ndarray, center: Sequence[float], scale: Sequence[float],
               base_size: Sequence[int]) -> np.ndarray:
    """``get_final_preds``: input-px poses (K, 17, 3) back to image px (scores untouched)."""
    out = np.array(poses, copy=True)
    if len(out):
        out[..., :2] = transform_preds(out[..., :2], np.asarray(center, np.float64),
                                       np.asarray(scale, np.float64), base_size)
    return out


@dataclass
class Decoded:
    """Everything the decoder found for one image (image-pixel poses, best first as kept)."""

    poses: np.ndarray              # (K, 17, 3) image px, score = centre score * heat value
    scores: np.ndarray             # (K,) final scores (rescored if a net was given)
    pose_scores: np.ndarray        # (K,) before rescoring
    proposals: list[np.ndarray]    # per scale (descending), input px
    nms: NmsResult


def decode(scales: Sequence[ScaleMaps], center: Sequence[float], scale_resized: Sequence[float],
           base_size: Sequence[int], cfg: DecodeConfig, rescorer: Any = None) -> Decoded:
    """The whole official path after the network: proposals at every scale, pose NMS, back to
    image pixels, rescoring. ``scales`` are sorted here in descending order like valid.py."""
    scales = sorted(scales, key=lambda m: -m.scale)
    factors = [m.scale for m in scales]
    if 1.0 not in factors:
        raise ValueError("the test scales must include 1")
    proposals = [scale_proposals(m, cfg) for m in scales]
    heat = AveragedHeatmap(scales, cfg)
    nms = pose_nms(proposals, heat, factors, cfg)
    poses = final_preds(nms.poses, center, scale_resized, base_size)
    scores = nms.scores
    if rescorer is not None and len(poses):
        scores = rescorer.rescore(poses, scores)
    return Decoded(poses, np.asarray(scores, np.float32), nms.scores, proposals, nms)


def to_people(poses: np.ndarray, scores: np.ndarray) -> list[dict[str, Any]]:
    """The shared pose JSON: keypoints [x, y, score] x 17, score, box from the keypoint extent
    (as the official results writer does)."""
    people = []
    for kp, s in zip(np.asarray(poses, np.float64), np.asarray(scores, np.float64)):
        lo, hi = kp[:, :2].min(axis=0), kp[:, :2].max(axis=0)
        people.append({"keypoints": kp.tolist(), "score": float(s),
                       "box": [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])]})
    return people
