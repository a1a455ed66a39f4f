"""Object keypoint similarity and the greedy OKS NMS of HRNet-Human-Pose-Estimation
(``lib/nms/nms.py``: ``oks_iou``, ``oks_nms``), vectorised over the candidates."""
from __future__ import annotations

import numpy as np

#: COCO per-keypoint sigmas (nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles).
COCO_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62,
                        1.07, 1.07, .87, .87, .89, .89]) / 10.0


def oks_iou(g: np.ndarray, d: np.ndarray, a_g: float, a_d: np.ndarray,
            sigmas: np.ndarray | None = None, in_vis_thre: float | None = None) -> np.ndarray:
    """OKS between one pose ``g`` and each pose of ``d``.

    ``g``: (K, 3) or flat (3K,) as (x, y, score); ``d``: (M, K, 3) or (M, 3K); ``a_g``/``a_d``:
    areas. The mean runs over all K joints (no visibility filter) unless ``in_vis_thre`` is
    given; the official filter then keeps the joints whose score in ``d`` exceeds it (its
    ``list(vg > t) and list(vd > t)`` evaluates to the second list).
    """
    sigmas = COCO_SIGMAS if sigmas is None else np.asarray(sigmas)
    variances = (sigmas * 2) ** 2
    g = np.asarray(g).reshape(-1, 3)
    d = np.asarray(d).reshape(len(a_d), g.shape[0], 3)
    dx = d[:, :, 0] - g[None, :, 0]
    dy = d[:, :, 1] - g[None, :, 1]
    area = ((a_g + np.asarray(a_d, np.float64)) / 2 + np.spacing(1))[:, None]
    e = (dx ** 2 + dy ** 2) / variances / area / 2
    if in_vis_thre is None:
        return np.exp(-e).sum(axis=1) / e.shape[1] if e.shape[1] else np.zeros(len(d))
    keep = d[:, :, 2] > in_vis_thre
    count = keep.sum(axis=1)
    total = np.where(keep, np.exp(-e), 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def oks_nms(kpts: np.ndarray, scores: np.ndarray, areas: np.ndarray, thresh: float,
            sigmas: np.ndarray | None = None, in_vis_thre: float | None = None) -> list[int]:
    """Greedy NMS: visit poses by descending score (the official ``argsort()[::-1]``, so ties
    go to the later index) and drop every remaining pose whose OKS with the kept one exceeds
    ``thresh``. Returns the kept indices in keep order."""
    kpts = np.asarray(kpts)
    if len(kpts) == 0:
        return []
    scores = np.asarray(scores)
    areas = np.asarray(areas, np.float64)
    order = scores.argsort()[::-1]
    keep: list[int] = []
    while order.size > 0:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        ovr = oks_iou(kpts[i], kpts[rest], areas[i], areas[rest], sigmas, in_vis_thre)
        order = rest[ovr <= thresh]
    return keep


__all__ = ["COCO_SIGMAS", "oks_iou", "oks_nms"]
