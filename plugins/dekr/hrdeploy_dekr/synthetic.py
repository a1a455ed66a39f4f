"""A constant-output ONNX "DEKR" and a tiny COCO keypoint set whose AP is known by counting,
for end-to-end tests of ``hrdeploy eval`` / ``predict`` without a trained network.

The ONNX model ignores its input and always returns the same heatmap (18 x 128 x 129) and offset
(34 x 128 x 129) maps. They hold two people standing on the map's mirror axis (x = 64 on the
odd-width map), each left/right joint pair mirrored about it, so the official flip test
(mirror back, swap joints) leaves every value unchanged; the 3-px shift of the flipped input
does not matter because the input is ignored. Around each person's centre pixel the offsets
point at that person's joints (pose = pixel - offset), and every joint sits on a flat plateau
of its heat value, so the decoded poses and scores are exact:

* keypoints (image px) = ((4 * map_px - 256) * 320 / 512 + 160) for a 320 x 320 image
  (input 512 x 512, window scale 1.6), i.e. 2.5 x the map coordinates;
* joint score = centre score x heat value; person score = their mean (no rescoring).

The COCO set has two 320 x 320 images: image 1 holds both people (2 true positives), image 2
only person 2 (person 1 is then a false positive that outranks a true positive). COCOeval then
gives AP = (34 + 67 * 0.75) / 101 at every OKS threshold, and AR = 1.

numpy, OpenCV and onnx only (no torch).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

MAP_H, MAP_W = 128, 129            # odd width: the mirror axis x = 64 is a pixel column
AXIS = (MAP_W - 1) // 2
IMAGE_SIZE = 320                    # square images: input 512 x 512, keypoints = 2.5 x map px
#: person 1 (map px): joint (dx from the axis, y); left joints (odd COCO index) at +dx
_LAYOUT = {0: (0, 20), 1: (2, 18), 3: (4, 19), 5: (6, 26), 7: (9, 33), 9: (10, 40),
           11: (4, 42), 13: (4, 50), 15: (4, 58)}
CENTRES_Y = (32, 96)               # centre pixels of person 1 and 2 (both at x = AXIS)
SHIFT_Y = CENTRES_Y[1] - CENTRES_Y[0]
CENTRE_SCORES = (0.9, 0.6)
HEAT_VALUES = (0.8, 0.5)           # every joint's heat value, per person
EXPECTED_AP = (34 + 67 * 0.75) / 101


def people_map_px() -> np.ndarray:
    """(2, 17, 2) joint positions (x, y) in map pixels."""
    p = np.zeros((17, 2), np.float64)
    for j, (dx, y) in _LAYOUT.items():
        p[j] = (AXIS + dx, y)
        if j:
            p[j + 1] = (AXIS - dx, y)
    return np.stack([p, p + [0, SHIFT_Y]])


def expected_people(image_size: int = IMAGE_SIZE) -> list[dict[str, Any]]:
    """The decoded people in image pixels, best first, as the pipeline returns them."""
    zoom = image_size / 512.0
    out = []
    for n, pts in enumerate(people_map_px()):
        xy = (4.0 * pts - 256.0) * zoom + image_size // 2
        score = CENTRE_SCORES[n] * HEAT_VALUES[n]
        kpts = [[float(x), float(y), score] for x, y in xy]
        x0, y0 = xy.min(axis=0)
        x1, y1 = xy.max(axis=0)
        out.append({"keypoints": kpts, "score": score,
                    "box": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]})
    return out


def constant_maps() -> tuple[np.ndarray, np.ndarray]:
    """(heatmap (18, 128, 129), offset (34, 128, 129)) float32, invariant under the flip test."""
    yy, xx = np.mgrid[0:MAP_H, 0:MAP_W].astype(np.float64)
    heat = np.zeros((18, MAP_H, MAP_W), np.float64)
    offset = np.zeros((34, MAP_H, MAP_W), np.float64)
    for n, pts in enumerate(people_map_px()):
        cy = CENTRES_Y[n]
        heat[17] += CENTRE_SCORES[n] * np.exp(-((xx - AXIS) ** 2 + (yy - cy) ** 2) / (2 * 4.0 ** 2))
        for j, (x, y) in enumerate(pts):
            # a 5 x 5 plateau: the upsampled heatmap reads exactly this value at the joint
            heat[j, int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3] = HEAT_VALUES[n]
        rows = slice(0, MAP_H // 2) if n == 0 else slice(MAP_H // 2, MAP_H)
        for j, (x, y) in enumerate(pts):
            offset[2 * j, rows] = xx[rows] - x
            offset[2 * j + 1, rows] = yy[rows] - y
    return heat.astype(np.float32), offset.astype(np.float32)


def build_constant_dekr_onnx(path: Path, variant: str = "w32") -> Path:
    """Write the constant-output model with the hrdeploy metadata of ``dekr/<variant>``.
    Outputs follow the input's batch size; values never depend on it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from hrdeploy.artifact import write_onnx_metadata
    from hrdeploy.onnx_export import model_metadata

    from .spec import DEKRSpec

    heat, off = constant_maps()
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["mean"], keepdims=1),       # (N, 1, 1, 1)
        helper.make_node("Mul", ["mean", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "heat_const"], ["heatmap"]),
        helper.make_node("Add", ["zeros", "offset_const"], ["offset"]),
    ]
    graph = helper.make_graph(
        nodes, "dekr_constant",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("heatmap", TensorProto.FLOAT, ["batch", 18, MAP_H, MAP_W]),
         helper.make_tensor_value_info("offset", TensorProto.FLOAT, ["batch", 34, MAP_H, MAP_W])],
        initializer=[numpy_helper.from_array(np.zeros((1, 1, 1, 1), np.float32), "zero"),
                     numpy_helper.from_array(heat[None], "heat_const"),
                     numpy_helper.from_array(off[None], "offset_const")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10      # onnx 1.23 writes IR 14, which onnxruntime 1.31 refuses
    spec = DEKRSpec()
    meta = model_metadata(spec, spec.variant(variant), "constant synthetic outputs (tests)", 1)
    meta["opset"] = 17
    write_onnx_metadata(model, meta)
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def build_synthetic_coco(root: Path) -> dict[str, Any]:
    """Write ``root/annotations/person_keypoints_val2017.json`` and ``root/val2017/*.jpg``
    (two images, see the module doc); return the annotation dict plus ``expected_ap``."""
    import cv2

    root = Path(root)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "val2017").mkdir(parents=True, exist_ok=True)
    people = expected_people()
    rng = np.random.default_rng(0)
    images, anns = [], []
    for image_id, persons in ((1, (0, 1)), (2, (1,))):
        name = f"{image_id:012d}.jpg"
        img = rng.integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "val2017" / name), img)
        images.append({"id": image_id, "file_name": name, "width": IMAGE_SIZE, "height": IMAGE_SIZE})
        for p in persons:
            kp = np.asarray(people[p]["keypoints"])
            x0, y0, w, h = people[p]["box"]
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                         "keypoints": [v for x, y, _ in kp for v in (float(x), float(y), 2)],
                         "num_keypoints": 17, "bbox": [x0, y0, w, h], "area": float(w * h)})
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": 1, "name": "person", "supercategory": "person"}]}
    (root / "annotations" / "person_keypoints_val2017.json").write_text(json.dumps(gt))
    return {**gt, "expected_ap": EXPECTED_AP}
