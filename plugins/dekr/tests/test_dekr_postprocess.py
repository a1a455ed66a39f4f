"""The numpy post-processing against the recorded official run and a torch transcription of the
official functions (multi-scale, pooling and upsampling details)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import dekr_official_ref as official
from dekr_maps import random_people, scale_outputs
from hrdeploy_dekr.postprocess import (AveragedHeatmap, DecodeConfig, ScaleMaps, decode, flip_average_heatmap,
                                       max_pool_same, nms_core, posemap_full, scale_proposals, to_people,
                                       up_interpolate)
from hrdeploy_dekr.rescore import Rescorer, rescore_features

CFG = DecodeConfig()


@pytest.fixture(scope="module")
def rescorer(rescore_state) -> Rescorer:
    return Rescorer({k: v.numpy() for k, v in rescore_state.items()})


@pytest.fixture(scope="module")
def public(ref_post) -> ScaleMaps:
    z = ref_post
    return ScaleMaps(1.0, z["s1_heatmap"][0], z["s1_offset"][0], z["s1_heatmap_flip"][0], z["s1_offset_flip"][0])


def test_flip_aggregation_matches_reference(public, ref_post) -> None:
    np.testing.assert_allclose(flip_average_heatmap(public), ref_post["s1_heatmap_agg"][0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(posemap_full(public), ref_post["s1_posemap_agg"][0], rtol=0, atol=1e-4)


def test_proposals_and_heatmap_match_reference(public, ref_post) -> None:
    props = scale_proposals(public, CFG)
    assert props.shape == ref_post["s1_proposals"].shape == (3, 17, 3)
    np.testing.assert_allclose(props, ref_post["s1_proposals"], rtol=0, atol=1e-3)
    heat = AveragedHeatmap([public], CFG)
    assert heat.shape == tuple(ref_post["heatmap_avg_hw"])
    np.testing.assert_allclose(heat.full()[:, ::4, ::4], ref_post["heatmap_avg_sub4"][0], rtol=0, atol=1e-6)


def test_decode_matches_reference(public, ref_post, rescorer) -> None:
    z = ref_post
    out = decode([public], z["center"], z["scale_resized"], z["base_size_wh"], CFG, rescorer)
    np.testing.assert_allclose(out.nms.heatval, z["heatval_proposals"], rtol=0, atol=1e-6)
    assert out.nms.poses.shape == z["poses_nms_input_px"].shape == (2, 17, 3)    # 3 proposals -> 2
    np.testing.assert_allclose(out.nms.poses, z["poses_nms_input_px"], rtol=0, atol=1e-3)
    np.testing.assert_allclose(out.pose_scores, z["scores_nms"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(out.poses, z["final_poses"], rtol=0, atol=1e-3)
    np.testing.assert_allclose(rescore_features(out.poses), z["rescore_features"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(rescorer.predict(rescore_features(out.poses)), z["rescore_net_out"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(out.scores, z["final_scores"], rtol=0, atol=1e-5)


def test_people_json_has_box_from_keypoint_extent(public, ref_post) -> None:
    z = ref_post
    out = decode([public], z["center"], z["scale_resized"], z["base_size_wh"], CFG)
    people = to_people(out.poses, out.scores)
    assert len(people) == 2
    kp = np.asarray(people[0]["keypoints"])
    assert kp.shape == (17, 3)
    x, y, w, h = people[0]["box"]
    assert (x, y) == (kp[:, 0].min(), kp[:, 1].min())
    assert np.isclose(x + w, kp[:, 0].max()) and np.isclose(y + h, kp[:, 1].max())
    # without the rescoring net the score is the mean joint score
    assert people[0]["score"] == pytest.approx(float(kp[:, 2].mean()), abs=1e-6)


@pytest.mark.parametrize("factor,shape", [(4.0, (18, 16, 24)), (8.0, (3, 8, 12)), (2.0, (3, 32, 48)),
                                          (4.0 / 0.75, (2, 12, 18))])
def test_up_interpolate_matches_official(factor: float, shape: tuple[int, int, int]) -> None:
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    c, h, w = shape
    want = official.up_interpolate(torch.from_numpy(x)[None], (int(factor * h), int(factor * w)))[0].numpy()
    np.testing.assert_allclose(up_interpolate(x, factor), want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("k", [3, 5, 7])
def test_max_pool_matches_torch(k: int) -> None:
    x = np.random.default_rng(k).normal(size=(37, 53)).astype(np.float32)
    x[5:9, 5:9] = 2.0           # plateaus and ties
    want = torch.nn.MaxPool2d(k, 1, k // 2)(torch.from_numpy(x)[None, None])[0, 0].numpy()
    np.testing.assert_array_equal(max_pool_same(x, k), want)


@pytest.mark.parametrize("scales,flip", [((1.0,), True), ((2.0, 1.0, 0.5), True), ((1.0, 0.5), False)])
def test_multi_scale_matches_official(scales, flip: bool, rescorer) -> None:
    in_w, in_h = 640, 512
    rng = np.random.default_rng(7)
    people = random_people(6, in_w, in_h, rng)
    raw = {s: scale_outputs(people, in_w, in_h, s, rng) for s in scales}
    maps = [ScaleMaps(s, *(raw[s] if flip else raw[s][:2])) for s in scales]
    tensors = {s: tuple(torch.from_numpy(a)[None] for a in (raw[s] if flip else raw[s][:2])) for s in scales}
    center, win, base = np.array([400, 300]), np.array([6.4, 5.12]), (in_w, in_h)
    props, nms_poses, scores, final = official.run_valid(tensors, center, win, base, scales)
    out = decode(maps, center, win, base, CFG)
    assert len(out.proposals) == len(props)
    for a, b in zip(out.proposals, props):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-3)
    assert len(out.poses) == len(final) > 0
    if len(scales) > 1:       # each person is proposed at every scale: pose NMS merged them
        assert len(out.poses) < sum(len(p) for p in props)
    np.testing.assert_allclose(out.nms.poses, nms_poses[0], rtol=0, atol=1e-3)
    np.testing.assert_allclose(out.pose_scores, np.array(scores), rtol=0, atol=1e-6)
    np.testing.assert_allclose(out.poses, np.stack(final), rtol=0, atol=1e-3)


def test_pose_nms_merges_duplicates_and_keeps_the_best_heat() -> None:
    base = np.random.default_rng(0).uniform(0, 200, (17, 2)).astype(np.float32)
    coords = np.stack([base, base + 0.5, base + 300, base + 0.2])
    heat = np.array([0.2, 0.9, 0.5, 0.1], np.float32)
    # 0, 1 and 3 are one person (1 has the best heat score), 2 another one
    assert nms_core(coords, heat, CFG) == [1, 2]
    # a degenerate proposal (all joints on one point) is its own group instead of crashing
    assert nms_core(np.zeros((1, 17, 2), np.float32), np.ones(1, np.float32), CFG) == [0]


def test_no_centre_above_threshold_gives_no_people() -> None:
    maps = ScaleMaps(1.0, np.zeros((18, 32, 48), np.float32), np.zeros((34, 32, 48), np.float32))
    out = decode([maps], [100, 80], [1.0, 0.66], (192, 128), CFG)
    assert out.poses.shape == (0, 17, 3) and to_people(out.poses, out.scores) == []
