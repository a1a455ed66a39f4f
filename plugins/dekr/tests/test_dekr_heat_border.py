"""DEKR's one border rule: a proposal joint's heat value is read at
``clamp(floor(coord), 0, size - 1)`` (HRNet/DEKR ``lib/core/inference.py get_heat_value``), so a
joint off the map or on its last row/column reads the edge pixel. The synthetic people of the
other tests rarely leave the map; these cases pin every edge by hand and against the torch
transcription of the official function."""
from __future__ import annotations

import numpy as np
import torch

import dekr_official_ref as official
from hrdeploy_dekr.postprocess import NUM_JOINTS, AveragedHeatmap, DecodeConfig, ScaleMaps, heat_values

H, W = 6, 8
CFG = DecodeConfig()


def identity_heat() -> AveragedHeatmap:
    """Heat value 100 * y + x (+ 1000 * joint) at every pixel. At test scale ``ratio`` (4) the
    upsampling factor ratio / scale is 1, so the averaged heatmap is the map itself."""
    ys, xs = np.mgrid[0:H, 0:W]
    heat = np.stack([100 * ys + xs + 1000 * j for j in range(NUM_JOINTS + 1)]).astype(np.float32)
    return AveragedHeatmap([ScaleMaps(CFG.ratio, heat, np.zeros((2 * NUM_JOINTS, H, W), np.float32))], CFG)


# (x, y) of a joint in input pixels -> the pixel (x, y) whose heat it reads
CASES = [
    ((0.0, 0.0), (0, 0)),
    ((0.99, 1.0), (0, 1)),
    ((-0.01, 2.5), (0, 2)),      # floor(-0.01) = -1, clamped to column 0
    ((-7.3, -0.2), (0, 0)),
    ((1.0, 4.99), (1, 4)),
    ((W - 1.5, H - 1.5), (W - 2, H - 2)),
    ((W - 1.0, H - 1.0), (W - 1, H - 1)),
    ((W - 0.01, 3.0), (W - 1, 3)),
    ((W + 0.0, H + 0.0), (W - 1, H - 1)),
    ((W + 12.7, 2.0), (W - 1, 2)),
    ((3.0, H + 4.0), (3, H - 1)),
    ((5.5, -3.0), (5, 0)),
]


def coords_of_cases() -> np.ndarray:
    """(1, 17, 2): case p on joint p of one proposal (so the channel read is checked too)."""
    assert len(CASES) <= NUM_JOINTS
    coords = np.zeros((1, NUM_JOINTS, 2), np.float32)
    for p, (xy, _) in enumerate(CASES):
        coords[0, p] = xy
    return coords


def test_the_cases_cover_every_edge() -> None:
    pixels = [px for _, px in CASES]
    assert {0, 1, W - 2, W - 1} <= {x for x, _ in pixels} and {0, 1, H - 2, H - 1} <= {y for _, y in pixels}
    assert any(x < 0 for (x, _), _ in CASES) and any(x >= W for (x, _), _ in CASES)
    assert any(y < 0 for (_, y), _ in CASES) and any(y >= H for (_, y), _ in CASES)


def test_heat_values_clamp_to_the_edge_pixel() -> None:
    got = heat_values(coords_of_cases(), identity_heat())
    for p, (xy, (x, y)) in enumerate(CASES):
        assert got[0, p] == 1000 * p + 100 * y + x, f"joint {p} at {xy} should read pixel ({x}, {y})"


def test_heat_values_match_the_official_function_off_and_on_the_border() -> None:
    heat = identity_heat()
    rng = np.random.default_rng(3)
    coords = rng.uniform([-3, -3], [W + 3, H + 3], (40, NUM_JOINTS, 2)).astype(np.float32)
    coords[:, :4] = np.floor(coords[:, :4])            # integer coordinates too: floor is exact there
    want = official.get_heat_value(torch.from_numpy(coords), torch.from_numpy(heat.full()))[..., 0].numpy()
    np.testing.assert_array_equal(heat_values(coords, heat), want)
