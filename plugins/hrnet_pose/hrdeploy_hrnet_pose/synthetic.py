"""A tiny COCO keypoint set and a constant-output ONNX "pose network" whose results are known
in closed form, for end-to-end tests of ``hrdeploy eval``/``predict`` without a real model.

The ONNX model ignores its input and returns the same heatmaps for every crop. They are built
so the flip test leaves them unchanged (each left/right pair is the other's mirror image
about x = W/2, the inverse of flip_back + the 1-pixel shift), with a Gaussian peak per joint
and a small bump on one neighbour so the quarter-pixel step is known: +0.25 in y for every
joint, +0.25 in x for left joints, -0.25 for right ones, 0 for the nose. A detection box then
yields keypoints at ``center + (hm - size/2) * scale[0] * 200 / W_hm``, and the set's ground
truth is placed exactly there, so the COCO AP is known by counting.

Numpy, OpenCV and onnx only (no torch).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

#: (dx from the centre line, y) of each joint on a 48x64 heatmap; left joints at +dx
_LAYOUT_48x64 = {0: (0, 8), 1: (2, 6), 3: (4, 8), 5: (8, 18), 7: (11, 28), 9: (12, 38),
                 11: (6, 38), 13: (6, 48), 15: (6, 58)}
#: joint maxima: the nose below the 0.2 rescoring threshold, the ears at 0.5, the rest 0.9
PEAKS = {0: 0.1, 1: 0.9, 3: 0.5, 5: 0.9, 7: 0.9, 9: 0.9, 11: 0.9, 13: 0.9, 15: 0.9}
SIGMA = 2.0
BUMP = 0.05  # relative to the joint's peak


def joint_positions(hm_w: int = 48, hm_h: int = 64) -> np.ndarray:
    """(17, 2) integer heatmap peak positions; right joint = mirror of left about W/2."""
    sx, sy = hm_w / 48, hm_h / 64
    pos = np.zeros((17, 2), np.int64)
    for j, (dx, y) in _LAYOUT_48x64.items():
        yy = int(round(y * sy))
        pos[j] = (hm_w // 2 + int(round(dx * sx)), yy)
        if j:
            pos[j + 1] = (hm_w - pos[j, 0], yy)
    return pos


def expected_heatmap_coords(hm_w: int = 48, hm_h: int = 64) -> np.ndarray:
    """The decoded (argmax + quarter-pixel) coordinates of :func:`constant_heatmaps`."""
    pos = joint_positions(hm_w, hm_h).astype(np.float64)
    step_x = np.array([0.0] + [0.25, -0.25] * 8)
    return pos + np.stack([step_x, np.full(17, 0.25)], axis=1)


def joint_peaks() -> np.ndarray:
    return np.array([PEAKS[0]] + [PEAKS[j] for j in range(1, 17, 2) for _ in (0, 1)], np.float32)


def constant_heatmaps(hm_w: int = 48, hm_h: int = 64) -> np.ndarray:
    """(17, H, W) float32 heatmaps, invariant under the official flip test."""
    pos = joint_positions(hm_w, hm_h)
    peaks = joint_peaks()
    yy, xx = np.mgrid[0:hm_h, 0:hm_w].astype(np.float64)
    hm = np.zeros((17, hm_h, hm_w), np.float64)
    for j in (0, *range(1, 17, 2)):
        x0, y0 = pos[j]
        g = peaks[j] * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * SIGMA ** 2))
        # a bump on one neighbour, small enough to leave the argmax in place
        g[y0 + 1, x0] += BUMP * peaks[j]         # quarter step down
        if j:
            g[y0, x0 + 1] += BUMP * peaks[j]     # quarter step right for left joints
        g[y0, x0] = peaks[j]
        hm[j] = g
        if j:
            # the right partner is the mirror about x = W/2: column c <- column W - c
            mirrored = np.zeros_like(g)
            mirrored[:, 1:] = g[:, :0:-1]
            hm[j + 1] = mirrored
    if not np.allclose(hm[0][:, 1:], hm[0][:, :0:-1]):
        raise AssertionError("nose heatmap must be symmetric about W/2")
    return hm.astype(np.float32)


def box_center_scale(box: Sequence[float], aspect_ratio: float = 0.75) -> tuple[np.ndarray, np.ndarray]:
    """The official ``_xywh2cs`` (float32 results), restated here so the expected keypoints
    do not depend on the code under test."""
    x, y, w, h = (float(v) for v in box[:4])
    center = np.array([x + w * 0.5, y + h * 0.5], np.float32)
    if w > aspect_ratio * h:
        h = w * 1.0 / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    return center, np.array([w / 200.0, h / 200.0], np.float32) * np.float32(1.25)


def expected_keypoints(box: Sequence[float], hm_w: int = 48, hm_h: int = 64) -> np.ndarray:
    """(17, 3) image keypoints [x, y, maxval] the constant model gives for ``box``."""
    center, scale = box_center_scale(box, hm_w / hm_h)
    zoom = float(scale[0]) * 200.0 / hm_w
    hm = expected_heatmap_coords(hm_w, hm_h)
    xy = (hm - np.array([hm_w / 2, hm_h / 2])) * zoom + center.astype(np.float64)
    return np.concatenate([xy, joint_peaks()[:, None].astype(np.float64)], axis=1)


def expected_score(box_score: float, thr: float = 0.2) -> float:
    p = joint_peaks()
    return float(np.mean(p[p > thr], dtype=np.float64) * box_score)


def build_constant_heatmap_onnx(path: Path, heatmaps: np.ndarray | None = None,
                                input_hw: tuple[int, int] = (256, 192), input_name: str = "image",
                                output_name: str = "heatmaps", metadata: dict[str, Any] | None = None) -> Path:
    """Write an ONNX model image (N, 3, H, W) -> heatmaps (N, 17, H/4, W/4) = the constant
    ``heatmaps`` for every batch row (dynamic batch; opset 17, IR 10 for onnxruntime).
    ``metadata`` goes into the hrdeploy metadata entry (model, variant, task, input...)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    h, w = input_hw
    if heatmaps is None:
        heatmaps = constant_heatmaps(w // 4, h // 4)
    const = numpy_helper.from_array(np.asarray(heatmaps, np.float32)[None], "constant_heatmaps")
    zero = numpy_helper.from_array(np.zeros((), np.float32), "zero")
    nodes = [
        # (N,1,1,1) zeros that carry the batch size, then broadcast the constant onto them
        helper.make_node("ReduceMean", [input_name], ["mean"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Mul", ["mean", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "constant_heatmaps"], [output_name]),
    ]
    graph = helper.make_graph(
        nodes, "constant_pose_heatmaps",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", 3, h, w])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT,
                                       ["batch", const.dims[1], const.dims[2], const.dims[3]])],
        initializer=[const, zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="hrdeploy-tests")
    model.ir_version = 10
    if metadata:
        from hrdeploy.artifact import write_onnx_metadata

        write_onnx_metadata(model, metadata)
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def onnx_metadata_for(variant_name: str = "w32_256x192") -> dict[str, Any]:
    """hrdeploy metadata making the constant model look like an export of ``hrnet_pose``."""
    from .variants import VARIANTS

    v = VARIANTS[variant_name]
    return {"model": "hrnet_pose", "variant": v.name, "task": "pose-topdown",
            "input": v.input.to_dict(), "outputs": list(v.outputs), "preprocess": v.preprocess,
            "source": "synthetic constant heatmaps (hrdeploy_hrnet_pose.synthetic)"}


# -- the dataset ---------------------------------------------------------------------------------

# GT person boxes (x, y, w, h); the official cleaning turns them into (x, y, w - 1, h - 1),
# which is also the detection box, so GT-box and detection runs crop the same windows
_IMAGES = [
    {"id": 1, "width": 640, "height": 480, "persons": [[60, 40, 161, 321], [380, 100, 141, 301]]},
    {"id": 2, "width": 640, "height": 480, "persons": [[200, 60, 181, 361]]},
    {"id": 3, "width": 480, "height": 640, "persons": [[100, 150, 201, 401]]},
    {"id": 4, "width": 320, "height": 240, "persons": []},
]


def _clean(box: Sequence[float]) -> list[float]:
    return [float(box[0]), float(box[1]), float(box[2]) - 1.0, float(box[3]) - 1.0]


def build_synthetic_coco(root: Path, hm_wh: tuple[int, int] = (48, 64)) -> dict[str, Any]:
    """Write ``root/val2017/*.png``, ``root/annotations/person_keypoints_val2017.json`` and
    ``root/person_detection_results/COCO_val2017_detections_AP_H_56_person.json``.

    Detections: persons of image 1 (0.95, 0.8) + a near-duplicate of the first (0.5, removed
    by OKS NMS) + a category-2 box (ignored); image 2's person (0.7) + a false positive far
    from it (0.3); none for image 3's person (a miss); image 4 has nobody. Ground-truth
    keypoints sit exactly where the constant model puts them for the cleaned GT box.

    Returns paths, the expected people per image (keep order) for detection boxes and for GT
    boxes, and the expected COCO stats of both runs.
    """
    import cv2

    root = Path(root)
    (root / "val2017").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "person_detection_results").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    hm_w, hm_h = hm_wh
    images, annotations = [], []
    for im in _IMAGES:
        name = f"{im['id']:012d}.png"
        pixels = rng.integers(0, 256, (im["height"], im["width"], 3), dtype=np.uint8)
        cv2.imwrite(str(root / "val2017" / name), pixels)
        images.append({"id": im["id"], "width": im["width"], "height": im["height"], "file_name": name})
        for box in im["persons"]:
            kp = expected_keypoints(_clean(box), hm_w, hm_h)
            flat = np.concatenate([kp[:, :2], np.full((17, 1), 2.0)], axis=1).reshape(-1)
            annotations.append({"id": len(annotations) + 1, "image_id": im["id"], "category_id": 1,
                                "iscrowd": 0, "bbox": [float(v) for v in box], "area": float(box[2] * box[3]),
                                "num_keypoints": 17, "keypoints": [float(v) for v in flat]})
    categories = [{"id": 1, "name": "person", "supercategory": "person",
                   "keypoints": ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
                                 "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
                                 "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
                                 "right_ankle"],
                   "skeleton": [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7],
                                [6, 8], [7, 9], [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5],
                                [4, 6], [5, 7]]}]
    ann_path = root / "annotations" / "person_keypoints_val2017.json"
    ann_path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))

    a, b = _clean(_IMAGES[0]["persons"][0]), _clean(_IMAGES[0]["persons"][1])
    c = _clean(_IMAGES[1]["persons"][0])
    fp = [20.0, 300.0, 100.0, 150.0]
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": a, "score": 0.95},
        {"image_id": 1, "category_id": 2, "bbox": [300.0, 10.0, 50.0, 50.0], "score": 0.99},
        {"image_id": 1, "category_id": 1, "bbox": [a[0] + 2, a[1] + 1, a[2], a[3]], "score": 0.5},
        {"image_id": 1, "category_id": 1, "bbox": b, "score": 0.8},
        {"image_id": 2, "category_id": 1, "bbox": fp, "score": 0.3},
        {"image_id": 2, "category_id": 1, "bbox": c, "score": 0.7},
    ]
    det_path = root / "person_detection_results" / "COCO_val2017_detections_AP_H_56_person.json"
    det_path.write_text(json.dumps(dets))

    def person(box: list[float], score: float) -> dict[str, Any]:
        return {"keypoints": expected_keypoints(box, hm_w, hm_h).tolist(), "score": expected_score(score),
                "box": box}

    expected_det = {1: [person(a, 0.95), person(b, 0.8)], 2: [person(c, 0.7), person(fp, 0.3)]}
    expected_gt = {im["id"]: [person(_clean(bx), 1.0) for bx in im["persons"]] for im in _IMAGES if im["persons"]}
    # GT boxes all score 1: the official argsort()[::-1] puts the later of equal scores first
    expected_gt = {k: v[::-1] for k, v in expected_gt.items()}
    # detections: 3 of 4 GT persons found with OKS 1, the false positive scores lowest, so
    # precision is 1 up to recall 0.75: 76 of COCO's 101 recall points; all persons are "large"
    ap_det = 76 / 101
    stats_det = {"AP": ap_det, "AP.5": ap_det, "AP.75": ap_det, "AP(M)": -1.0, "AP(L)": ap_det,
                 "AR": 0.75, "AR.5": 0.75, "AR.75": 0.75, "AR(M)": -1.0, "AR(L)": 0.75}
    stats_gt = {"AP": 1.0, "AP.5": 1.0, "AP.75": 1.0, "AP(M)": -1.0, "AP(L)": 1.0,
                "AR": 1.0, "AR.5": 1.0, "AR.75": 1.0, "AR(M)": -1.0, "AR(L)": 1.0}
    return {"root": root, "ann": ann_path, "images": root / "val2017", "detections": det_path,
            "expected_detections": expected_det, "expected_gt": expected_gt,
            "stats_detections": stats_det, "stats_gt": stats_gt, "num_images": len(_IMAGES)}
