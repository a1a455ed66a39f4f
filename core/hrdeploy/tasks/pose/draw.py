"""Drawing COCO-17 skeletons on BGR images (``predict --vis``), shared by the pose plugins.

Limbs and joints are coloured by body side: a limb whose two joints are both on the person's
left is :data:`LEFT_COLOR`, both on the right :data:`RIGHT_COLOR`, anything else (nose,
shoulder and hip bars, face triangle) :data:`CENTER_COLOR`. Joints scoring below the
threshold are not drawn, nor any limb that touches one.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..annotate import draw_label, text_scale

COCO_KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)

#: The COCO person skeleton (category 1 ``skeleton``), 0-based joint indices.
COCO_SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)

#: Left/right joint pairs (the flip pairs of the official code).
COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))

# BGR, as the images are
LEFT_COLOR = (0, 255, 0)        # green
RIGHT_COLOR = (0, 128, 255)     # orange
CENTER_COLOR = (255, 153, 51)   # blue
BOX_COLOR = (255, 255, 255)     # white


def joint_side(j: int) -> str:
    """``"left"``, ``"right"`` or ``"center"`` for a COCO joint index (odd = left, even = right)."""
    if j == 0:
        return "center"
    return "left" if j % 2 == 1 else "right"


def side_color(side: str) -> tuple[int, int, int]:
    return {"left": LEFT_COLOR, "right": RIGHT_COLOR}.get(side, CENTER_COLOR)


def limb_color(a: int, b: int) -> tuple[int, int, int]:
    sa, sb = joint_side(a), joint_side(b)
    return side_color(sa if sa == sb else "center")


def describe_people(prediction: dict[str, Any]) -> str:
    """``predict``'s table line for a pose prediction: how many people, the best score."""
    people = prediction.get("people", [])
    return f"{len(people)} people" + (f", best score {max(p['score'] for p in people):.3f}" if people else "")


def person_box(person: dict[str, Any], visible_kpts: np.ndarray) -> tuple[float, float, float, float] | None:
    """The person's box (x, y, w, h): the detector's when the prediction has one (top-down),
    else the extent of the drawn joints grown by 10 % (bottom-up has no box)."""
    if person.get("box") is not None:
        x, y, w, h = (float(v) for v in person["box"])
        return x, y, w, h
    if len(visible_kpts) < 2:
        return None
    lo, hi = visible_kpts[:, :2].min(0), visible_kpts[:, :2].max(0)
    margin = 0.1 * (hi - lo) + 2
    return float(lo[0] - margin[0]), float(lo[1] - margin[1]), float(hi[0] - lo[0] + 2 * margin[0]), \
        float(hi[1] - lo[1] + 2 * margin[1])


def draw_people(image: np.ndarray, people: Sequence[dict[str, Any]], kpt_thr: float = 0.3,
                draw_box: bool = True, thickness: int | None = None,
                radius: int | None = None) -> np.ndarray:
    """Return a copy of ``image`` (BGR uint8) with each person's skeleton drawn.

    ``people`` is the pose prediction list: ``{"keypoints": [[x, y, score] x 17], "score",
    "box": [x, y, w, h] (optional)}``. Each person gets a box (the detector's, or the extent
    of its joints) labelled with its score. Line width and joint radius grow with the image
    size unless given.
    """
    import cv2

    out = np.ascontiguousarray(image).copy()
    size = max(out.shape[:2])
    thickness = thickness or max(2, int(round(size / 320)))
    radius = radius or max(3, int(round(size / 200)))
    scale = text_scale(out)
    for person in people:
        kpts = np.asarray(person.get("keypoints", []), np.float64).reshape(-1, 3)
        visible = (kpts[:, 2] >= kpt_thr) & np.isfinite(kpts).all(axis=1)
        box = person_box(person, kpts[visible])
        if draw_box and box is not None:
            x, y, w, h = box
            cv2.rectangle(out, (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h))),
                          BOX_COLOR, max(1, thickness // 2), cv2.LINE_8)  # axis-aligned: no anti-aliasing needed
            if person.get("score") is not None:
                draw_label(out, f"{float(person['score']):.2f}", int(round(x)),
                           int(round(y)) - max(1, thickness // 2), scale, above=True)
        pts = [(int(round(x)), int(round(y))) for x, y, _ in kpts]
        for a, b in COCO_SKELETON:
            if a < len(kpts) and b < len(kpts) and visible[a] and visible[b]:
                cv2.line(out, pts[a], pts[b], limb_color(a, b), thickness, cv2.LINE_AA)
        for j in np.nonzero(visible)[0]:
            cv2.circle(out, pts[j], radius, side_color(joint_side(int(j))), -1, cv2.LINE_AA)
    return out


__all__ = ["BOX_COLOR", "CENTER_COLOR", "COCO_FLIP_PAIRS", "COCO_KEYPOINT_NAMES", "COCO_SKELETON",
           "LEFT_COLOR", "RIGHT_COLOR", "describe_people", "draw_people", "person_box", "joint_side", "limb_color", "side_color"]
