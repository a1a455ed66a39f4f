"""COCO person-keypoint data for the pose plugins: annotation files, person boxes, datasets.

Layouts accepted for ``--data coco:PATH``:

* ``PATH/annotations/person_keypoints_val2017.json`` (or the only ``person_keypoints_*.json``
  there) with the images in ``PATH/val2017`` (the split named by the file), ``PATH/images`` or
  ``PATH`` itself;
* ``PATH`` = the annotation file, images next to it (same folder names) unless ``images`` is
  given. ``ann``/``images`` options override either.

Top-down models evaluate per person box. Boxes come from a detection file in COCO results
format (``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]``, e.g. the official
``COCO_val2017_detections_AP_H_56_person.json``; category 1 only, ``score >= box_thr``, used
raw) or from the ground truth, cleaned as HRNet-Human-Pose-Estimation's ``COCODataset`` does.
Bottom-up models read every image of the annotation file.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from ...errors import UserError
from ...io import read_json
from ...model import Dataset, SampleRef
from ..layouts import few, other_task_error

if TYPE_CHECKING:
    from .metric import CocoKeypointMetric

ANN_NAME = "person_keypoints_val2017.json"
DETECTIONS_NAME = "COCO_val2017_detections_AP_H_56_person.json"
PERSON_CATEGORY = 1
#: COCO person keypoints per annotation (x, y, visibility each)
NUM_JOINTS = 17
#: a person box as stored in ``SampleRef.info["boxes"]``: [x, y, w, h, score]
Box = list[float]


# -- annotation files ------------------------------------------------------------------------

def find_annotation_file(root: Path) -> Path:
    """The keypoint annotation file of a COCO folder (or ``root`` itself if it is a file)."""
    root = Path(root)
    if root.is_file():
        return root
    if not root.exists():
        raise UserError(f"dataset path not found: {root}")
    for folder in (root / "annotations", root):
        preferred = folder / ANN_NAME
        if preferred.is_file():
            return preferred
        found = sorted(folder.glob("person_keypoints_*.json")) if folder.is_dir() else []
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise UserError(f"several keypoint annotation files in {folder}: "
                            + ", ".join(p.name for p in found), "choose one with --ann FILE")
    other = other_task_error(root, "coco")
    if other:
        raise UserError(*other)
    raise UserError(f"no COCO keypoint annotations under {root}",
                    f"expected annotations/{ANN_NAME} (or pass --ann FILE)")


def find_image_folder(root: Path, ann_path: Path) -> Path:
    """Where the images of ``ann_path`` live: the split folder (``val2017``), ``images``, or
    the dataset folder itself, looked up next to the dataset root and the annotation file."""
    split = re.sub(r"^person_keypoints_", "", ann_path.stem)
    bases = []
    for b in (Path(root) if Path(root).is_dir() else ann_path.parent, ann_path.parent, ann_path.parent.parent):
        if b not in bases:
            bases.append(b)
    for base in bases:
        for name in (split, "val2017", "images"):
            if (base / name).is_dir():
                return base / name
    return bases[0]


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_annotation(ann: Any, n: int, path: Path) -> None:
    """The fields the box cleaning and COCOeval read, checked while loading: a bad one found
    by COCOeval would end the run in a traceback after the whole inference."""
    if not isinstance(ann, dict):
        raise UserError(f"{path}: annotation #{n} is not an object: {str(ann)[:60]}")
    name = f"annotation id {ann['id']}" if "id" in ann else f"annotation #{n} (no id)"
    if "image_id" not in ann:
        raise UserError(f"{path}: {name} has no image_id")
    bbox = ann.get("bbox")
    if bbox is None:
        raise UserError(f"{path}: {name} (image {ann['image_id']}) has no bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_number(v) for v in bbox)
            and bbox[2] >= 0 and bbox[3] >= 0):
        raise UserError(f"{path}: {name} (image {ann['image_id']}) has a malformed bbox {str(bbox)[:60]}",
                        "expected [x, y, width, height]: 4 numbers, width and height >= 0")
    keypoints = ann.get("keypoints")
    if keypoints is None:
        raise UserError(f"{path}: {name} (image {ann['image_id']}) has no 'keypoints' field",
                        "pose evaluation needs a person keypoints file (person_keypoints_val2017.json), "
                        "not a detection or instances file")
    if not (isinstance(keypoints, list) and len(keypoints) == 3 * NUM_JOINTS and all(_number(v) for v in keypoints)):
        size = len(keypoints) if isinstance(keypoints, list) else type(keypoints).__name__
        raise UserError(f"{path}: {name} (image {ann['image_id']}) has malformed keypoints ({size} values)",
                        f"expected {3 * NUM_JOINTS} numbers: x, y, visibility for each of the {NUM_JOINTS} COCO joints")


def _normalise_gt(data: Any, path: Path) -> dict[str, Any]:
    """Check the parts COCOeval needs and fill the fields it reads when a hand-made file omits
    them (``iscrowd`` 0, ``num_keypoints`` from the visibilities, ``area`` from the box)."""
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise UserError(f"{path} is not a COCO annotation file (needs 'images' and 'annotations' lists)")
    for n, im in enumerate(data["images"]):
        if not isinstance(im, dict) or "id" not in im:
            raise UserError(f"{path}: image #{n} has no id: {str(im)[:60]}")
    data.setdefault("categories", [{"id": PERSON_CATEGORY, "name": "person", "supercategory": "person"}])
    for n, ann in enumerate(data["annotations"]):
        _check_annotation(ann, n, path)
    used_ids = {a["id"] for a in data["annotations"] if "id" in a}
    next_id = max(used_ids, default=0) + 1
    for ann in data["annotations"]:
        if "id" not in ann:
            ann["id"] = next_id
            next_id += 1
        ann.setdefault("category_id", PERSON_CATEGORY)
        ann.setdefault("iscrowd", 0)
        ann.setdefault("num_keypoints", int(np.count_nonzero(np.asarray(ann["keypoints"])[2::3] > 0)))
        ann.setdefault("area", float(ann["bbox"][2]) * float(ann["bbox"][3]))
    return data


def load_keypoint_annotations(path: Path) -> dict[str, Any]:
    return _normalise_gt(read_json(path, "COCO annotation file"), Path(path))


def image_id_from_path(path: Path | str) -> int | None:
    """COCO file names are the zero-padded image id (``000000000139.jpg``): the official
    top-down code reads the id from the name the same way."""
    stem = Path(path).stem
    digits = re.findall(r"\d+", stem)
    return int(digits[-1]) if digits else None


# -- person boxes ------------------------------------------------------------------------------

def clean_gt_boxes(gt: dict[str, Any]) -> dict[int, list[Box]]:
    """Ground-truth person boxes per image id, as ``COCODataset._load_coco_keypoint_annotation_kernal``:
    non-crowd annotations, box clipped to the image (x2 = min(W - 1, x1 + max(0, w - 1))), kept
    if area > 0 and the clipped box is not inverted, persons without any keypoint skipped,
    score 1."""
    size = {im["id"]: (im.get("width"), im.get("height")) for im in gt["images"]}
    out: dict[int, list[Box]] = {}
    for ann in gt["annotations"]:
        if ann.get("iscrowd", 0) or ann["image_id"] not in size:
            continue
        width, height = size[ann["image_id"]]
        if width is None or height is None:
            raise UserError(f"image {ann['image_id']} has no width/height in the annotation file",
                            "GT boxes are clipped to the image size")
        x, y, w, h = (float(v) for v in ann["bbox"])
        x1, y1 = max(0.0, x), max(0.0, y)
        x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))
        y2 = min(height - 1.0, y1 + max(0.0, h - 1.0))
        if not (ann.get("area", 0) > 0 and x2 >= x1 and y2 >= y1):
            continue
        if ann.get("category_id", PERSON_CATEGORY) != PERSON_CATEGORY:
            continue
        kpts = ann.get("keypoints") or [0]
        if max(kpts) == 0:
            continue
        out.setdefault(ann["image_id"], []).append([x1, y1, x2 - x1, y2 - y1, 1.0])
    return out


def load_detection_boxes(path: Path, box_thr: float = 0.0) -> tuple[dict[int, list[Box]], int]:
    """Person detections per image id from a COCO results file (category 1, score >= box_thr,
    boxes unchanged, file order kept). Returns the boxes and the number of detections read."""
    data = read_json(path, "detection file")
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        data = data["annotations"]
    if not isinstance(data, list):
        raise UserError(f"{path} is not a detection file",
                        "expected a COCO results list [{image_id, category_id, bbox, score}, ...]")
    out: dict[int, list[Box]] = {}
    for n, det in enumerate(data):
        try:
            if det.get("category_id", PERSON_CATEGORY) != PERSON_CATEGORY:
                continue
            score = float(det.get("score", 1.0))
            if score < box_thr:
                continue
            x, y, w, h = (float(v) for v in det["bbox"])
            out.setdefault(int(det["image_id"]), []).append([x, y, w, h, score])
        except (KeyError, TypeError, ValueError, AttributeError):
            raise UserError(f"{path}: detection #{n} is not {{image_id, bbox: [x, y, w, h], score}}: "
                            f"{str(det)[:80]}") from None
    return out, len(data)


# -- datasets ----------------------------------------------------------------------------------

class CocoKeypointDataset(Dataset):
    """COCO person keypoints for evaluation.

    ``mode="topdown"`` yields the images that have at least one person box, with
    ``info["boxes"]`` = [[x, y, w, h, score], ...]; ``mode="bottomup"`` yields every image of
    the annotation file. ``info`` always holds ``image_id``, ``width``, ``height``,
    ``file_name``. The metric scores every image of the annotation file when the whole
    dataset was run, as the official evaluations do.
    """

    kind = "coco"

    def __init__(self, root: Path, *, mode: str = "topdown", ann: Path | None = None,
                 images: Path | None = None, boxes: Path | None = None, gt_boxes: bool = False,
                 box_thr: float = 0.0, skip_missing: bool = False) -> None:
        if mode not in ("topdown", "bottomup"):
            raise ValueError(f"mode must be 'topdown' or 'bottomup', not {mode!r}")
        self.root = Path(root)
        self.mode = mode
        self.ann_path = Path(ann) if ann else find_annotation_file(self.root)
        self.image_dir = Path(images) if images else find_image_folder(self.root, self.ann_path)
        if not self.image_dir.is_dir():
            raise UserError(f"image folder not found: {self.image_dir}")
        self.gt = load_keypoint_annotations(self.ann_path)
        self.box_thr = float(box_thr)
        self.box_source: str | None = None
        self.boxes_path: Path | None = None
        self.detections_read = 0
        self.boxes: dict[int, list[Box]] = {}
        if mode == "topdown":
            self._load_boxes(boxes, gt_boxes)

        self.refs: list[SampleRef] = []
        seen: set[int] = set()
        for im in self.gt["images"]:
            image_id = im["id"]
            if image_id in seen:
                continue
            seen.add(image_id)
            info = {"image_id": image_id, "width": im.get("width"), "height": im.get("height"),
                    "file_name": im.get("file_name", f"{image_id:012d}.jpg")}
            if mode == "topdown":
                person_boxes = self.boxes.get(image_id)
                if not person_boxes:
                    continue
                info["boxes"] = person_boxes
            self.refs.append(SampleRef(id=str(image_id), path=self.image_dir / info["file_name"], info=info))
        self.skipped = self._drop_missing(skip_missing)
        self.all_image_ids = [im["id"] for im in self.gt["images"]]
        unknown = set(self.boxes) - seen
        self.boxes_for_unknown_images = sum(len(self.boxes[i]) for i in unknown)

    def _drop_missing(self, skip_missing: bool) -> list[str]:
        """Images to run that are not on disk: refused (an error in the middle of the run
        otherwise), or with ``skip_missing`` left out of the run and of the evaluation, so their
        people do not count as misses. Returns the skipped file names."""
        missing = [r for r in self.refs if not r.path.is_file()]
        if not missing:
            return []
        names = [str(r.info["file_name"]) for r in missing]
        if not skip_missing:
            raise UserError(f"{len(missing)} of {len(self.refs)} images of {self.ann_path.name} are not in "
                            f"{self.image_dir}: {few(names)}",
                            "point --images at the image folder, or pass --skip-missing to evaluate the others")
        gone = {int(r.info["image_id"]) for r in missing}
        self.refs = [r for r in self.refs if int(r.info["image_id"]) not in gone]
        self.gt["images"] = [im for im in self.gt["images"] if im["id"] not in gone]
        self.gt["annotations"] = [a for a in self.gt["annotations"] if a["image_id"] not in gone]
        return names

    def _load_boxes(self, boxes: Path | None, gt_boxes: bool) -> None:
        if boxes and gt_boxes:
            raise UserError("choose one box source: --boxes FILE or --gt-boxes, not both")
        if not boxes and not gt_boxes:
            # the official layout keeps the detections next to the annotations
            for cand in (self.root / "person_detection_results" / DETECTIONS_NAME,
                         self.ann_path.parent.parent / "person_detection_results" / DETECTIONS_NAME):
                if cand.is_file():
                    boxes = cand
                    break
            else:
                raise UserError("top-down pose evaluation needs person boxes",
                                "pass --boxes DETECTIONS.json (COCO results format, e.g. "
                                f"{DETECTIONS_NAME}) or --gt-boxes")
        if gt_boxes:
            self.box_source = "gt"
            self.boxes = clean_gt_boxes(self.gt)
        else:
            self.box_source = "detections"
            self.boxes_path = Path(boxes)  # type: ignore[arg-type]
            self.boxes, self.detections_read = load_detection_boxes(self.boxes_path, self.box_thr)

    def __len__(self) -> int:
        return len(self.refs)

    def __iter__(self) -> Iterator[SampleRef]:
        return iter(self.refs)

    def defining_files(self) -> dict[str, Path]:
        files = {"annotation file": self.ann_path}
        if self.boxes_path is not None:
            files["detections file"] = self.boxes_path
        return files

    def metric(self) -> "CocoKeypointMetric":
        from .metric import CocoKeypointMetric

        return CocoKeypointMetric(self.gt, dataset_image_ids=[int(r.info["image_id"]) for r in self.refs])

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {**super().info(), "annotations": str(self.ann_path),
                               "image_folder": str(self.image_dir), "mode": self.mode,
                               "annotated_images": len(self.all_image_ids)}
        if self.mode == "topdown":
            out["box_source"] = self.box_source
            out["boxes"] = sum(len(self.boxes.get(int(r.info["image_id"]), [])) for r in self.refs)
            if self.box_source == "detections":
                out["detections_file"] = str(self.boxes_path)
                out["detections_read"] = self.detections_read
                out["box_thr"] = self.box_thr
                out["boxes_for_unknown_images"] = self.boxes_for_unknown_images
            else:
                out["gt_box_cleaning"] = "HRNet COCODataset: clip to image, x2=min(W-1, x1+max(0,w-1)), score 1"
        if self.skipped:
            out["skipped_missing"] = {"count": len(self.skipped), "names": list(self.skipped)}
        return out


def coco_keypoint_dataset(path: Path, options: dict[str, Any] | None, mode: str) -> CocoKeypointDataset:
    """Build the dataset from the CLI's model options (``ann``, ``images``, ``boxes``,
    ``gt_boxes``, ``box_thr``)."""
    opts = options or {}
    return CocoKeypointDataset(
        Path(path), mode=mode, ann=opts.get("ann") or None, images=opts.get("images") or None,
        boxes=opts.get("boxes") or None, gt_boxes=bool(opts.get("gt_boxes")),
        box_thr=float(opts.get("box_thr") or 0.0), skip_missing=bool(opts.get("skip_missing")))


__all__ = ["ANN_NAME", "DETECTIONS_NAME", "PERSON_CATEGORY", "CocoKeypointDataset", "clean_gt_boxes",
           "coco_keypoint_dataset", "find_annotation_file", "find_image_folder",
           "image_id_from_path", "load_detection_boxes", "load_keypoint_annotations"]
