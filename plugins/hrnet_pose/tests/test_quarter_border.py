"""The quarter-pixel step at the heatmap border.

The official rule (HRNet-Human-Pose-Estimation ``lib/core/inference.py get_final_preds``)::

    px = int(math.floor(coords[n][p][0] + 0.5))
    py = int(math.floor(coords[n][p][1] + 0.5))
    if 1 < px < heatmap_width-1 and 1 < py < heatmap_height-1:
        diff = np.array([hm[py][px+1] - hm[py][px-1], hm[py+1][px]-hm[py-1][px]])
        coords[n][p] += np.sign(diff) * .25

so a joint on column/row 0 or 1 or on the last column/row keeps its argmax position (on both
axes), while column/row 2 and the second-to-last one are refined. The reference fixture's joints
never sit there, so these cases are pinned here by hand.
"""
from __future__ import annotations

import numpy as np
import pytest

from hrdeploy_hrnet_pose.pipeline import decode_heatmaps, refine_quarter

H, W = 64, 48   # the 256x192 heatmap size

# (x, y) of the peak, the side (+1 / -1) of the higher neighbour on each axis, expected (x, y)
CASES = [
    # columns, row 30 inside: the x rule decides, and a border column also freezes y
    ((0, 30), (+1, +1), (0.0, 30.0)),
    ((1, 30), (+1, +1), (1.0, 30.0)),
    ((1, 30), (-1, -1), (1.0, 30.0)),
    ((2, 30), (+1, +1), (2.25, 30.25)),
    ((2, 30), (-1, -1), (1.75, 29.75)),
    ((W - 3, 30), (+1, -1), (45.25, 29.75)),
    ((W - 2, 30), (+1, +1), (46.25, 30.25)),
    ((W - 2, 30), (-1, +1), (45.75, 30.25)),
    ((W - 1, 30), (-1, +1), (47.0, 30.0)),
    # rows, column 20 inside
    ((20, 0), (+1, +1), (20.0, 0.0)),
    ((20, 1), (+1, +1), (20.0, 1.0)),
    ((20, 2), (+1, -1), (20.25, 1.75)),
    ((20, H - 2), (-1, +1), (19.75, 62.25)),
    ((20, H - 2), (+1, -1), (20.25, 61.75)),
    ((20, H - 1), (+1, -1), (20.0, 63.0)),
    # corners
    ((1, 1), (+1, +1), (1.0, 1.0)),
    ((W - 2, H - 2), (-1, -1), (45.75, 61.75)),
]


def heatmap_for(x: int, y: int, side_x: int, side_y: int) -> np.ndarray:
    """Peak 1.0 at (y, x); the neighbour on ``side`` 0.5, the opposite one 0.2 (where they exist)."""
    hm = np.zeros((H, W), np.float32)
    hm[y, x] = 1.0
    for dx, dy, v in ((side_x, 0, 0.5), (-side_x, 0, 0.2), (0, side_y, 0.5), (0, -side_y, 0.2)):
        if 0 <= x + dx < W and 0 <= y + dy < H:
            hm[y + dy, x + dx] = v
    return hm


def test_the_cases_cover_every_border_row_and_column() -> None:
    xs = {c[0][0] for c in CASES}
    ys = {c[0][1] for c in CASES}
    assert {0, 1, 2, W - 2, W - 1} <= xs and {0, 1, 2, H - 2, H - 1} <= ys


def test_border_rows_and_columns_follow_the_official_rule() -> None:
    heatmaps = np.stack([heatmap_for(x, y, sx, sy) for (x, y), (sx, sy), _ in CASES])[None]
    coords, maxvals = decode_heatmaps(heatmaps)
    assert coords.dtype == np.float32 and (maxvals == 1.0).all()
    for k, ((x, y), sides, expected) in enumerate(CASES):
        assert tuple(coords[0, k].tolist()) == expected, f"peak at x={x}, y={y}, higher neighbours {sides}"


def test_without_post_process_the_argmax_is_kept() -> None:
    heatmaps = np.stack([heatmap_for(x, y, sx, sy) for (x, y), (sx, sy), _ in CASES])[None]
    coords, _ = decode_heatmaps(heatmaps, post_process=False)
    assert [tuple(c) for c in coords[0].tolist()] == [(float(x), float(y)) for (x, y), _, _ in CASES]


def official_refine(coords: np.ndarray, heatmaps: np.ndarray) -> np.ndarray:
    """The official loop, transcribed from ``get_final_preds`` (see the module docstring)."""
    out = coords.copy()
    _, _, heatmap_height, heatmap_width = heatmaps.shape
    for n in range(out.shape[0]):
        for p in range(out.shape[1]):
            hm = heatmaps[n][p]
            px = int(np.floor(out[n][p][0] + 0.5))
            py = int(np.floor(out[n][p][1] + 0.5))
            if 1 < px < heatmap_width - 1 and 1 < py < heatmap_height - 1:
                diff = np.array([hm[py][px + 1] - hm[py][px - 1], hm[py + 1][px] - hm[py - 1][px]])
                out[n][p] += np.sign(diff) * .25
    return out


@pytest.mark.parametrize("h, w", [(6, 5), (4, 4), (3, 7)])
def test_every_pixel_of_a_small_map_matches_the_official_loop(h: int, w: int) -> None:
    """A peak on every pixel in turn (random neighbours, ties included) of small maps, where
    most pixels are border pixels."""
    rng = np.random.default_rng(h * 10 + w)
    coords, maps = [], []
    for y in range(h):
        for x in range(w):
            hm = rng.integers(0, 3, (h, w)).astype(np.float32) / 4  # values in {0, .25, .5}: ties too
            hm[y, x] = 1.0
            maps.append(hm)
            coords.append((x, y))
    heatmaps = np.stack(maps)[None]
    c = np.array(coords, np.float32)[None]
    np.testing.assert_array_equal(refine_quarter(c, heatmaps), official_refine(c, heatmaps))
