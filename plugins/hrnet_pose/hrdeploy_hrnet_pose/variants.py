"""The four official pose_hrnet configurations (experiments/coco/hrnet/w{32,48}_{256x192,384x288}_*.yaml)."""
from __future__ import annotations

from hrdeploy.model import InputSpec, Tolerance, Variant
from hrdeploy.tasks.pose import IMAGENET_MEAN, IMAGENET_STD

#: ``Tolerance.task`` is the mean keypoint error in input pixels between two runs (see
#: ``HRNetPoseSpec.task_check``); one heatmap pixel is 4 input pixels.
POSE_TOLERANCES = {
    "fp32": Tolerance(max_rel=1e-4, min_cosine=0.9999, task=0.5),
    "fp16": Tolerance(max_rel=1e-2, min_cosine=0.999, task=2.0),
    "int8": Tolerance(max_rel=None, min_cosine=0.99, task=4.0),
}

README_AP = {"w32_256x192": 0.744, "w32_384x288": 0.758, "w48_256x192": 0.751, "w48_384x288": 0.763}


def pose_variant(width: int, height: int, in_width: int) -> Variant:
    name = f"w{width}_{height}x{in_width}"
    preprocess = {
        "input_size_wh": [in_width, height], "heatmap_size_wh": [in_width // 4, height // 4],
        "aspect_ratio": in_width / height, "pixel_std": 200, "box_padding": 1.25,
        "warp": "cv2.warpAffine INTER_LINEAR, border 0", "color": "rgb", "scale": 1 / 255,
        "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "layout": "NCHW",
    }
    return Variant(
        name=name, input=InputSpec(name="image", height=height, width=in_width, batch="dynamic"),
        outputs=("heatmaps",), preprocess=preprocess, tolerances=dict(POSE_TOLERANCES),
        description=(f"pose_hrnet_w{width} {height}x{in_width} (COCO val2017 AP {README_AP[name]} "
                     "with the AP 56.4 person detections, flip test)"),
        extra={"width": width, "manifest": f"pose_hrnet_{name}.json",
               "official_checkpoint": f"pose_hrnet_{name}.pth"})


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    pose_variant(32, 256, 192), pose_variant(32, 384, 288),
    pose_variant(48, 256, 192), pose_variant(48, 384, 288))}
