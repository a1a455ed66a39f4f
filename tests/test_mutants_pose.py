"""hrdeploy.tasks.pose: the behaviour that mutation testing (tools/mutation.py) found unpinned,
checked against the transcriptions of the official HRNet functions in test_pose_core and values
computed by hand."""
from __future__ import annotations

import cv2
import numpy as np

from hrdeploy.tasks.pose import get_affine_transform, transform_preds, warp_window
from test_pose_core import official_get_affine_transform


def test_affine_shift_matches_the_official_transform() -> None:
    center, scale = np.array([120.0, 90.0], np.float32), np.array([0.8, 1.1], np.float32)
    shift = np.array([0.1, -0.2], np.float32)
    for rot in (0.0, 30.0):
        for inv in (False, True):
            want = official_get_affine_transform(center, scale, rot, [48, 64], shift=shift, inv=int(inv))
            got = get_affine_transform(center, scale, rot, (48, 64), inv=inv, shift=tuple(shift))
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_transform_preds_ignores_the_score_column() -> None:
    center, scale = np.array([50.0, 60.0], np.float32), np.array([0.5, 0.7], np.float32)
    xy = np.array([[3.0, 4.0], [20.25, 31.75]])
    xys = np.concatenate([xy, [[0.9], [0.1]]], axis=1)
    t = official_get_affine_transform(center, scale, 0, [48, 64], inv=1)
    want = xy @ t[:, :2].T + t[:, 2]
    np.testing.assert_allclose(transform_preds(xys, center, scale, (48, 64)), want, rtol=1e-6)


def test_warp_window_does_not_rotate_by_default() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (80, 100, 3), dtype=np.uint8)
    center, scale = np.array([50.0, 40.0], np.float32), np.array([0.3, 0.4], np.float32)
    t = official_get_affine_transform(center, scale, 0, [32, 48])
    want = cv2.warpAffine(image, t, (32, 48), flags=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(warp_window(image, center, scale, (32, 48)), want)
