"""Image classification shared by every classification plugin: ImageNet preprocessing,
top-k post-processing, the ImageNet readers and the top-k metric.

A plugin subclasses :class:`ClassificationSpec` and only adds its network
(``build``/``load_weights``) and its variants (made with :func:`classification_variant`).
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import UserError
from ..io import IMAGE_SUFFIXES
from ..model import (
    DEFAULT_TOLERANCES,
    Dataset,
    InputSpec,
    Item,
    Metric,
    ModelSpec,
    OptionSpec,
    Pipeline,
    PipelineRuntime,
    Sample,
    SampleRef,
    TaskCheck,
    Tolerance,
    Variant,
    short_json,
)
from .layouts import VAL_LABEL_FILES, few, other_task_error

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("pil-bilinear", "cv2-linear")

CLASSIFICATION_TOLERANCES = {
    "fp32": Tolerance(max_rel=1e-4, min_cosine=0.9999, task=1.0),
    "fp16": DEFAULT_TOLERANCES["fp16"],
    "int8": DEFAULT_TOLERANCES["int8"],
}


def classification_variant(name: str, *, size: int = 224, resize_short: int = 256,
                           mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                           interpolation: str = "pil-bilinear", outputs: tuple[str, ...] = ("logits",),
                           description: str = "", extra: dict[str, Any] | None = None,
                           tolerances: dict[str, Tolerance] | None = None) -> Variant:
    """A classification variant taking ``size`` x ``size`` RGB crops of a ``resize_short`` image."""
    preprocess = {
        "resize_short": resize_short, "crop": size, "interpolation": interpolation,
        "color": "rgb", "scale": 1 / 255, "mean": [float(m) for m in mean], "std": [float(s) for s in std],
        "layout": "NCHW",
    }
    return Variant(name=name, input=InputSpec(height=size, width=size), outputs=outputs,
                   preprocess=preprocess, tolerances=dict(tolerances or CLASSIFICATION_TOLERANCES),
                   description=description, extra=dict(extra or {}))


@functools.lru_cache(maxsize=1)
def imagenet_classes() -> tuple[tuple[str, str], ...]:
    """The 1000 ILSVRC2012 classes in the standard index order: (synset id, names)."""
    text = resources.files("hrdeploy").joinpath("data/imagenet_classes.txt").read_text(encoding="utf-8")
    out = []
    for line in text.splitlines():
        wnid, _, names = line.partition(" ")
        out.append((wnid, names))
    return tuple(out)


# -- preprocessing ---------------------------------------------------------------------------

def resize_short_crop(image: np.ndarray, short: int, crop: int, interpolation: str) -> np.ndarray:
    """Resize so the short side is ``short`` (long side ``int(short * long / short_in)`` as
    torchvision does), then take the centre ``crop`` x ``crop`` (offsets rounded as
    torchvision's CenterCrop). uint8 HxWx3 in, uint8 crop x crop x 3 out, channels in the
    order they came (both filters treat channels alike, so BGR needs no copy first).

    ``pil-bilinear`` is PIL's own antialiased bilinear filter, the seeds' reference: run by
    Pillow itself, so the bytes are PIL's and it is about 7x faster than the same fixed-point
    sums in numpy. ``cv2-linear`` is OpenCV's non-antialiased bilinear resize, faster still
    and close (about 1-2 grey levels off on downscaling).
    """
    import cv2

    h, w = image.shape[:2]
    if w <= h:
        new_w, new_h = short, int(short * h / w)
    else:
        new_h, new_w = short, int(short * w / h)
    top = int(round((new_h - crop) / 2.0))
    left = int(round((new_w - crop) / 2.0))
    if new_h < crop or new_w < crop:
        raise UserError(f"resize_short {short} is smaller than the crop {crop}")
    if (new_h, new_w) == (h, w):
        return np.ascontiguousarray(image[top:top + crop, left:left + crop])
    if interpolation == "cv2-linear":
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    elif interpolation == "pil-bilinear":
        from PIL import Image

        # Pillow releases the GIL while resampling, so the eval workers resize in parallel
        resized = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((new_w, new_h), Image.BILINEAR))
    else:
        raise UserError(f"unknown interpolation {interpolation!r}", "choose " + " or ".join(INTERPOLATIONS))
    return resized[top:top + crop, left:left + crop]


def normalise(u8: np.ndarray, scale: float, mean: Sequence[float], std: Sequence[float],
              reverse_channels: bool = False) -> np.ndarray:
    """uint8 HxWx3 -> float32 CHW: (x * scale - mean) / std, folded into one multiply-add and
    written straight into the CHW buffer (``reverse_channels``: BGR in, RGB out)."""
    mul = (np.float32(scale) / np.asarray(std, np.float32))[:, None, None]
    add = -(np.asarray(mean, np.float32) / np.asarray(std, np.float32))[:, None, None]
    chw = (u8[:, :, ::-1] if reverse_channels else u8).transpose(2, 0, 1)
    out = np.empty(chw.shape, np.float32)
    np.multiply(chw, mul, out=out)
    out += add
    return out


def preprocess_image(bgr: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """A decoded BGR image -> the network's float32 CHW input. With the ``fast`` extra
    (numba), ``pil-bilinear`` runs :mod:`hrdeploy.tasks.pil_resample`: the same bytes as
    :func:`reference_preprocess_image`, computed for the crop only (about 5x less CPU)."""
    if params.get("interpolation", "pil-bilinear") == "pil-bilinear" and bgr.dtype == np.uint8 \
            and bgr.ndim == 3 and bgr.shape[2] == 3:
        from . import pil_resample

        if pil_resample.available():
            short, crop = int(params["resize_short"]), int(params["crop"])
            h, w = bgr.shape[:2]
            new_short_long = (short, int(short * max(h, w) / min(h, w)))
            if min(new_short_long) >= crop:  # else the reference refuses it with its message
                out = pil_resample.resize_crop_normalise(
                    bgr, short, crop, float(params.get("scale", 1 / 255)), params["mean"], params["std"],
                    reverse_channels=params.get("color", "rgb") == "rgb")
                if out is not None:
                    return out
    return reference_preprocess_image(bgr, params)


def reference_preprocess_image(bgr: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """The reference preprocessing: Pillow resizes the whole image, numpy crops and normalises."""
    crop = resize_short_crop(bgr, int(params["resize_short"]), int(params["crop"]),
                             params.get("interpolation", "pil-bilinear"))
    return normalise(crop, float(params.get("scale", 1 / 255)), params["mean"], params["std"],
                     reverse_channels=params.get("color", "rgb") == "rgb")


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z, dtype=np.float64)
    return (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)


class ClassificationPipeline(Pipeline):
    def __init__(self, preprocess: dict[str, Any], output: str, top_k: int = 5,
                 class_names: Sequence[str] | None = None) -> None:
        self.pre = dict(preprocess)
        self.output = output
        self.top_k = top_k
        self.class_names = list(class_names) if class_names is not None else [n for _, n in imagenet_classes()]
        self.params = {**self.pre, "top_k": top_k, "postprocess": "softmax"}

    def prepare(self, sample: Sample) -> list[Item]:
        return [Item(preprocess_image(sample.image, self.pre))]

    def _top_k(self, logits: np.ndarray) -> list[list[dict[str, Any]]]:
        """logits (N, C) -> per row the top-k entries, highest first."""
        probs = softmax(logits.astype(np.float32))
        k = min(self.top_k, probs.shape[1])
        idx = np.argpartition(-probs, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(probs, idx, 1), axis=1, kind="stable")
        idx = np.take_along_axis(idx, order, 1)
        out = []
        for row, ids in enumerate(idx):
            out.append([{"index": int(i), "name": self._name(int(i)), "score": float(probs[row, i])}
                        for i in ids])
        return out

    def _name(self, index: int) -> str:
        if 0 <= index < len(self.class_names):
            return self.class_names[index]
        return str(index)

    def finish(self, sample: SampleRef, items: list[Item],
               outputs: list[dict[str, np.ndarray]]) -> dict[str, Any]:
        return self.finish_batch([sample], [items], [outputs])[0]

    def finish_batch(self, samples: list[SampleRef], items: list[list[Item]],
                     outputs: list[list[dict[str, np.ndarray]]]) -> list[dict[str, Any]]:
        logits = np.stack([o[0][self.output].reshape(-1) for o in outputs])
        return [{"top_k": t} for t in self._top_k(logits)]


# -- datasets ----------------------------------------------------------------------------------

VAL_IMAGE_DIRS = ("ILSVRC2012_img_val", "val", "images", ".")


def _stem(name: str) -> str:
    """The seeds key labels by the file name up to its first '.'."""
    return name.split(".", 1)[0]


@dataclass
class _Entry:
    path: Path
    label: int


@dataclass
class _Row:
    """One line of a label file."""

    line: int
    name: str
    label: int


class ImageNetDataset(Dataset):
    """ImageNet validation data in the layouts people have:

    * a label file (``val_label.txt``: ``ILSVRC2012_val_00000001.JPEG 65``, 0-based) next to
      ``ILSVRC2012_img_val/`` or ``val/`` (or the images themselves);
    * class folders (``n01440764/...``, or ``val/n01440764/...``): labels from the standard
      synset order when the folders are synset ids; folders of other names take their labels
      from a label file naming them (``cat 281``), or from their sorted order when the model
      has exactly as many classes as there are folders.

    Everything that would make the score silently wrong is refused here, before any inference:
    label-file entries without an image (unless ``skip_missing``: they are then listed in
    :meth:`info`), duplicate entries, labels outside the model's ``num_classes``, folders whose
    labels cannot be known, and another task's dataset.
    """

    kind = "imagenet"

    def __init__(self, root: Path, labels: Path | None = None, *, num_classes: int = 1000,
                 skip_missing: bool = False) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise UserError(f"dataset folder not found: {self.root}")
        self.num_classes = int(num_classes)
        self.skip_missing = skip_missing
        self.skipped: list[str] = []
        self.label_file: Path | None = None
        self.layout, self.entries = self._scan(labels)
        if not self.entries:
            raise UserError(f"no labelled images found under {self.root}",
                            "expected val_label.txt + ILSVRC2012_img_val/ (or val/), or one folder per class")

    def _scan(self, labels: Path | None) -> tuple[str, list[_Entry]]:
        label_file = labels or next((self.root / n for n in VAL_LABEL_FILES if (self.root / n).is_file()), None)
        if label_file is None and (not self.root.is_dir() or not self._synsets()):
            # synset folders are ImageNet whatever else lies next to them
            other = other_task_error(self.root, self.kind)
            if other:
                raise UserError(*other)
        if not self.root.is_dir():
            raise UserError(f"imagenet:{self.root} is a file, not a dataset folder",
                            "pass the folder holding val_label.txt and the images, or the class folders")
        if label_file is not None:
            self.label_file = Path(label_file)
            return self._from_label_file(self.label_file)
        return "synset-folders" if self._synsets() else "class-folders", self._from_class_folders()

    # -- label files ---------------------------------------------------------------------------
    def _read_rows(self, label_file: Path) -> list[_Row]:
        if not label_file.is_file():
            raise UserError(f"label file not found: {label_file}")
        try:
            text = label_file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserError(f"label file {label_file} is not UTF-8 text",
                            "expected lines 'IMAGE_NAME LABEL'") from None
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2 or not re.fullmatch(r"-?\d+", parts[-1]):
                raise UserError(f"{label_file}:{n}: expected 'IMAGE_NAME LABEL', got {line.strip()!r}")
            rows.append(_Row(n, parts[0], int(parts[-1])))
        self._check_rows(label_file, rows)
        return rows

    def _check_rows(self, label_file: Path, rows: list[_Row]) -> None:
        """Duplicate names (an image scored twice) and labels the model cannot predict."""
        first: dict[str, int] = {}
        twice = []
        for r in rows:
            key = _stem(r.name)
            if key in first:
                twice.append(f"{r.name} (lines {first[key]} and {r.line})")
            else:
                first[key] = r.line
        if twice:
            raise UserError(f"{label_file}: {len(twice)} duplicate entries: {few(twice)}",
                            "each image must be listed once")
        bad = [r for r in rows if not 0 <= r.label < self.num_classes]
        if bad:
            labels = [r.label for r in rows]
            one_based = min(labels) >= 1 and max(labels) == self.num_classes
            raise UserError(f"{label_file}: {len(bad)} labels outside the model's {self.num_classes} classes "
                            f"(0..{self.num_classes - 1}): " + few([f"line {r.line} {r.name} {r.label}" for r in bad]),
                            "the labels look 1-based: subtract 1 (labels are 0-based class indices)" if one_based
                            else "labels are 0-based class indices of the model")

    def _from_label_file(self, label_file: Path) -> tuple[str, list[_Entry]]:
        rows = self._read_rows(label_file)
        image_dir = next((self.root / d for d in VAL_IMAGE_DIRS
                          if (self.root / d).is_dir() and any(
                              p.suffix.lower() in IMAGE_SUFFIXES for p in (self.root / d).iterdir())), None)
        folders = {d.name: d for d in self._class_folders()}
        if image_dir is None and any(r.name in folders for r in rows):
            return "mapped-folders", self._from_mapped_folders(label_file, rows, folders)
        if image_dir is not None:
            images, where = self._images_in(image_dir), str(image_dir)
        else:
            # the validation images sorted into class folders, the label file kept next to them
            images = [p for d in folders.values() for p in self._images_in(d)]
            where = f"the class folders of {self._class_base()}"
        if not images:
            raise UserError(f"no image folder next to {label_file}",
                            "expected ILSVRC2012_img_val/ or val/ with the images")
        by_stem = {_stem(p.name): p for p in images}
        entries, missing = [], []
        for r in rows:
            path = by_stem.get(_stem(r.name))
            if path is None:
                missing.append(r.name)
            else:
                entries.append(_Entry(path, r.label))
        self._missing(label_file, missing, len(rows), f"name images not in {where}")
        return "label-file", sorted(entries, key=lambda e: e.path.name)

    def _from_mapped_folders(self, label_file: Path, rows: list[_Row], folders: dict[str, Path]) -> list[_Entry]:
        """Class folders of any names, each given its label by a ``FOLDER LABEL`` line."""
        unmapped = sorted(set(folders) - {r.name for r in rows})
        if unmapped:
            raise UserError(f"{len(unmapped)} class folders are not in {label_file}: {few(unmapped)}",
                            "add a 'FOLDER LABEL' line for each (or move the folder out)")
        entries, missing = [], []
        for r in rows:
            if r.name not in folders:
                missing.append(r.name)
                continue
            entries.extend(_Entry(p, r.label) for p in self._images_in(folders[r.name]))
        self._missing(label_file, missing, len(rows), f"name folders not in {self._class_base()}")
        return entries

    def _missing(self, label_file: Path, missing: list[str], total: int, what: str) -> None:
        if not missing:
            return
        if self.skip_missing:
            self.skipped = missing
            return
        raise UserError(f"{len(missing)} of {total} entries of {label_file} {what}: {few(missing)}",
                        "fix the label file or the images, or pass --skip-missing to evaluate the others")

    # -- class folders -----------------------------------------------------------------------------
    def _class_base(self) -> Path:
        return self.root / "val" if (self.root / "val").is_dir() else self.root

    def _class_folders(self) -> list[Path]:
        return sorted(d for d in self._class_base().iterdir() if d.is_dir())

    @staticmethod
    def _images_in(folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)

    def _synsets(self) -> bool:
        wnids = {w for w, _ in imagenet_classes()}
        folders = self._class_folders()
        return bool(folders) and all(d.name in wnids for d in folders)

    def _from_class_folders(self) -> list[_Entry]:
        folders = self._class_folders()
        if not folders:
            return []
        if self._synsets():
            if self.num_classes != 1000:
                raise UserError(f"{self._class_base()}: synset folders name ImageNet's 1000 classes, "
                                f"the model has {self.num_classes}",
                                "pass --labels FILE with a 'FOLDER LABEL' line per folder")
            wnid_index = {w: i for i, (w, _) in enumerate(imagenet_classes())}
            index = {d.name: wnid_index[d.name] for d in folders}
        elif len(folders) != self.num_classes:
            # their sorted order would name classes 0..N-1 of the model: a score of nothing
            wnids = {w for w, _ in imagenet_classes()}
            others = [d.name for d in folders if d.name not in wnids]
            raise UserError(f"{self._class_base()}: {len(others)} of {len(folders)} class folders are not ImageNet "
                            f"synset ids ({few(others)}) and the model has {self.num_classes} classes, "
                            "so the folders' labels are unknown",
                            "name the folders by synset id (n01440764, ...) or pass --labels FILE "
                            "with a 'FOLDER LABEL' line per folder")
        else:
            index = {d.name: i for i, d in enumerate(folders)}
        return [_Entry(p, index[d.name]) for d in folders for p in self._images_in(d)]

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[SampleRef]:
        # keyed by the path under the root: class folders may hold files of the same name
        for e in self.entries:
            yield SampleRef(id=e.path.relative_to(self.root).as_posix(), path=e.path, info={"label": e.label})

    def defining_files(self) -> dict[str, Path]:
        # synset and class folders are labelled by their names, which the sample ids hold
        return {"label file": self.label_file} if self.label_file is not None else {}

    def metric(self) -> "TopKMetric":
        return TopKMetric(self.num_classes)

    def info(self) -> dict[str, Any]:
        out = {**super().info(), "layout": self.layout, "classes": self.num_classes}
        if self.skipped:
            out["skipped_missing"] = {"count": len(self.skipped), "names": list(self.skipped)}
        return out


class TopKMetric(Metric):
    """Cumulative top-1 .. top-5 accuracy."""

    def __init__(self, num_classes: int = 1000, k: int = 5) -> None:
        self.num_classes = num_classes
        self.k = k
        self.hits = np.zeros(k, np.int64)
        self.count = 0

    def update(self, ref: SampleRef, prediction: dict[str, Any]) -> None:
        label = int(ref.info["label"])
        ranked = [int(t["index"]) for t in prediction["top_k"]][: self.k]
        self.count += 1
        if label in ranked:
            self.hits[ranked.index(label):] += 1

    def check_prediction(self, prediction: Any) -> str | None:
        """``{"top_k": [{"index": int, "name": str, "score": number}, ...]}``, at least one entry."""
        top = prediction.get("top_k") if isinstance(prediction, dict) else None
        if not isinstance(top, list) or not top:
            return "expected {\"top_k\": [{\"index\", \"name\", \"score\"}, ...]}"
        for n, t in enumerate(top):
            if not isinstance(t, dict) or not {"index", "score"} <= set(t):
                return f"top_k[{n}] is not an {{\"index\", \"name\", \"score\"}} object"
            if isinstance(t["index"], bool) or not isinstance(t["index"], int) or t["index"] < 0:
                return f"top_k[{n}].index is {short_json(t['index'])}, not a class index (a whole number >= 0)"
            if isinstance(t["score"], bool) or not isinstance(t["score"], (int, float)):
                return f"top_k[{n}].score is {short_json(t['score'])}, not a number"
            if not isinstance(t.get("name", ""), str):
                return f"top_k[{n}].name is {short_json(t['name'])}, not a string"
        indices = [t["index"] for t in top]
        if len(set(indices)) != len(indices):
            return f"top_k names a class twice ({indices})"
        return None

    def summary(self) -> dict[str, Any]:
        acc = (self.hits / max(self.count, 1) * 100.0).round(4)
        out: dict[str, Any] = {f"top{i + 1}": float(acc[i]) for i in range(self.k)}
        out["images"] = self.count
        out["classes"] = self.num_classes
        return out

    def rows(self, summary: dict[str, Any]) -> list[tuple[str, str]]:
        return [*((f"top-{i + 1}", f"{summary[f'top{i + 1}']:.2f} %") for i in range(self.k)),
                ("images", str(summary["images"]))]


# -- the base class plugins extend --------------------------------------------------------------

class ClassificationSpec(ModelSpec):
    """Everything of a classification model but the network itself."""

    task = "classification"
    dataset_kinds = ("imagenet",)
    options = {"labels": OptionSpec("label file: 'IMAGE LABEL' lines (default: DATA/val_label.txt), or "
                                    "'FOLDER LABEL' lines mapping class folders to class indices", None, str)}
    #: the classes the network scores (its output width): labels must lie in 0..num_classes-1
    num_classes = 1000

    def pipeline(self, variant: Variant, options: dict[str, Any] | None = None,
                 runtime: PipelineRuntime | None = None) -> ClassificationPipeline:
        opts = options or {}
        pre = dict(variant.preprocess)
        if opts.get("interpolation"):
            pre["interpolation"] = opts["interpolation"]
        return ClassificationPipeline(pre, variant.outputs[0], top_k=int(opts.get("top_k") or 5))

    def dataset(self, kind: str, path: Path, options: dict[str, Any] | None = None) -> Dataset:
        if kind != "imagenet":
            return super().dataset(kind, path, options)
        opts = options or {}
        labels = opts.get("labels")
        return ImageNetDataset(Path(path), Path(labels) if labels else None, num_classes=self.num_classes,
                               skip_missing=bool(opts.get("skip_missing")))

    def describe(self, prediction: dict[str, Any]) -> str:
        return ", ".join(f"{k['name'].split(',')[0]} {k['score'] * 100:.1f}%" for k in prediction["top_k"][:3])

    def draw(self, image: np.ndarray, prediction: dict[str, Any]) -> np.ndarray:
        from .annotate import draw_label, text_scale

        out = np.ascontiguousarray(image).copy()
        scale = text_scale(out)
        y = 4
        for t in prediction["top_k"][:3]:
            y = draw_label(out, f"{t['score'] * 100:.1f}% {t['name'].split(',')[0]}", 4, y, scale) + 2
        return out

    def task_check(self, variant: Variant, reference: list[np.ndarray], test: list[np.ndarray],
                   tolerance: Tolerance) -> TaskCheck:
        ref = reference[0].reshape(len(reference[0]), -1)
        got = test[0].reshape(len(test[0]), -1)
        agree = float(np.mean(ref.argmax(1) == got.argmax(1)))
        top5_ref = np.argsort(-ref, 1)[:, :5]
        top5_got = np.argsort(-got, 1)[:, :5]
        overlap = float(np.mean([len(set(a) & set(b)) / 5 for a, b in zip(top5_ref, top5_got)]))
        passed = tolerance.task is None or agree >= tolerance.task
        return TaskCheck("top-1 agreement", agree, passed,
                         f"top-1 agreement {agree * 100:.1f}% (top-5 overlap {overlap * 100:.1f}%) "
                         f"on {len(ref)} inputs")
