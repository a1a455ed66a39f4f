"""DEKR post-processing: the behaviour mutation testing (tools/mutation.py) found unpinned, checked
against the torch transcription of the official functions (dekr_official_ref) on inputs made to
sit at their thresholds, and against the official COCO test configuration (models-pose.md 5.2)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import dekr_official_ref as official
from hrdeploy_dekr.postprocess import (FLIP_INDEX, FLIP_INDEX_WITH_CENTER, AveragedHeatmap, DecodeConfig, ScaleMaps,
                                       decode, final_preds, max_pool_same, nms_core, pool_kernel, pose_nms,
                                       top_centres, up_interpolate)

CFG = DecodeConfig()


def test_decode_config_is_the_official_coco_test_configuration() -> None:
    c = official.Cfg
    assert (CFG.input_size, CFG.output_size, CFG.max_people, CFG.keypoint_threshold) == \
        (c.INPUT_SIZE, c.OUTPUT_SIZE, c.MAX_NUM_PEOPLE, c.KEYPOINT_THRESHOLD) == (512, 128, 30, 0.01)
    assert (CFG.pool_threshold1, CFG.pool_threshold2, CFG.nms_threshold, CFG.nms_num_threshold, CFG.decrease) == \
        (c.POOL_THRESHOLD1, c.POOL_THRESHOLD2, c.NMS_THRE, c.NMS_NUM_THRE, c.DECREASE) == (300, 200, 0.05, 8, 0.9)
    assert CFG.ratio == 4.0
    assert FLIP_INDEX.tolist() == official.FLIP_COCO
    assert FLIP_INDEX_WITH_CENTER.tolist() == official.FLIP_COCO_WITH_CENTER


@pytest.mark.parametrize("hw", [(200, 200), (200, 201), (300, 300), (301, 300), (40, 20)])
def test_the_centre_pool_kernel_switches_where_hierarchical_pool_does(hw: tuple[int, int]) -> None:
    x = np.random.default_rng(hw[0] + hw[1]).random(hw, dtype=np.float32)
    want = official.hierarchical_pool(official.Cfg, torch.from_numpy(x)[None])[0, 0].numpy()
    np.testing.assert_array_equal(max_pool_same(x, pool_kernel(*hw, CFG)), want)


def _maps(centre: np.ndarray) -> ScaleMaps:
    h, w = centre.shape
    heat = np.zeros((18, h, w), np.float32)
    heat[17] = centre
    return ScaleMaps(1.0, heat, np.zeros((34, h, w), np.float32))


def test_top_centres_keep_at_most_30_peaks_strictly_above_the_threshold() -> None:
    rng = np.random.default_rng(5)
    centre = np.zeros((64, 96), np.float32)
    ys, xs = np.meshgrid(np.arange(2, 64, 4), np.arange(2, 96, 4), indexing="ij")   # 384 isolated peaks
    centre[ys, xs] = rng.permutation(np.linspace(0.001, 0.9, ys.size)).reshape(ys.shape).astype(np.float32)
    ind, score = top_centres(_maps(centre), CFG)
    t = torch.from_numpy(centre)[None]
    want_ind, want_score = official.get_maximum_from_heatmap(official.Cfg, t)
    assert ind.tolist() == want_ind.tolist() and len(ind) == 30
    np.testing.assert_array_equal(score, want_score.numpy())
    # few peaks, one exactly at the threshold: only those above it
    few = np.zeros((32, 32), np.float32)
    few[5, 5], few[20, 20], few[10, 25] = 0.5, np.float32(0.01), 0.02
    ind, score = top_centres(_maps(few), CFG)
    assert ind.tolist() == [5 * 32 + 5, 10 * 32 + 25]
    want_ind, _ = official.get_maximum_from_heatmap(official.Cfg, torch.from_numpy(few)[None])
    assert ind.tolist() == want_ind.tolist()


def _person(rng: np.random.Generator, centre: np.ndarray, spread: float = 10.0) -> np.ndarray:
    return (centre + rng.uniform(-spread, spread, (17, 2))).astype(np.float32)


def test_nms_merges_poses_with_more_than_8_close_joints_as_the_official_code() -> None:
    rng = np.random.default_rng(6)
    base = _person(rng, np.array([50.0, 50.0]))
    poses = [base]
    for close in (8, 9, 12):           # a copy with `close` joints 0.1 px away, the others 40 px away
        p = base.copy()
        p[close:] += 40.0
        p[:close] += 0.1
        poses.append(p)
    coords = np.stack(poses)
    heat = np.array([0.5, 0.9, 0.4, 0.6], np.float32)
    want = official.nms_core(official.Cfg, torch.from_numpy(coords), torch.from_numpy(heat))
    assert nms_core(coords, heat, CFG) == want


def test_pose_nms_keeps_the_30_best_heat_scores_and_rescales_the_other_scales() -> None:
    """ratio 1 (input size = output size), so the averaged heatmap is the map itself."""
    rng = np.random.default_rng(7)
    cfg = DecodeConfig(input_size=128, output_size=128)
    h, w = 96, 128
    heat = rng.random((18, h, w), dtype=np.float32)
    maps = ScaleMaps(1.0, heat, np.zeros((34, h, w), np.float32))
    centres = np.stack(np.meshgrid(np.linspace(8, 120, 7), np.linspace(8, 88, 5)), -1).reshape(-1, 2)   # 35
    coords = np.stack([_person(rng, c, 4.0) for c in centres])
    props = [np.concatenate([coords[20:] * 2, rng.uniform(0.2, 0.6, (15, 17, 1)).astype(np.float32)], 2),
             np.concatenate([coords, rng.uniform(0.1, 0.9, (35, 17, 1)).astype(np.float32)], 2)]
    props[0][..., :2] = np.clip(props[0][..., :2], 0, 127) / 2 + 0.3    # the scale-2 proposals: near copies
    got = pose_nms(props, AveragedHeatmap([maps], cfg), [2.0, 1.0], cfg)
    want_poses, want_scores = official.pose_nms(official.Cfg([2.0, 1.0]), torch.from_numpy(heat)[None],
                                                [torch.from_numpy(p.copy()) for p in props])
    assert len(got.poses) == 30
    np.testing.assert_allclose(got.poses, want_poses[0], rtol=1e-6)
    np.testing.assert_allclose(got.scores, np.array(want_scores), rtol=1e-6)


def test_scale_maps_check_their_shapes() -> None:
    hm, off = np.zeros((18, 8, 8), np.float32), np.zeros((34, 8, 8), np.float32)
    with pytest.raises(ValueError, match="both flipped outputs or neither"):
        ScaleMaps(1.0, hm, off, hm)
    with pytest.raises(ValueError, match=r"heatmap must be \(18, h, w\)"):
        ScaleMaps(1.0, hm[:17], off)
    with pytest.raises(ValueError, match=r"heatmap must be \(18, h, w\)"):
        ScaleMaps(1.0, hm[0], off)
    with pytest.raises(ValueError, match=r"offset must be \(34, h, w\)"):
        ScaleMaps(1.0, hm, off[:, :7])
    with pytest.raises(ValueError, match="shapes of the original run's"):
        ScaleMaps(1.0, hm, off, hm[:, :7], off)
    with pytest.raises(ValueError, match="shapes of the original run's"):
        ScaleMaps(1.0, hm, off, hm, off[:, :7])
    assert ScaleMaps(1.0, hm, off, hm, off).flip and not ScaleMaps(1.0, hm, off).flip


def test_decode_needs_scale_1_and_final_preds_keep_no_people() -> None:
    maps = ScaleMaps(2.0, np.zeros((18, 8, 8), np.float32), np.zeros((34, 8, 8), np.float32))
    with pytest.raises(ValueError, match="must include 1"):
        decode([maps], [10, 10], [1.0, 1.0], (32, 32), CFG)
    empty = np.zeros((0, 17, 3), np.float32)
    assert final_preds(empty, [10, 10], [1.0, 1.0], (32, 32)).shape == (0, 17, 3)


@pytest.mark.parametrize("shape, factor", [((2, 2, 3), 1.0), ((2, 3, 2), 1.0), ((1, 2, 2), 2.0)])
def test_up_interpolate_of_two_pixel_axes_matches_official(shape: tuple[int, int, int], factor: float) -> None:
    x = np.random.default_rng(11).random(shape, dtype=np.float32)
    size = (int(factor * shape[1]), int(factor * shape[2]))
    want = official.up_interpolate(torch.from_numpy(x)[None], size)[0].numpy()
    np.testing.assert_allclose(up_interpolate(x, factor), want, rtol=0, atol=1e-6)
