"""Top-down pose pre/post-processing of HRNet-Human-Pose-Estimation, in numpy + OpenCV,
vectorised over persons.

Per image: person boxes -> (center, scale) (``COCODataset._xywh2cs``) -> affine crop of the RGB
image (``cv2.warpAffine`` bilinear) -> /255, mean/std -> one item per person, plus its
horizontally mirrored copy with the flip test (``lib/core/function.py validate``). Back:
flipped heatmaps are mirrored, left/right channels swapped and shifted one pixel right
(SHIFT_HEATMAP) and averaged with the plain ones; argmax + quarter-pixel step towards the
higher neighbour (``lib/core/inference.py``); inverse affine to image pixels; score = box
score x mean of the joint maxima above 0.2; per-image OKS NMS at 0.9
(``COCODataset.evaluate``).
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hrdeploy.errors import UserError
from hrdeploy.model import Item, Pipeline, Sample, SampleRef
from hrdeploy.tasks.pose import (COCO_FLIP_PAIRS, COCO_SIGMAS, IMAGENET_MEAN, IMAGENET_STD, PIXEL_STD,
                                 get_affine_transform, oks_nms, transform_preds)
from hrdeploy.tasks.pose.coco import (clean_gt_boxes, image_id_from_path, load_detection_boxes,
                                      load_keypoint_annotations)

BOX_PADDING = 1.25
IN_VIS_THRE = 0.2
OKS_THRE = 0.9


# -- boxes -> crops ------------------------------------------------------------------------------

def box_to_center_scale(boxes: np.ndarray, aspect_ratio: float, padding: float = BOX_PADDING,
                        pixel_std: float = PIXEL_STD) -> tuple[np.ndarray, np.ndarray]:
    """Official ``_xywh2cs`` for (N, 4) boxes [x, y, w, h]: the box is grown to the input
    aspect ratio around its centre, in units of ``pixel_std``, times ``padding``. Returns
    float32 center (N, 2) and scale (N, 2) with the official rounding."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    x, y, w, h = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    center = np.stack([x + w * 0.5, y + h * 0.5], axis=1).astype(np.float32)
    wider = w > aspect_ratio * h
    taller = w < aspect_ratio * h
    h2 = np.where(wider, w * 1.0 / aspect_ratio, h)
    w2 = np.where(taller, h * aspect_ratio, w)
    scale = np.stack([w2 * 1.0 / pixel_std, h2 * 1.0 / pixel_std], axis=1).astype(np.float32)
    return center, scale * np.float32(padding)


def normalise_crops(crops_rgb: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """uint8 (N, H, W, 3) RGB -> float32 (N, 3, H, W), rounded as torchvision's ToTensor
    (x / 255) then Normalize ((x - mean) / std)."""
    x = crops_rgb.astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def crop_people(image_rgb: np.ndarray, center: np.ndarray, scale: np.ndarray,
                input_wh: Sequence[int]) -> np.ndarray:
    """Affine crops (N, H, W, 3) of the (center, scale) windows, as ``COCODataset.__getitem__``."""
    import cv2

    w, h = int(input_wh[0]), int(input_wh[1])
    trans = get_affine_transform(center, scale, 0, (w, h))
    out = np.empty((len(center), h, w, 3), np.uint8)
    for i, t in enumerate(trans.reshape(-1, 2, 3)):
        out[i] = cv2.warpAffine(image_rgb, t, (w, h), flags=cv2.INTER_LINEAR)
    return out


# -- heatmaps -> keypoints -----------------------------------------------------------------------

def flip_back(heatmaps_flipped: np.ndarray, pairs: Sequence[Sequence[int]] = COCO_FLIP_PAIRS) -> np.ndarray:
    """Official ``flip_back``: mirror along W and swap the left/right joint channels."""
    out = heatmaps_flipped[:, :, :, ::-1].copy()
    for a, b in pairs:
        out[:, [a, b]] = out[:, [b, a]]
    return out


def shift_heatmap_right(heatmaps: np.ndarray) -> np.ndarray:
    """SHIFT_HEATMAP: ``f[:, :, :, 1:] = f[:, :, :, :-1]`` (column 0 keeps its value)."""
    out = heatmaps.copy()
    out[:, :, :, 1:] = heatmaps[:, :, :, :-1]
    return out


def flip_average(heatmaps: np.ndarray, heatmaps_flipped: np.ndarray, shift: bool = True,
                 pairs: Sequence[Sequence[int]] = COCO_FLIP_PAIRS) -> np.ndarray:
    """The flip-test heatmaps: ``(out + shifted flip_back(out_flipped)) * 0.5`` in float32."""
    back = flip_back(heatmaps_flipped.astype(np.float32), pairs)
    if shift:
        back = shift_heatmap_right(back)
    return (heatmaps.astype(np.float32) + back) * np.float32(0.5)


def get_max_preds(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Official ``get_max_preds``: argmax per joint -> float32 coords (N, K, 2) in heatmap
    pixels (x = idx % W, y = idx // W) and maxvals (N, K, 1); (0, 0) where maxval <= 0."""
    n, k, _, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, -1)
    idx = np.argmax(flat, axis=2)
    maxvals = np.take_along_axis(flat, idx[..., None], axis=2)
    coords = np.stack([idx % w, np.floor(idx / w)], axis=2).astype(np.float32)
    coords *= (maxvals > 0.0).astype(np.float32)
    return coords, maxvals


def refine_quarter(coords: np.ndarray, heatmaps: np.ndarray) -> np.ndarray:
    """POST_PROCESS: move each coordinate 0.25 px towards the higher neighbour (per axis),
    except within one pixel of the border. Returns a new float32 array."""
    n, k, h, w = heatmaps.shape
    px = np.floor(coords[..., 0] + 0.5).astype(np.int64)
    py = np.floor(coords[..., 1] + 0.5).astype(np.int64)
    inside = (px > 1) & (px < w - 1) & (py > 1) & (py < h - 1)
    pxc, pyc = np.clip(px, 1, w - 2), np.clip(py, 1, h - 2)
    ni, ki = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    dx = heatmaps[ni, ki, pyc, pxc + 1] - heatmaps[ni, ki, pyc, pxc - 1]
    dy = heatmaps[ni, ki, pyc + 1, pxc] - heatmaps[ni, ki, pyc - 1, pxc]
    step = np.stack([np.sign(dx), np.sign(dy)], axis=-1).astype(np.float32) * np.float32(0.25)
    return np.where(inside[..., None], coords + step, coords).astype(np.float32)


def decode_heatmaps(heatmaps: np.ndarray, post_process: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """argmax (+ quarter-pixel refinement): coords (N, K, 2) in heatmap pixels and maxvals."""
    coords, maxvals = get_max_preds(heatmaps)
    if post_process:
        coords = refine_quarter(coords, heatmaps)
    return coords, maxvals


def get_final_preds(heatmaps: np.ndarray, center: np.ndarray, scale: np.ndarray,
                    post_process: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Official ``get_final_preds``: image-pixel keypoints (N, K, 2) float32, maxvals
    (N, K, 1), and the heatmap-pixel coords they came from."""
    coords, maxvals = decode_heatmaps(heatmaps, post_process)
    h, w = heatmaps.shape[2:]
    preds = transform_preds(coords, center, scale, (w, h)).astype(np.float32)
    return preds, maxvals, coords


def rescore(maxvals: np.ndarray, box_scores: np.ndarray, thr: float = IN_VIS_THRE) -> np.ndarray:
    """box score x mean of the joint maxima above ``thr`` (0 when none is). The mean is
    accumulated joint by joint in float32 as the official loop does, so scores match bit for bit."""
    m = maxvals.reshape(len(maxvals), -1).astype(np.float32)
    above = m > thr
    count = above.sum(axis=1)
    total = np.cumsum(np.where(above, m, np.float32(0)), axis=1, dtype=np.float32)[:, -1]
    kpt = np.where(count > 0, total / np.maximum(count, 1).astype(np.float32), np.float32(0))
    return kpt.astype(np.float64) * np.asarray(box_scores, np.float64)


# -- the pipeline ----------------------------------------------------------------------------------

class TopDownPosePipeline(Pipeline):
    """Person boxes per image come, in this order, from ``SampleRef.info["boxes"]`` (the COCO
    dataset), from a detection file (``boxes`` option; images matched by ``info["image_id"]``
    or the number in the file name), from the ground truth (``gt_boxes`` + ``ann``), or the
    whole image is one person."""

    def __init__(self, input_wh: Sequence[int], output: str = "heatmaps", *, flip: bool = True,
                 shift_heatmap: bool = True, post_process: bool = True, box_padding: float = BOX_PADDING,
                 in_vis_thre: float = IN_VIS_THRE, oks_thre: float = OKS_THRE,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 boxes: Path | None = None, gt_boxes: bool = False, ann: Path | None = None,
                 box_thr: float = 0.0) -> None:
        self.input_wh = (int(input_wh[0]), int(input_wh[1]))
        self.aspect_ratio = self.input_wh[0] * 1.0 / self.input_wh[1]
        self.output = output
        self.flip = bool(flip)
        self.shift_heatmap = bool(shift_heatmap)
        self.post_process = bool(post_process)
        self.box_padding = float(box_padding)
        self.in_vis_thre = float(in_vis_thre)
        self.oks_thre = float(oks_thre)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.boxes_path = Path(boxes) if boxes else None
        self.gt_boxes = bool(gt_boxes)
        self.ann = Path(ann) if ann else None
        self.box_thr = float(box_thr)
        if self.boxes_path and self.gt_boxes:
            raise UserError("choose one box source: --boxes FILE or --gt-boxes, not both")
        if self.boxes_path and not self.boxes_path.is_file():
            raise UserError(f"detection file not found: {self.boxes_path}")
        self._lookup: dict[int, list[list[float]]] | None = None
        self._lock = threading.Lock()
        source = (f"detections {self.boxes_path}" if self.boxes_path else
                  f"gt {self.ann}" if self.gt_boxes else "dataset boxes, else the whole image")
        self.params = {
            "input_size_wh": list(self.input_wh), "aspect_ratio": self.aspect_ratio,
            "pixel_std": PIXEL_STD, "box_padding": self.box_padding,
            "warp": "cv2.warpAffine INTER_LINEAR, border 0", "color": "rgb", "scale": 1 / 255,
            "mean": list(self.mean), "std": list(self.std), "flip_test": self.flip,
            "shift_heatmap": self.shift_heatmap, "flip_pairs": [list(p) for p in COCO_FLIP_PAIRS],
            "post_process": "argmax + quarter-pixel" if self.post_process else "argmax",
            "in_vis_thre": self.in_vis_thre, "oks_nms_thre": self.oks_thre,
            "oks_sigmas": [float(s) for s in COCO_SIGMAS], "box_source": source, "box_thr": self.box_thr,
        }

    # -- boxes ---------------------------------------------------------------------------------
    def _box_lookup(self) -> dict[int, list[list[float]]]:
        with self._lock:
            if self._lookup is None:
                if self.boxes_path:
                    self._lookup = load_detection_boxes(self.boxes_path, self.box_thr)[0]
                elif self.ann is None:
                    raise UserError("--gt-boxes outside a dataset needs the annotation file",
                                    "pass --ann person_keypoints_val2017.json")
                else:
                    self._lookup = clean_gt_boxes(load_keypoint_annotations(self.ann))  # type: ignore[arg-type]
            return self._lookup

    def person_boxes(self, ref: SampleRef, image_hw: tuple[int, int]) -> np.ndarray:
        """(N, 5) boxes [x, y, w, h, score] of one image."""
        if "boxes" in ref.info:
            return np.asarray(ref.info["boxes"], np.float64).reshape(-1, 5)
        if self.boxes_path or self.gt_boxes:
            image_id = ref.info.get("image_id")
            if image_id is None:
                image_id = image_id_from_path(ref.path)
            return np.asarray(self._box_lookup().get(int(image_id), []) if image_id is not None else [],
                              np.float64).reshape(-1, 5)
        h, w = image_hw
        return np.array([[0.0, 0.0, float(w), float(h), 1.0]])

    # -- pre -----------------------------------------------------------------------------------
    def prepare(self, sample: Sample) -> list[Item]:
        """One item per person (the crop), then, with the flip test, one mirrored item per
        person. An image without boxes gives no items."""
        import cv2

        boxes = self.person_boxes(sample.ref, sample.image.shape[:2])
        if len(boxes) == 0:
            return []
        center, scale = box_to_center_scale(boxes[:, :4], self.aspect_ratio, self.box_padding)
        rgb = cv2.cvtColor(sample.image, cv2.COLOR_BGR2RGB)
        tensors = normalise_crops(crop_people(rgb, center, scale, self.input_wh), self.mean, self.std)
        items = []
        for i in range(len(boxes)):
            meta = {"person": i, "flipped": False, "box": [float(v) for v in boxes[i, :4]],
                    "box_score": float(boxes[i, 4]), "center": [float(v) for v in center[i]],
                    "scale": [float(v) for v in scale[i]]}
            items.append(Item(tensors[i], meta))
        if self.flip:
            for i in range(len(boxes)):
                items.append(Item(np.ascontiguousarray(tensors[i][:, :, ::-1]), {"person": i, "flipped": True}))
        return items

    # -- post ----------------------------------------------------------------------------------
    def _heatmap(self, out: dict[str, np.ndarray]) -> np.ndarray:
        if self.output in out:
            return np.asarray(out[self.output])
        if len(out) == 1:
            return np.asarray(next(iter(out.values())))
        raise UserError(f"the model has no output {self.output!r} (outputs: {', '.join(out)})")

    def finish(self, sample: SampleRef, items: list[Item],
               outputs: list[dict[str, np.ndarray]]) -> dict[str, Any]:
        return self.finish_batch([sample], [items], [outputs])[0]

    def finish_batch(self, samples: list[SampleRef], items: list[list[Item]],
                     outputs: list[list[dict[str, np.ndarray]]]) -> list[dict[str, Any]]:
        plain: list[np.ndarray] = []
        flipped: list[np.ndarray] = []
        metas: list[dict[str, Any]] = []
        owner: list[int] = []
        for s, (its, outs) in enumerate(zip(items, outputs)):
            base = len(plain)
            first = [(it, o) for it, o in zip(its, outs) if not it.meta.get("flipped")]
            first.sort(key=lambda p: p[0].meta["person"])
            for it, o in first:
                plain.append(self._heatmap(o))
                metas.append(it.meta)
                owner.append(s)
            if self.flip:
                mirrored = sorted(((it, o) for it, o in zip(its, outs) if it.meta.get("flipped")),
                                  key=lambda p: p[0].meta["person"])
                if len(mirrored) != len(plain) - base:
                    raise ValueError("flip test: each person needs its plain and its mirrored item")
                flipped.extend(self._heatmap(o) for _, o in mirrored)
        results: list[dict[str, Any]] = [{"people": []} for _ in samples]
        if not plain:
            return results

        heatmaps = np.stack(plain).astype(np.float32)
        if self.flip:
            heatmaps = flip_average(heatmaps, np.stack(flipped), self.shift_heatmap)
        center = np.array([m["center"] for m in metas], np.float32)
        scale = np.array([m["scale"] for m in metas], np.float32)
        box_score = np.array([m["box_score"] for m in metas], np.float64)
        preds, maxvals, _ = get_final_preds(heatmaps, center, scale, self.post_process)
        kpts = np.concatenate([preds, maxvals.astype(np.float32)], axis=2)      # (P, K, 3) float32
        scores = rescore(maxvals, box_score, self.in_vis_thre)
        areas = (scale * np.float32(PIXEL_STD)).prod(axis=1).astype(np.float64)
        owner_arr = np.asarray(owner)
        for s in range(len(samples)):
            idx = np.nonzero(owner_arr == s)[0]
            if len(idx) == 0:
                continue
            keep = oks_nms(kpts[idx], scores[idx], areas[idx], self.oks_thre)
            results[s]["people"] = [{
                "keypoints": kpts[i].astype(np.float64).tolist(),
                "score": float(scores[i]),
                "box": metas[i]["box"],
            } for i in idx[keep]]
        return results
