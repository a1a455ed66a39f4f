"""COCO keypoint AP/AR of pose predictions, with pycocotools' COCOeval as the official
evaluations run it (``iouType='keypoints'``, default parameters)."""
from __future__ import annotations

import contextlib
import io
from typing import Any, Sequence

import numpy as np

from ...model import Metric, SampleRef
from .coco import NUM_JOINTS, PERSON_CATEGORY


def _number(v: Any) -> bool:
    # NaN and infinities are numbers a broken model does output: they are scored, not refused
    return isinstance(v, (int, float)) and not isinstance(v, bool)

#: COCOeval.stats order for keypoints
STAT_NAMES = ("AP", "AP.5", "AP.75", "AP(M)", "AP(L)", "AR", "AR.5", "AR.75", "AR(M)", "AR(L)")
RESULTS_FILE = "coco_results.json"


def people_to_coco_results(image_id: int, people: Sequence[dict[str, Any]],
                           category_id: int = PERSON_CATEGORY) -> list[dict[str, Any]]:
    """Pose prediction people -> COCO keypoint results (flat [x, y, score] x 17)."""
    out = []
    for p in people:
        kpts = np.asarray(p["keypoints"], np.float64).reshape(-1)
        out.append({"image_id": int(image_id), "category_id": int(category_id),
                    "keypoints": [float(v) for v in kpts], "score": float(p["score"])})
    return out


def _quiet_coco(dataset: dict[str, Any]) -> Any:
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_keypoint_eval(gt: dict[str, Any] | Any, results: list[dict[str, Any]],
                       image_ids: Sequence[int] | None = None) -> dict[str, float]:
    """Run COCOeval('keypoints') silently; ``gt`` is an annotation dict or a ``COCO`` object,
    ``image_ids`` restricts the evaluation (default: every image of ``gt``). With no results at
    all the detections are an empty set (AP 0 where there is ground truth)."""
    from pycocotools.cocoeval import COCOeval

    coco_gt = _quiet_coco(gt) if isinstance(gt, dict) else gt
    with contextlib.redirect_stdout(io.StringIO()):
        if results:
            # loadRes adds bbox/area/id to the dicts it is given: hand it copies
            coco_dt = coco_gt.loadRes([dict(r) for r in results])
        else:
            coco_dt = _quiet_coco({"images": coco_gt.dataset["images"],
                                   "categories": coco_gt.dataset.get("categories", []),
                                   "annotations": []})
        ev = COCOeval(coco_gt, coco_dt, "keypoints")
        ev.params.useSegm = None
        if image_ids is not None:
            ev.params.imgIds = sorted(int(i) for i in image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: float(v) for name, v in zip(STAT_NAMES, ev.stats)}


class CocoKeypointMetric(Metric):
    """Collects pose predictions (``{"people": [...]}``) as COCO results and scores them.

    ``dataset_image_ids`` are the images the dataset yields: once every one of them has been
    updated, all images of the annotation file are evaluated (images without boxes or
    predictions then count as misses, as in the official evaluations); after a partial run
    (``--limit``) only the images seen are.
    """

    def __init__(self, gt: dict[str, Any], dataset_image_ids: Sequence[int] | None = None) -> None:
        self.gt = gt
        self.all_image_ids = [int(im["id"]) for im in gt["images"]]
        self.dataset_image_ids = set(int(i) for i in (dataset_image_ids if dataset_image_ids is not None
                                                      else self.all_image_ids))
        self.results: list[dict[str, Any]] = []
        self.seen: set[int] = set()

    def update(self, ref: SampleRef, prediction: dict[str, Any]) -> None:
        image_id = int(ref.info["image_id"])
        self.seen.add(image_id)
        self.results.extend(people_to_coco_results(image_id, prediction.get("people", [])))

    def check_prediction(self, prediction: Any) -> str | None:
        """``{"people": [{"keypoints": [[x, y, score] x 17], "score": s, ...}, ...]}``."""
        people = prediction.get("people") if isinstance(prediction, dict) else None
        if not isinstance(people, list):
            return "expected {\"people\": [...]}"
        for n, p in enumerate(people):
            if not isinstance(p, dict) or not _number(p.get("score")):
                return f"people[{n}] has no numeric score"
            kpts = p.get("keypoints")
            if not (isinstance(kpts, list) and len(kpts) == NUM_JOINTS
                    and all(isinstance(k, list) and len(k) == 3 and all(_number(v) for v in k) for k in kpts)):
                return f"people[{n}].keypoints is not {NUM_JOINTS} [x, y, score] triples of numbers"
        return None

    def evaluated_image_ids(self) -> list[int]:
        if self.dataset_image_ids <= self.seen:
            return sorted(set(self.all_image_ids))
        return sorted(self.seen)

    def summary(self) -> dict[str, Any]:
        ids = self.evaluated_image_ids()
        stats = coco_keypoint_eval(self.gt, self.results, ids)
        return {**stats, "images": len(ids), "images_predicted": len(self.seen),
                "results": len(self.results),
                "evaluation": "pycocotools COCOeval iouType=keypoints"
                              + ("" if len(ids) == len(set(self.all_image_ids)) else " (partial run: images seen only)")}

    def rows(self, summary: dict[str, Any]) -> list[tuple[str, str]]:
        return [*((k, f"{summary[k]:.3f}") for k in STAT_NAMES),
                ("images", str(summary["images"])), ("results", str(summary["results"]))]

    def extra_files(self) -> dict[str, Any]:
        return {RESULTS_FILE: self.results}


__all__ = ["RESULTS_FILE", "STAT_NAMES", "CocoKeypointMetric", "coco_keypoint_eval",
           "people_to_coco_results"]
