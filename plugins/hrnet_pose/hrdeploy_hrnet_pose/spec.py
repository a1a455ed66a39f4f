"""The ``hrnet_pose`` model: top-down HRNet pose on COCO person boxes."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from hrdeploy.model import Dataset, ModelSpec, OptionSpec, PipelineRuntime, TaskCheck, Tolerance, Variant, parse_option
from hrdeploy.tasks.pose import COCO_SIGMAS, coco_keypoint_dataset, describe_people, draw_people

from .pipeline import TopDownPosePipeline, decode_heatmaps
from .variants import VARIANTS
from .weights import load_pose_hrnet, width_of_variant

if TYPE_CHECKING:
    import torch

OPTIONS = {
    "boxes": OptionSpec("person detections, COCO results JSON [{image_id, category_id, bbox, score}] "
                        "(e.g. COCO_val2017_detections_AP_H_56_person.json)", None, str),
    "gt_boxes": OptionSpec("use the ground-truth person boxes of the annotation file, cleaned as the "
                           "official code", False, bool),
    "box_thr": OptionSpec("ignore detections scoring below this (official IMAGE_THRE)", 0.0, float),
    "flip": OptionSpec("flip test: average with the mirrored crop's heatmaps", True, bool),
    "ann": OptionSpec("COCO person_keypoints JSON (default: found under --data; predict --gt-boxes "
                      "needs it)", None, str),
    "images": OptionSpec("folder with the annotation file's images (default: found under --data)", None, str),
}


def typed_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """Drop unset options and convert command-line strings (``--opt flip=false``) to the
    option's type."""
    out = {}
    for k, v in (options or {}).items():
        if v is None:
            continue
        spec = OPTIONS.get(k)
        out[k] = parse_option(spec, v) if spec is not None and spec.type is not str and isinstance(v, str) else v
    return out


class HRNetPoseSpec(ModelSpec):
    name = "hrnet_pose"
    task = "pose-topdown"
    description = "top-down HRNet human pose (pose_hrnet w32/w48, COCO 17 keypoints, person boxes in)"
    variants = VARIANTS
    dataset_kinds = ("coco",)
    options = OPTIONS

    # -- export ----------------------------------------------------------------------------------
    def build(self, variant: Variant, options: dict[str, Any] | None = None) -> "torch.nn.Module":
        from .model import PoseHighResolutionNet

        return PoseHighResolutionNet(width_of_variant(variant.name)).eval()

    def load_weights(self, module: "torch.nn.Module", path: Path, variant: Variant) -> str:
        return load_pose_hrnet(module, Path(path), width_of_variant(variant.name))

    # -- runtime ---------------------------------------------------------------------------------
    def pipeline(self, variant: Variant, options: dict[str, Any] | None = None,
                 runtime: PipelineRuntime | None = None) -> TopDownPosePipeline:
        opts = typed_options(options)
        flip = opts.get("flip", OPTIONS["flip"].default)
        return TopDownPosePipeline(
            (variant.input.width, variant.input.height), variant.outputs[0], flip=bool(flip),
            mean=variant.preprocess["mean"], std=variant.preprocess["std"],
            boxes=opts.get("boxes") or None, gt_boxes=bool(opts.get("gt_boxes", False)),
            ann=opts.get("ann") or None, box_thr=float(opts.get("box_thr") or 0.0))

    def dataset(self, kind: str, path: Path, options: dict[str, Any] | None = None) -> Dataset:
        if kind != "coco":
            return super().dataset(kind, path, options)
        return coco_keypoint_dataset(Path(path), typed_options(options), mode="topdown")

    def draw(self, image: np.ndarray, prediction: dict[str, Any]) -> np.ndarray:
        return draw_people(image, prediction.get("people", []))

    def describe(self, prediction: dict[str, Any]) -> str:
        return describe_people(prediction)

    def task_check(self, variant: Variant, reference: list[np.ndarray], test: list[np.ndarray],
                   tolerance: Tolerance) -> TaskCheck:
        """Decode both heatmap sets (argmax + quarter-pixel step) and compare the keypoints in
        input pixels; passes when the mean error is within ``tolerance.task``."""
        ref = np.asarray(reference[0], np.float32)
        got = np.asarray(test[0], np.float32)
        stride = variant.input.width / ref.shape[-1]  # type: ignore[operator]
        a, _ = decode_heatmaps(ref)
        b, _ = decode_heatmaps(got)
        err = np.linalg.norm((a - b) * stride, axis=-1)
        mean, worst = float(err.mean()), float(err.max())
        within = float(np.mean(err <= stride)) * 100
        # OKS of the test's keypoints against the reference's, per crop, with the crop (the
        # person box the network sees) as the object area and COCO's per-joint sigmas
        area = float(variant.input.width * variant.input.height)  # type: ignore[operator]
        k2 = (COCO_SIGMAS[: err.shape[-1]] * 2) ** 2
        oks = float(np.mean(np.exp(-(err ** 2) / (2 * area * k2))))
        passed = tolerance.task is None or mean <= tolerance.task
        limit = "" if tolerance.task is None else f" (limit {tolerance.task:g})"
        return TaskCheck("keypoint error (px)", mean, passed,
                         f"keypoint error mean {mean:.3f} px{limit}, max {worst:.2f} px, OKS {oks:.4f}, {within:.1f}% of "
                         f"{err.size} joints within one heatmap pixel, on {len(ref)} crops")
