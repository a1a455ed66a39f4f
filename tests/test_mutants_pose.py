"""hrdeploy.tasks.pose: the behaviour that mutation testing (tools/mutation.py) found unpinned,
checked against the transcriptions of the official HRNet functions in test_pose_core and values
computed by hand."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from hrdeploy.errors import UserError
from hrdeploy.model import SampleRef
from hrdeploy.tasks.pose import (CENTER_COLOR, COCO_FLIP_PAIRS, COCO_SIGMAS, COCO_SKELETON, CocoKeypointDataset,
                                 CocoKeypointMetric, clean_gt_boxes, coco_keypoint_dataset, draw_people,
                                 get_affine_transform, load_detection_boxes, load_keypoint_annotations, oks_iou,
                                 oks_nms, transform_preds, warp_window)
from hrdeploy.tasks.pose.coco import ANN_NAME, find_image_folder
from hrdeploy.tasks.pose.draw import BOX_COLOR
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


# -- COCO annotations and boxes (HRNet COCODataset._load_coco_keypoint_annotation_kernal) ---------------

def _kpts(v: int = 2, x: float = 30.0, y: float = 30.0) -> list[float]:
    return [x, y, v] * 17


def _coco(tmp_path: Path, annotations: list[dict[str, Any]], images: list[dict[str, Any]] | None = None) -> Path:
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    images = images or [{"id": 1, "width": 100, "height": 80, "file_name": "000000000001.jpg"}]
    for im in images:
        cv2.imwrite(str(root / "val2017" / im["file_name"]), np.zeros((8, 8, 3), np.uint8))
    (root / "annotations" / ANN_NAME).write_text(json.dumps({"images": images, "annotations": annotations}))
    return root


def test_annotation_files_need_images_and_annotations_lists(tmp_path: Path) -> None:
    for data in ([], {"images": []}, {"annotations": []}, {"images": [], "annotations": {}}):
        (tmp_path / "a.json").write_text(json.dumps(data))
        with pytest.raises(UserError, match="is not a COCO annotation file"):
            load_keypoint_annotations(tmp_path / "a.json")


def test_missing_fields_are_filled_as_cocoeval_reads_them(tmp_path: Path) -> None:
    kp = [10.0, 11.0, 2, 12.0, 13.0, 1, 14.0, 15.0, 0] + [16.0, 17.0, 0] * 14   # 2 labelled joints (v > 0)
    anns = [{"image_id": 1, "bbox": [1.0, 2.0, 3.0, 5.0], "keypoints": kp},
            {"id": 5, "image_id": 1, "bbox": [0.0, 0.0, 4.0, 4.0], "keypoints": _kpts(), "area": 9.0},
            {"image_id": 1, "bbox": [0.0, 0.0, 2.0, 2.0], "keypoints": _kpts(), "num_keypoints": 3}]
    gt = load_keypoint_annotations(_coco(tmp_path, anns) / "annotations" / ANN_NAME)
    first, second, third = gt["annotations"]
    assert (first["id"], third["id"]) == (6, 7)          # after the largest id in the file
    assert first["num_keypoints"] == 2 and third["num_keypoints"] == 3
    assert first["area"] == 15.0 and second["area"] == 9.0
    assert (first["iscrowd"], first["category_id"]) == (0, 1)


def test_annotations_without_image_id_or_bbox_are_refused(tmp_path: Path) -> None:
    for ann in ({"bbox": [0, 0, 1, 1], "keypoints": _kpts()}, {"image_id": 1, "keypoints": _kpts()}):
        root = _coco(tmp_path / str(len(ann) + ("bbox" in ann)), [ann])
        with pytest.raises(UserError, match=r"has no (image_id|bbox)"):
            load_keypoint_annotations(root / "annotations" / ANN_NAME)


def _official_clean(ann: dict[str, Any], width: int, height: int) -> list[float] | None:
    """HRNet-Human-Pose-Estimation lib/dataset/coco.py, the box part of the kernel."""
    x, y, w, h = ann["bbox"]
    x1, y1 = np.max((0, x)), np.max((0, y))
    x2 = np.min((width - 1, x1 + np.max((0, w - 1))))
    y2 = np.min((height - 1, y1 + np.max((0, h - 1))))
    if ann["area"] > 0 and x2 >= x1 and y2 >= y1 and max(ann["keypoints"]) > 0:
        return [float(x1), float(y1), float(x2 - x1), float(y2 - y1), 1.0]
    return None


def test_gt_box_cleaning_edge_cases_match_the_official_kernel() -> None:
    anns = [{"id": n, "image_id": 1, "bbox": b, "area": a, "keypoints": _kpts(), "iscrowd": 0, "category_id": 1}
            for n, (b, a) in enumerate([([3.0, 0.5, 20.0, 30.0], 600.0),    # y inside the first row
                                        ([5.0, 6.0, 0.5, 0.25], 0.5),       # under a pixel: x2 = x1, area < 1
                                        ([7.0, 8.0, 1.0, 1.0], 1.0)])]      # one pixel
    gt = {"images": [{"id": 1, "width": 100, "height": 80}], "annotations": anns}
    want = [_official_clean(a, 100, 80) for a in anns]
    assert all(w is not None for w in want)
    assert clean_gt_boxes(gt) == {1: want}


def test_detections_of_any_score_are_kept_by_default(tmp_path: Path) -> None:
    (tmp_path / "d.json").write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4],
                                                  "score": 0.5}]))
    assert load_detection_boxes(tmp_path / "d.json") == ({1: [[1.0, 2.0, 3.0, 4.0, 0.5]]}, 1)


def test_a_detection_file_alone_is_the_box_source(tmp_path: Path) -> None:
    root = _coco(tmp_path, [{"image_id": 1, "bbox": [0.0, 0.0, 4.0, 4.0], "keypoints": _kpts()}])
    (root / "d.json").write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}]))
    ds = CocoKeypointDataset(root, boxes=root / "d.json")
    assert ds.box_source == "detections" and ds.info()["detections_read"] == 1
    assert [r.info["boxes"] for r in ds] == [[[1.0, 2.0, 3.0, 4.0, 0.5]]]


def test_the_images_option_overrides_the_image_folder(tmp_path: Path) -> None:
    root = _coco(tmp_path, [{"image_id": 1, "bbox": [0.0, 0.0, 4.0, 4.0], "keypoints": _kpts()}])
    other = tmp_path / "elsewhere"
    shutil.copytree(root / "val2017", other)
    ds = coco_keypoint_dataset(root, {"images": str(other)}, "bottomup")
    assert ds.image_dir == other and [r.path for r in ds] == [other / "000000000001.jpg"]


# -- metric ------------------------------------------------------------------------------------------------

def test_a_full_run_scores_every_annotated_image_and_says_when_it_did_not(tmp_path: Path) -> None:
    images = [{"id": i, "width": 100, "height": 80, "file_name": f"{i:012d}.jpg"} for i in (1, 2, 3)]
    anns = [{"image_id": i, "bbox": [10.0, 10.0, 40.0, 50.0], "keypoints": _kpts(x=20.0 + i), "area": 2000.0}
            for i in (1, 2, 3)]
    gt = load_keypoint_annotations(_coco(tmp_path, anns, images) / "annotations" / ANN_NAME)
    people = {i: [{"keypoints": np.array(_kpts(x=20.0 + i), float).reshape(17, 3).tolist(), "score": 1.0}]
              for i in (1, 2, 3)}
    full = CocoKeypointMetric(gt, dataset_image_ids=[1, 2])       # image 3 has no box: a miss
    partial = CocoKeypointMetric(gt)
    for i in (1, 2):
        full.update(SampleRef(str(i), None, info={"image_id": i}), {"people": people[i]})
        partial.update(SampleRef(str(i), None, info={"image_id": i}), {"people": people[i]})
    assert full.evaluated_image_ids() == [1, 2, 3]
    s = full.summary()
    assert s["images"] == 3 and s["AR"] == pytest.approx(2 / 3)
    assert s["evaluation"] == "pycocotools COCOeval iouType=keypoints"
    p = partial.summary()
    assert p["images"] == 2 and p["AR"] == pytest.approx(1.0)
    assert p["evaluation"] == "pycocotools COCOeval iouType=keypoints (partial run: images seen only)"


# -- OKS (HRNet lib/nms/nms.py, sigmas of models-pose.md 5.1) -------------------------------------------

def test_sigmas_are_the_coco_ones() -> None:
    np.testing.assert_array_equal(COCO_SIGMAS, np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62,
                                                         1.07, 1.07, .87, .87, .89, .89]) / 10.0)


def _oks_by_hand(g: np.ndarray, d: np.ndarray, a_g: float, a_d: float) -> float:
    var = (np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 5) ** 2
    e = ((d[:, 0] - g[:, 0]) ** 2 + (d[:, 1] - g[:, 1]) ** 2) / var / ((a_g + a_d) / 2 + np.spacing(1)) / 2
    return float(np.mean(np.exp(-e)))


def test_oks_uses_the_mean_area_and_is_zero_for_zero_areas() -> None:
    rng = np.random.default_rng(2)
    g = np.concatenate([rng.uniform(0, 50, (17, 2)), np.ones((17, 1))], axis=1)
    d = g.copy()
    d[:, :2] += rng.normal(0, 2, (17, 2))
    got = oks_iou(g, d[None], 1001.0, np.array([1000.0]))[0]      # odd sum: the mean area is 1000.5
    assert got == pytest.approx(_oks_by_hand(g, d, 1001.0, 1000.0), rel=1e-12)
    assert oks_iou(g, d[None], 0.0, np.array([0.0]))[0] == 0.0


def test_oks_with_one_visible_joint_and_nms_of_one_or_equal_poses() -> None:
    g = np.zeros((17, 3))
    g[:, 0] = np.arange(17) * 10.0
    d = g.copy()
    d[:, 2] = 0.0
    d[4, 2] = 1.0       # only joint 4 above in_vis_thre, and it coincides with g's
    d[5:, 0] += 100.0
    assert oks_iou(g, d[None], 500.0, np.array([500.0]), in_vis_thre=0.5)[0] == 1.0
    d[5, 2] = 1.0       # a second visible joint, 100 px off: OKS term 0, the mean over the two is 0.5
    d[6, 2] = 0.5       # at the threshold: not above it, not counted
    assert oks_iou(g, d[None], 500.0, np.array([500.0]), in_vis_thre=0.5)[0] == pytest.approx(0.5)
    assert oks_nms(g[None], np.array([0.7]), np.array([500.0]), 0.9) == [0]
    # OKS of identical poses is exactly 1.0: kept at thresh 1.0 (the official `ovr <= thresh`)
    assert oks_nms(np.stack([g, g]), np.array([0.5, 0.7]), np.array([500.0, 500.0]), 1.0) == [1, 0]


# -- drawing --------------------------------------------------------------------------------------------------

# person_keypoints_val2017.json, category 1 "skeleton" (1-based joint numbers)
COCO_FILE_SKELETON = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9],
                      [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]


def test_skeleton_and_flip_pairs_are_coco_s() -> None:
    assert [list(p) for p in COCO_SKELETON] == [[a - 1, b - 1] for a, b in COCO_FILE_SKELETON]
    # models-pose.md 5.1 (the official flip_pairs)
    assert [list(p) for p in COCO_FLIP_PAIRS] == [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14],
                                                  [15, 16]]


def _person(scores: list[float], n: int = 17) -> dict[str, Any]:
    return {"keypoints": [[20.0 + 12 * (j % 6), 20.0 + 15 * (j // 6), s] for j, s in zip(range(n), scores)],
            "score": 1.0}


def test_joints_at_the_default_threshold_are_drawn_with_a_radius_growing_with_the_image() -> None:
    image = np.zeros((1000, 1000, 3), np.uint8)
    person = _person([0.3] + [0.29] * 16)       # only the nose (no limb to it is visible)
    out = draw_people(image, [person])
    x, y = 20, 20
    assert tuple(out[y, x]) == CENTER_COLOR
    assert tuple(out[y, x + 4]) == CENTER_COLOR          # 1000 px image: radius round(1000 / 200) = 5
    assert not out[y, x + 8].any() and not out[y + 15, x + 12].any()   # joint 1 (0.29) is not drawn


def test_people_with_fewer_joints_are_drawn_without_the_missing_limbs() -> None:
    image = np.zeros((200, 200, 3), np.uint8)
    for n in (5, 15):
        out = draw_people(image, [_person([1.0] * n, n)])
        assert out.any()


def test_the_box_is_drawn_at_its_corners(tmp_path: Path) -> None:
    image = np.zeros((200, 200, 3), np.uint8)
    out = draw_people(image, [{"keypoints": [[0.0, 0.0, 0.0]] * 17, "score": 1.0, "box": [40, 50, 60, 70]}])
    assert tuple(out[50, 40]) == BOX_COLOR and tuple(out[120, 100]) == BOX_COLOR   # (x, y) and (x + w, y + h)
    assert not out[85, 70].any()


# -- the COCO readers' checks and folder lookup ----------------------------------------------------------

def test_the_image_folder_is_looked_up_next_to_the_root_first_and_defaults_to_it(tmp_path: Path) -> None:
    root, other = tmp_path / "root", tmp_path / "elsewhere"
    (root / "val2017").mkdir(parents=True)
    (other / "val2017").mkdir(parents=True)
    ann = other / ANN_NAME
    ann.write_text("{}")
    assert find_image_folder(root, ann) == root / "val2017"
    bare = tmp_path / "bare"
    (bare / "annotations").mkdir(parents=True)
    assert find_image_folder(bare, bare / "annotations" / ANN_NAME) == bare


@pytest.mark.parametrize("bbox", [[1.0, 2.0, 3.0], [1.0, 2.0, -3.0, 4.0], [1.0, 2.0, 3.0, -4.0], [1.0, "2", 3.0, 4.0]])
def test_malformed_boxes_are_refused(tmp_path: Path, bbox: list[Any]) -> None:
    root = _coco(tmp_path, [{"image_id": 1, "bbox": bbox, "keypoints": _kpts()}])
    with pytest.raises(UserError, match="has a malformed bbox"):
        load_keypoint_annotations(root / "annotations" / ANN_NAME)


def test_sub_pixel_boxes_are_valid_and_ids_start_at_1(tmp_path: Path) -> None:
    anns = [{"image_id": 1, "bbox": [1.0, 2.0, 0.5, 0.5], "keypoints": _kpts()},
            {"image_id": 1, "bbox": [1.0, 2.0, 0.0, 0.0], "keypoints": _kpts()}]
    gt = load_keypoint_annotations(_coco(tmp_path, anns) / "annotations" / ANN_NAME)
    assert [a["id"] for a in gt["annotations"]] == [1, 2]


def test_malformed_keypoints_say_how_many_numbers_coco_has(tmp_path: Path) -> None:
    root = _coco(tmp_path, [{"image_id": 1, "bbox": [0.0, 0.0, 4.0, 4.0], "keypoints": [1.0] * 50}])
    with pytest.raises(UserError, match="expected 51 numbers: x, y, visibility for each of the 17 COCO joints"):
        load_keypoint_annotations(root / "annotations" / ANN_NAME)


def test_gt_boxes_past_the_right_edge_are_clipped_as_the_official_kernel() -> None:
    ann = {"id": 1, "image_id": 1, "bbox": [90.0, 10.0, 30.0, 20.0], "area": 600.0, "keypoints": _kpts(),
           "iscrowd": 0, "category_id": 1}
    gt = {"images": [{"id": 1, "width": 100, "height": 80}], "annotations": [ann]}
    assert clean_gt_boxes(gt) == {1: [_official_clean(ann, 100, 80)]} == {1: [[90.0, 10.0, 9.0, 19.0, 1.0]]}


def test_a_repeated_image_entry_is_read_once_and_the_rest_still_are(tmp_path: Path) -> None:
    images = [{"id": i, "width": 100, "height": 80, "file_name": f"{i:012d}.jpg"} for i in (1, 1, 2)]
    root = _coco(tmp_path, [], images)
    assert [r.info["image_id"] for r in coco_keypoint_dataset(root, {}, "bottomup")] == [1, 2]


def test_missing_images_are_refused_or_skipped_with_their_people(tmp_path: Path) -> None:
    images = [{"id": i, "width": 100, "height": 80, "file_name": f"{i:012d}.jpg"} for i in (1, 2)]
    anns = [{"image_id": i, "bbox": [0.0, 0.0, 4.0, 4.0], "keypoints": _kpts()} for i in (1, 2)]
    root = _coco(tmp_path, anns, images)
    (root / "val2017" / "000000000002.jpg").unlink()
    with pytest.raises(UserError, match="1 of 2 images of person_keypoints_val2017.json are not in"):
        coco_keypoint_dataset(root, {}, "bottomup")
    ds = coco_keypoint_dataset(root, {"skip_missing": True}, "bottomup")
    assert [r.info["image_id"] for r in ds] == [1] and [a["image_id"] for a in ds.gt["annotations"]] == [1]


def test_prediction_check_of_pose_people() -> None:
    m = CocoKeypointMetric({"images": [], "annotations": []})
    person = {"keypoints": [[1.0, 2.0, 0.5]] * 17, "score": 1}
    assert m.check_prediction({"people": [person, {**person, "keypoints": [[float("nan"), 0, 0]] * 17}]}) is None
    for bad, says in (([], "expected"), ({"people": {}}, "expected"), ({"people": [[1]]}, "people[0] has no numeric"),
                      ({"people": [person, {**person, "score": True}]}, "people[1] has no numeric score"),
                      ({"people": [{**person, "keypoints": [[1.0, 2.0, 0.5, 1.0]] * 17}]}, "people[0].keypoints"),
                      ({"people": [{**person, "keypoints": [[1.0, 2.0]] * 17}]}, "people[0].keypoints"),
                      ({"people": [{**person, "keypoints": [[1.0, "2", 0.5]] * 17}]}, "people[0].keypoints"),
                      ({"people": [{**person, "keypoints": [(1.0, 2.0, 0.5)] * 17}]}, "people[0].keypoints"),
                      ({"people": [{**person, "keypoints": "none"}]}, "people[0].keypoints")):
        assert says in (m.check_prediction(bad) or ""), bad


def test_a_bottom_up_box_is_the_joint_extent_grown_by_10_percent_and_2_px_each_side() -> None:
    from hrdeploy.tasks.pose.draw import person_box

    kpts = np.array([[100.0, 50.0, 1.0], [200.0, 250.0, 1.0], [150.0, 90.0, 1.0]])
    # extent 100 x 200 from (100, 50): margins 0.1 * 100 + 2 = 12 and 0.1 * 200 + 2 = 22
    assert person_box({}, kpts) == pytest.approx((88.0, 28.0, 124.0, 244.0))
