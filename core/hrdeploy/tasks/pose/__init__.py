"""Human pose (COCO-17 keypoints) shared by the pose plugins: the affine maps of the official
HRNet code, COCO keypoint datasets and metric, OKS NMS and skeleton drawing. numpy, OpenCV
and pycocotools only (no torch), so deployment machines can run it.

Prediction shape of every pose plugin (``Pipeline.finish``)::

    {"people": [{"keypoints": [[x, y, score] x 17], "score": s, "box": [x, y, w, h]}, ...]}
"""
from __future__ import annotations

from .affine import PIXEL_STD, affine_transform, get_affine_transform, transform_preds, warp_window
from .coco import (CocoKeypointDataset, clean_gt_boxes, coco_keypoint_dataset, image_id_from_path,
                   load_detection_boxes, load_keypoint_annotations)
from .draw import (CENTER_COLOR, COCO_FLIP_PAIRS, COCO_KEYPOINT_NAMES, COCO_SKELETON, LEFT_COLOR,
                   RIGHT_COLOR, describe_people, draw_people)
from .metric import RESULTS_FILE, STAT_NAMES, CocoKeypointMetric, coco_keypoint_eval
from .oks import COCO_SIGMAS, oks_iou, oks_nms

NUM_JOINTS = 17
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

__all__ = [
    "CENTER_COLOR", "COCO_FLIP_PAIRS", "COCO_KEYPOINT_NAMES", "COCO_SIGMAS", "COCO_SKELETON",
    "IMAGENET_MEAN", "IMAGENET_STD", "LEFT_COLOR", "NUM_JOINTS", "PIXEL_STD", "RESULTS_FILE",
    "RIGHT_COLOR", "STAT_NAMES", "CocoKeypointDataset", "CocoKeypointMetric", "affine_transform",
    "clean_gt_boxes", "coco_keypoint_dataset", "coco_keypoint_eval", "describe_people", "draw_people",
    "get_affine_transform", "image_id_from_path", "load_detection_boxes", "load_keypoint_annotations",
    "oks_iou", "oks_nms", "transform_preds", "warp_window",
]
