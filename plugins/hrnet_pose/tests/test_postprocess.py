"""The top-down post-processing against the official functions' outputs
(tests/fixtures/ref/topdown_postprocess_public.npz, made with HRNet-Human-Pose-Estimation)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hrdeploy.model import Item, Sample, SampleRef
from hrdeploy.tasks.pose import STAT_NAMES, CocoKeypointMetric, coco_keypoint_eval
from hrdeploy_hrnet_pose.pipeline import (TopDownPosePipeline, box_to_center_scale, flip_average, flip_back,
                                          get_final_preds, get_max_preds, rescore, shift_heatmap_right)


@pytest.fixture(scope="module")
def ref(fixtures_dir: Path) -> dict[str, Any]:
    data = np.load(fixtures_dir / "ref" / "topdown_postprocess_public.npz")
    out = {k: data[k] for k in data.files}
    for k in ("gt_json", "det_json", "results_json", "meta"):
        out[k] = json.loads(str(out[k]))
    return out


def test_meta_is_the_configuration_we_implement(ref: dict[str, Any]) -> None:
    cfg = ref["meta"]["cfg"]
    assert cfg["MODEL.IMAGE_SIZE (w,h)"] == [192, 256] and cfg["TEST.FLIP_TEST"] and cfg["TEST.SHIFT_HEATMAP"]
    assert (cfg["TEST.IN_VIS_THRE"], cfg["TEST.OKS_THRE"], cfg["box padding"]) == (0.2, 0.9, 1.25)
    pipe = TopDownPosePipeline((192, 256))
    assert pipe.params["in_vis_thre"] == 0.2 and pipe.params["oks_nms_thre"] == 0.9
    assert pipe.params["flip_pairs"] == cfg["flip_pairs"]
    assert np.allclose(pipe.params["oks_sigmas"], np.array(cfg["oks sigmas"]) / 10)


def test_boxes_to_center_scale(ref: dict[str, Any]) -> None:
    boxes = np.array([d["bbox"] for d in ref["det_json"]])
    center, scale = box_to_center_scale(boxes, 192 / 256)
    assert center.dtype == np.float32 and scale.dtype == np.float32
    np.testing.assert_array_equal(center, ref["center"])
    np.testing.assert_array_equal(scale, ref["scale"])
    np.testing.assert_array_equal(ref["box_score"], np.array([d["score"] for d in ref["det_json"]], np.float32))


def test_flip_back_shift_and_average(ref: dict[str, Any]) -> None:
    back = shift_heatmap_right(flip_back(ref["heatmaps_flipped"]))
    np.testing.assert_array_equal(back, ref["heatmaps_flipped_back_shifted"])
    np.testing.assert_array_equal(flip_average(ref["heatmaps"], ref["heatmaps_flipped"]), ref["heatmaps_avg"])


@pytest.mark.parametrize("which", ["noflip", "avg"])
def test_argmax_refinement_and_transform_back(ref: dict[str, Any], which: str) -> None:
    hm = ref["heatmaps"] if which == "noflip" else ref["heatmaps_avg"]
    coords, maxvals = get_max_preds(hm)
    np.testing.assert_array_equal(coords, ref["coords_noflip_hm" if which == "noflip" else "coords_avg_hm"])
    preds, maxvals2, refined = get_final_preds(hm, ref["center"], ref["scale"])
    expected = ref["preds_noflip" if which == "noflip" else "preds"]
    assert np.abs(preds - expected).max() <= 1e-4
    np.testing.assert_array_equal(maxvals2, ref["maxvals_noflip" if which == "noflip" else "maxvals"])
    # the quarter-pixel step moved most joints, and never by more than 0.25 per axis
    step = refined - coords
    assert set(np.unique(step)) <= {-0.25, 0.0, 0.25} and np.count_nonzero(step) > 17
    # a non-positive maximum (person 2, joint 2: -0.01) gives the crop corner (0, 0)
    assert maxvals[1, 2, 0] < 0 and tuple(coords[1, 2]) == (0.0, 0.0)


def test_rescoring(ref: dict[str, Any]) -> None:
    scores = rescore(ref["maxvals"], ref["all_boxes"][:, 5])
    np.testing.assert_array_equal(scores, np.array([r["score"] for r in ref["results_json"]]))


def _run_pipeline(ref: dict[str, Any], boxes: list[list[float]], heatmaps: np.ndarray,
                  flipped: np.ndarray) -> dict[str, Any]:
    pipe = TopDownPosePipeline((192, 256))
    sample_ref = SampleRef("5", Path("000000000005.jpg"), {"image_id": 5, "boxes": boxes})
    items = pipe.prepare(Sample(sample_ref, np.zeros((480, 640, 3), np.uint8)))
    assert len(items) == 2 * len(boxes)
    assert all(it.tensor.shape == (3, 256, 192) and it.tensor.dtype == np.float32 for it in items)
    # hand the items to finish in a shuffled order: they are matched by their meta
    order = [3, 0, 2, 1] if len(items) == 4 else list(range(len(items)))[::-1]
    outs = [{"heatmaps": (flipped if items[i].meta["flipped"] else heatmaps)[items[i].meta["person"]]}
            for i in order]
    return pipe.finish(sample_ref, [items[i] for i in order], outs)


def test_pipeline_reproduces_the_official_results_and_ap(ref: dict[str, Any]) -> None:
    boxes = [d["bbox"] + [d["score"]] for d in ref["det_json"]]
    pred = _run_pipeline(ref, boxes, ref["heatmaps"], ref["heatmaps_flipped"])
    official = ref["results_json"]
    assert len(pred["people"]) == len(official) == 2
    for person, res in zip(pred["people"], official):
        kp = np.array(person["keypoints"])
        assert kp.shape == (17, 3)
        assert np.abs(kp.reshape(-1) - np.array(res["keypoints"])).max() <= 1e-4
        assert person["score"] == pytest.approx(res["score"], abs=1e-7)
    assert [p["box"] for p in pred["people"]] == [d["bbox"] for d in ref["det_json"]]

    metric = CocoKeypointMetric(ref["gt_json"])
    metric.update(SampleRef("5", Path("x.jpg"), {"image_id": 5}), pred)
    summary = metric.summary()
    np.testing.assert_allclose([summary[k] for k in STAT_NAMES], ref["coco_stats"], atol=1e-9)
    assert summary["AP"] == pytest.approx(0.9504950495, abs=1e-9)
    # the official results file scores the same
    stats = coco_keypoint_eval(ref["gt_json"], [{k: r[k] for k in ("image_id", "category_id", "keypoints", "score")}
                                                for r in official])
    np.testing.assert_allclose([stats[k] for k in STAT_NAMES], ref["coco_stats"], atol=1e-9)


def test_oks_nms_removes_a_duplicate_person(ref: dict[str, Any]) -> None:
    boxes = [d["bbox"] + [d["score"]] for d in ref["det_json"]]
    dup = [boxes[0][0] + 1.0, boxes[0][1] + 0.5, boxes[0][2], boxes[0][3], 0.6]
    heatmaps = np.concatenate([ref["heatmaps"], ref["heatmaps"][:1]])
    flipped = np.concatenate([ref["heatmaps_flipped"], ref["heatmaps_flipped"][:1]])
    pred = _run_pipeline(ref, boxes + [dup], heatmaps, flipped)
    # the copy of person 1 (same heatmaps, box moved by ~1 px) overlaps it with OKS > 0.9
    assert [p["box"] for p in pred["people"]] == [b[:4] for b in boxes]
    official = ref["results_json"]
    assert np.abs(np.array(pred["people"][0]["keypoints"]).reshape(-1) - official[0]["keypoints"]).max() <= 1e-4


def test_image_without_boxes_gives_no_items_and_no_people() -> None:
    pipe = TopDownPosePipeline((192, 256))
    sample_ref = SampleRef("9", Path("000000000009.jpg"), {"image_id": 9, "boxes": []})
    assert pipe.prepare(Sample(sample_ref, np.zeros((48, 64, 3), np.uint8))) == []
    assert pipe.finish(sample_ref, [], []) == {"people": []}


def test_whole_image_is_one_person_without_boxes() -> None:
    pipe = TopDownPosePipeline((192, 256), flip=False)
    sample_ref = SampleRef("x", Path("photo.jpg"), {})
    image = np.zeros((300, 200, 3), np.uint8)
    items = pipe.prepare(Sample(sample_ref, image))
    assert len(items) == 1 and items[0].meta["box"] == [0.0, 0.0, 200.0, 300.0]
    assert items[0].meta["box_score"] == 1.0


def test_crop_is_the_official_affine_warp() -> None:
    """The crop puts the box centre at the input centre with zoom input_w / (scale[0] * 200)."""
    import cv2

    image = np.zeros((480, 640, 3), np.uint8)
    cv2.circle(image, (300, 200), 6, (0, 0, 255), -1)      # red (BGR) dot at the box centre
    pipe = TopDownPosePipeline((192, 256), flip=True)
    sample_ref = SampleRef("1", Path("a.jpg"), {"image_id": 1, "boxes": [[250.0, 100.0, 100.0, 200.0, 1.0]]})
    items = pipe.prepare(Sample(sample_ref, image))
    plain, mirrored = items[0].tensor, items[1].tensor
    red = plain[0]                                          # RGB order: channel 0 is red
    ys, xs = np.nonzero(red > 0)
    assert abs(xs.mean() - 96) < 0.6 and abs(ys.mean() - 128) < 0.6
    np.testing.assert_array_equal(mirrored, plain[:, :, ::-1])
    mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
    np.testing.assert_allclose(plain[:, 0, 0], (-mean / std)[:, 0, 0], rtol=1e-6)   # zero border
    assert isinstance(items[0], Item)
