"""hrdeploy.tasks.pose: the shared pose code (affine maps, OKS NMS, COCO readers, metric,
drawing) against transcriptions of the official HRNet functions and hand-computed cases."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from hrdeploy.errors import UserError
from hrdeploy.model import SampleRef
from hrdeploy.tasks.pose import (CENTER_COLOR, COCO_SKELETON, LEFT_COLOR, RESULTS_FILE, RIGHT_COLOR, STAT_NAMES,
                                 CocoKeypointDataset, CocoKeypointMetric, affine_transform, clean_gt_boxes,
                                 coco_keypoint_dataset, coco_keypoint_eval, draw_people, get_affine_transform,
                                 load_detection_boxes, oks_iou, oks_nms, transform_preds, warp_window)
from hrdeploy.tasks.pose.draw import BOX_COLOR, limb_color

# -- transcriptions of HRNet-Human-Pose-Estimation lib/utils/transforms.py and lib/nms/nms.py ---------


def official_get_affine_transform(center, scale, rot, output_size, shift=np.array([0, 0], np.float32), inv=0):
    scale_tmp = scale * 200.0
    src_w = scale_tmp[0]
    dst_w, dst_h = output_size[0], output_size[1]
    rot_rad = np.pi * rot / 180
    sn, cs = np.sin(rot_rad), np.cos(rot_rad)
    p = [0, src_w * -0.5]
    src_dir = [p[0] * cs - p[1] * sn, p[0] * sn + p[1] * cs]
    dst_dir = np.array([0, dst_w * -0.5], np.float32)
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0, :] = center + scale_tmp * shift
    src[1, :] = center + src_dir + scale_tmp * shift
    dst[0, :] = [dst_w * 0.5, dst_h * 0.5]
    dst[1, :] = np.array([dst_w * 0.5, dst_h * 0.5]) + dst_dir

    def third(a, b):
        d = a - b
        return b + np.array([-d[1], d[0]], dtype=np.float32)

    src[2:, :] = third(src[0, :], src[1, :])
    dst[2:, :] = third(dst[0, :], dst[1, :])
    if inv:
        return cv2.getAffineTransform(np.float32(dst), np.float32(src))
    return cv2.getAffineTransform(np.float32(src), np.float32(dst))


def official_oks_nms(kpts_db, thresh):
    sigmas = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10.0
    variances = (sigmas * 2) ** 2

    def oks(g, d, a_g, a_d):
        xg, yg = g[0::3], g[1::3]
        ious = np.zeros(d.shape[0])
        for n in range(d.shape[0]):
            dx, dy = d[n, 0::3] - xg, d[n, 1::3] - yg
            e = (dx ** 2 + dy ** 2) / variances / ((a_g + a_d[n]) / 2 + np.spacing(1)) / 2
            ious[n] = np.sum(np.exp(-e)) / e.shape[0]
        return ious

    scores = np.array([k["score"] for k in kpts_db])
    kpts = np.array([k["keypoints"].flatten() for k in kpts_db])
    areas = np.array([k["area"] for k in kpts_db])
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        ovr = oks(kpts[i], kpts[order[1:]], areas[i], areas[order[1:]])
        order = order[np.where(ovr <= thresh)[0] + 1]
    return keep


# -- affine --------------------------------------------------------------------------------------------

def test_affine_matches_the_official_transform_batched_and_single() -> None:
    rng = np.random.default_rng(0)
    centers = rng.uniform(0, 640, (6, 2)).astype(np.float32)
    scales = rng.uniform(0.2, 3.0, (6, 2)).astype(np.float32)
    for rot in (0, 30):
        for out_size in ((192, 256), (48, 64), (768, 512)):
            for inv in (False, True):
                batch = get_affine_transform(centers, scales, rot, out_size, inv=inv)
                assert batch.shape == (6, 2, 3)
                for i in range(6):
                    want = official_get_affine_transform(centers[i], scales[i], rot, np.array(out_size), inv=int(inv))
                    single = get_affine_transform(centers[i], scales[i], rot, out_size, inv=inv)
                    assert np.abs(batch[i] - want).max() <= 1e-9 * max(1.0, np.abs(want).max())
                    np.testing.assert_array_equal(single, batch[i])


def test_affine_keeps_float64_inputs_as_dekr_passes_them() -> None:
    center = np.array([320, 214])                          # DEKR: integer centre, float64 scale
    scale = np.array([640 / 200 * 1.0000001, 427 / 200])
    for inv in (False, True):
        want = official_get_affine_transform(center, scale, 0, [768, 512], inv=int(inv))
        # same float32 points; the 6x6 solve (LU in OpenCV) may differ in the last bits
        np.testing.assert_allclose(get_affine_transform(center, scale, 0, (768, 512), inv=inv), want,
                                   rtol=1e-12, atol=1e-12)


def test_center_maps_to_the_middle_and_only_scale0_counts() -> None:
    t = get_affine_transform([100.0, 50.0], [1.0, 7.0], 0, (192, 256))
    np.testing.assert_allclose(affine_transform(np.array([100.0, 50.0]), t), [96, 128], atol=1e-9)
    np.testing.assert_allclose(t[:, :2], np.eye(2) * 192 / 200, atol=1e-9)   # zoom out_w / (scale[0] * 200)


def test_transform_preds_is_the_inverse_per_person() -> None:
    rng = np.random.default_rng(1)
    center = rng.uniform(100, 400, (3, 2)).astype(np.float32)
    scale = rng.uniform(0.5, 2, (3, 2)).astype(np.float32)
    coords = rng.uniform(0, 48, (3, 17, 2)).astype(np.float32)
    got = transform_preds(coords, center, scale, (48, 64))
    for n in range(3):
        t = official_get_affine_transform(center[n], scale[n], 0, [48, 64], inv=1)
        want = np.array([t @ np.array([x, y, 1.0]) for x, y in coords[n]])
        assert np.abs(got[n] - want).max() <= 1e-9
    # forward then back is the identity
    fwd = get_affine_transform(center, scale, 0, (48, 64))
    np.testing.assert_allclose(transform_preds(affine_transform(got, fwd), center, scale, (48, 64)), got, atol=1e-6)


def test_warp_window_crops_the_window() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    image[40:60, 90:110] = 255
    crop = warp_window(image, np.array([100.0, 50.0], np.float32), np.array([0.2, 0.2], np.float32), (40, 40))
    assert crop.shape == (40, 40, 3) and crop[20, 20].tolist() == [255, 255, 255] and crop[2, 2].sum() == 0


# -- OKS -----------------------------------------------------------------------------------------------

def test_oks_nms_matches_the_official_loop() -> None:
    rng = np.random.default_rng(2)
    for trial in range(20):
        n = int(rng.integers(1, 12))
        base = rng.uniform(0, 300, (3, 17, 2))
        kpts = np.concatenate([base[rng.integers(0, 3, n)] + rng.normal(0, rng.choice([0.5, 3, 20]), (n, 17, 2)),
                               rng.uniform(0, 1, (n, 17, 1))], axis=2).astype(np.float32)
        scores = rng.choice([0.3, 0.5, 0.9], n) if trial % 2 else rng.uniform(0, 1, n)   # ties on odd trials
        areas = rng.uniform(2e3, 5e4, n)
        db = [{"keypoints": kpts[i], "score": scores[i], "area": areas[i]} for i in range(n)]
        assert oks_nms(kpts, scores, areas, 0.9) == [int(k) for k in official_oks_nms(db, 0.9)]


def test_oks_values() -> None:
    g = np.zeros((17, 3))
    assert oks_iou(g, g[None], 1000.0, np.array([1000.0]))[0] == pytest.approx(1.0)
    far = g.copy()
    far[:, 0] = 1e4
    assert oks_iou(g, far[None], 1000.0, np.array([1000.0]))[0] < 1e-9
    assert oks_nms(np.zeros((0, 17, 3)), np.zeros(0), np.zeros(0), 0.9) == []
    # in_vis_thre: only joints above it in the candidates count (the official list 'and' quirk)
    d = g.copy()
    d[:5, 0] = 1e4
    d[:5, 2] = 0.0
    d[5:, 2] = 1.0
    assert oks_iou(g, d[None], 1000.0, np.array([1000.0]), in_vis_thre=0.5)[0] == pytest.approx(1.0)


# -- COCO files ------------------------------------------------------------------------------------------

def _person(image_id: int, bbox: list[float], kpts: list[float] | None = None, **extra: Any) -> dict[str, Any]:
    kp = kpts if kpts is not None else [bbox[0] + 5, bbox[1] + 5, 2] * 17
    return {"image_id": image_id, "category_id": 1, "bbox": bbox, "keypoints": kp, **extra}


@pytest.fixture()
def coco_dir(tmp_path: Path) -> Path:
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    images = [{"id": 7, "width": 100, "height": 80, "file_name": "000000000007.jpg"},
              {"id": 3, "width": 100, "height": 80, "file_name": "000000000003.jpg"},
              {"id": 9, "width": 100, "height": 80}]
    for im in images:
        cv2.imwrite(str(root / "val2017" / f"{im['id']:012d}.jpg"), np.zeros((80, 100, 3), np.uint8))
    anns = [
        _person(7, [-5.0, 10.0, 50.0, 100.0], area=900.0),        # clipped at left and bottom
        _person(7, [10.0, 10.0, 20.0, 20.0], [0] * 51, area=400.0),  # no keypoints: no GT box
        _person(7, [10.0, 10.0, 20.0, 20.0], area=0.0),           # zero area: dropped
        _person(7, [10.0, 10.0, 20.0, 20.0], iscrowd=1, area=400.0),
        _person(3, [99.5, 5.0, 10.0, 10.0], area=100.0),         # x1 past the last column: inverted, dropped
        _person(3, [20.0, 20.0, 30.0, 40.0]),                     # no area/num_keypoints/id/iscrowd: filled in
    ]
    (root / "annotations" / "person_keypoints_val2017.json").write_text(json.dumps({"images": images, "annotations": anns}))
    dets = [{"image_id": 3, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5},
            {"image_id": 7, "category_id": 1, "bbox": [5, 6, 7, 8], "score": 0.05},
            {"image_id": 7, "category_id": 1, "bbox": [9, 9, 9, 9], "score": 0.1},
            {"image_id": 3, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 0.9},
            {"image_id": 42, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.9}]
    (root / "dets.json").write_text(json.dumps(dets))
    return root


def test_gt_boxes_are_cleaned_as_the_official_code(coco_dir: Path) -> None:
    ds = CocoKeypointDataset(coco_dir, gt_boxes=True)
    boxes = clean_gt_boxes(ds.gt)
    # x1 = max(0, -5) = 0, x2 = min(99, 0 + 49) = 49; y2 = min(79, 10 + 99) = 79
    assert boxes == {7: [[0.0, 10.0, 49.0, 69.0, 1.0]], 3: [[20.0, 20.0, 29.0, 39.0, 1.0]]}
    assert [r.id for r in ds] == ["7", "3"]          # annotation-file order, images with boxes only
    ref = next(iter(ds))
    assert ref.path == coco_dir / "val2017" / "000000000007.jpg"
    assert ref.info == {"image_id": 7, "width": 100, "height": 80, "file_name": "000000000007.jpg",
                        "boxes": [[0.0, 10.0, 49.0, 69.0, 1.0]]}
    json.dumps(ref.info)


def test_detection_boxes_filter_category_and_score(coco_dir: Path) -> None:
    boxes, read = load_detection_boxes(coco_dir / "dets.json", box_thr=0.1)
    assert read == 5
    assert boxes == {3: [[1.0, 2.0, 3.0, 4.0, 0.5]], 7: [[9.0, 9.0, 9.0, 9.0, 0.1]], 42: [[0.0, 0.0, 1.0, 1.0, 0.9]]}
    ds = coco_keypoint_dataset(coco_dir, {"boxes": str(coco_dir / "dets.json"), "box_thr": 0.1}, "topdown")
    info = ds.info()
    assert info["boxes"] == 2 and info["boxes_for_unknown_images"] == 1 and info["box_thr"] == 0.1
    bad = coco_dir / "bad.json"
    bad.write_text(json.dumps([{"image_id": 1, "bbox": [1, 2]}]))
    with pytest.raises(UserError, match="detection #0"):
        load_detection_boxes(bad)


def test_bottom_up_reads_every_image_and_layouts(coco_dir: Path, tmp_path: Path) -> None:
    ds = coco_keypoint_dataset(coco_dir, {}, "bottomup")
    assert [r.id for r in ds] == ["7", "3", "9"] and "boxes" not in next(iter(ds)).info
    assert ds.info()["mode"] == "bottomup"
    # the annotation file itself as --data, images found next to it
    ds2 = coco_keypoint_dataset(coco_dir / "annotations" / "person_keypoints_val2017.json", {}, "bottomup")
    assert ds2.image_dir == coco_dir / "val2017"
    # an images/ folder
    alt = tmp_path / "alt"
    (alt / "annotations").mkdir(parents=True)
    (alt / "images").mkdir()
    for image in (coco_dir / "val2017").iterdir():   # the images must be there: missing ones are refused
        (alt / "images" / image.name).write_bytes(image.read_bytes())
    (alt / "annotations" / "person_keypoints_mini.json").write_text(
        (coco_dir / "annotations" / "person_keypoints_val2017.json").read_text())
    assert coco_keypoint_dataset(alt, {}, "bottomup").image_dir == alt / "images"
    (alt / "annotations" / "person_keypoints_other.json").write_text("{}")
    with pytest.raises(UserError, match="several keypoint annotation files"):
        coco_keypoint_dataset(alt, {}, "bottomup")
    with pytest.raises(UserError, match="no COCO keypoint annotations"):
        coco_keypoint_dataset(tmp_path / "alt" / "images", {}, "bottomup")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": 3}))
    with pytest.raises(UserError, match="not a COCO annotation file"):
        coco_keypoint_dataset(bad, {"images": str(coco_dir / "val2017")}, "bottomup")


# -- metric ---------------------------------------------------------------------------------------------

def _gt_people(gt: dict[str, Any], image_id: int) -> list[dict[str, Any]]:
    return [{"keypoints": np.array(a["keypoints"], float).reshape(17, 3).tolist(), "score": 0.9,
             "box": a["bbox"]} for a in gt["annotations"]
            if a["image_id"] == image_id and not a.get("iscrowd") and max(a["keypoints"]) > 0]


def test_metric_perfect_partial_and_empty(coco_dir: Path) -> None:
    ds = coco_keypoint_dataset(coco_dir, {}, "bottomup")
    metric = ds.metric()
    for ref in ds:
        metric.update(ref, {"people": _gt_people(ds.gt, int(ref.info["image_id"]))})
    summary = metric.summary()
    assert summary["AP"] == pytest.approx(1.0) and summary["AR"] == pytest.approx(1.0)
    assert summary["images"] == 3 and summary["results"] == 4   # the zero-area person still has keypoints
    assert [name for name, _ in metric.rows(summary)][:10] == list(STAT_NAMES)
    assert len(metric.extra_files()[RESULTS_FILE]) == 4
    assert "bbox" not in metric.extra_files()[RESULTS_FILE][0]   # COCOeval's additions stay out

    empty = ds.metric()
    for ref in ds:
        empty.update(ref, {"people": []})
    s = empty.summary()
    assert s["AP"] == 0.0 and s["AR"] == 0.0 and s["results"] == 0

    partial = ds.metric()
    first = next(iter(ds))
    partial.update(first, {"people": _gt_people(ds.gt, 7)})
    assert partial.summary()["images"] == 1


def test_coco_eval_counts_misses_on_images_without_predictions(coco_dir: Path) -> None:
    ds = coco_keypoint_dataset(coco_dir, {}, "bottomup")
    results = [{"image_id": 7, "category_id": 1, "score": 0.9,
                "keypoints": np.array(p["keypoints"]).reshape(-1).tolist()} for p in _gt_people(ds.gt, 7)]
    stats = coco_keypoint_eval(ds.gt, results)
    assert 0.0 < stats["AR"] < 1.0      # image 3's person is a miss
    assert coco_keypoint_eval(ds.gt, results, image_ids=[7])["AR"] == pytest.approx(1.0)


def test_metric_takes_image_ids_from_the_reference() -> None:
    gt = {"images": [{"id": 1, "width": 10, "height": 10}], "annotations": [],
          "categories": [{"id": 1, "name": "person"}]}
    metric = CocoKeypointMetric(gt)
    metric.update(SampleRef("a", Path("a.jpg"), {"image_id": 1}),
                  {"people": [{"keypoints": [[1, 1, 1]] * 17, "score": 0.5, "box": [0, 0, 1, 1]}]})
    assert metric.extra_files()[RESULTS_FILE][0]["image_id"] == 1
    assert metric.summary()["AP"] == -1.0        # no ground truth at all: COCO's "undefined"


# -- drawing ---------------------------------------------------------------------------------------------

def _pose() -> list[list[float]]:
    """A standing person facing the camera on a 400x400 canvas (their left on the image right)."""
    xy = {0: (200, 60), 1: (210, 50), 2: (190, 50), 3: (220, 55), 4: (180, 55), 5: (240, 110), 6: (160, 110),
          7: (260, 170), 8: (140, 170), 9: (270, 230), 10: (130, 230), 11: (225, 230), 12: (175, 230),
          13: (230, 300), 14: (170, 300), 15: (235, 370), 16: (165, 370)}
    return [[float(xy[j][0]), float(xy[j][1]), 0.9] for j in range(17)]


def test_skeleton_colours_by_side_and_hides_weak_joints() -> None:
    image = np.zeros((400, 400, 3), np.uint8)
    kpts = _pose()
    kpts[10][2] = 0.1                                     # right wrist below the threshold
    drawn = draw_people(image, [{"keypoints": kpts, "score": 0.8, "box": [120, 40, 160, 340]}], kpt_thr=0.3)
    assert not image.any()                                # the input is not modified
    assert (drawn[230, 270] == LEFT_COLOR).all()          # left wrist
    assert (drawn[110, 160] == RIGHT_COLOR).all()         # right shoulder
    assert (drawn[60, 200] == CENTER_COLOR).all()         # nose
    assert (drawn[200, 265] == LEFT_COLOR).all()          # midpoint of the left forearm (7 -> 9)
    assert (drawn[230, 200] == CENTER_COLOR).all()        # midpoint of the hip bar (11 -> 12)
    assert not drawn[228:233, 128:133].any()              # hidden right wrist ...
    assert not drawn[200, 135].any()                      # ... and its forearm
    assert (drawn[40, 150] == BOX_COLOR).all()            # box outline (top edge)
    no_box = draw_people(image, [{"keypoints": kpts, "score": 0.8, "box": [120, 40, 160, 340]}], draw_box=False)
    assert not no_box[40, 150].any()


def test_limb_colours() -> None:
    sides = {limb_color(a, b) for a, b in COCO_SKELETON}
    assert sides == {LEFT_COLOR, RIGHT_COLOR, CENTER_COLOR}
    assert limb_color(13, 15) == LEFT_COLOR and limb_color(14, 16) == RIGHT_COLOR and limb_color(5, 6) == CENTER_COLOR
    assert len({LEFT_COLOR, RIGHT_COLOR, CENTER_COLOR, BOX_COLOR}) == 4
