"""Synthetic DEKR network outputs for tests: people with Gaussian centres and joints, offsets
pointing at each person's joints from its Voronoi cell, and the matching outputs of the
mirrored image (with a little noise so that the flip average is not trivial)."""
from __future__ import annotations

import numpy as np

FLIP = np.array([0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15])


def random_people(n: int, width: float, height: float, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """``n`` people in input pixels: (centre (2,), joints (17, 2), centre score)."""
    people = []
    for _ in range(n):
        size = rng.uniform(60, 200)
        c = np.array([rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height])
        joints = c + rng.normal(0, size / 4, (17, 2))
        people.append((c, joints, float(rng.uniform(0.2, 0.95))))
    return people


def _maps(people, h: int, w: int, stride: float, rng: np.random.Generator, noise: float) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    heat = np.zeros((18, h, w))
    offset = np.zeros((34, h, w))
    owner = np.full((h, w), -1)
    best = np.full((h, w), np.inf)
    for n, (c, joints, score) in enumerate(people):
        cm = c / stride
        d2 = (xx - cm[0]) ** 2 + (yy - cm[1]) ** 2
        heat[17] = np.maximum(heat[17], score * np.exp(-d2 / (2 * 4.0 ** 2)))
        closer = d2 < best
        best[closer], owner[closer] = d2[closer], n
        for j, p in enumerate(joints / stride):
            heat[j] = np.maximum(heat[j], np.exp(-((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / (2 * 2.0 ** 2)))
    for n, (_, joints, _) in enumerate(people):
        mine = owner == n
        for j, p in enumerate(joints / stride):
            offset[2 * j][mine] = xx[mine] - p[0]
            offset[2 * j + 1][mine] = yy[mine] - p[1]
    heat += rng.normal(0, noise, heat.shape) * 0.01
    offset += rng.normal(0, noise, offset.shape)
    return heat.astype(np.float32), offset.astype(np.float32)


def scale_outputs(people, in_w: int, in_h: int, scale: float, rng: np.random.Generator,
                  noise: float = 0.1) -> tuple[np.ndarray, ...]:
    """(heatmap, offset, heatmap_flip, offset_flip) at one test scale, each (C, h, w).
    ``people`` are in scale-1 input pixels; the input at this scale is in_w*scale x in_h*scale."""
    w, h = int(in_w * scale) // 4, int(in_h * scale) // 4
    stride = 4.0 / scale
    hm, off = _maps(people, h, w, stride, rng, noise)
    width = in_w * scale
    mirrored = []
    for c, joints, score in people:
        mc = np.array([width / scale - 1 - c[0], c[1]])
        mj = joints[FLIP].copy()
        mj[:, 0] = width / scale - 1 - mj[:, 0]
        mirrored.append((mc, mj, score))
    hm_f, off_f = _maps(mirrored, h, w, stride, rng, noise)
    return hm, off, hm_f, off_f
