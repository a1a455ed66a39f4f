"""Shared by the dataset readers' checks: recognising a folder by its layout, so that
``--data KIND:PATH`` pointed at another task's dataset is refused with what the folder looks
like and the KIND that reads it instead of being misread (a COCO folder read as two ImageNet
classes), and quoting the first few offending names in an error."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

#: label files an ImageNet validation folder carries (``IMAGE_NAME LABEL`` per line)
VAL_LABEL_FILES = ("val_label.txt", "val_labels.txt", "labels.txt")
SYNSET_RE = re.compile(r"n\d{8}")
#: how many names an error message quotes
QUOTED = 5


def few(names: Sequence[str]) -> str:
    """The first names of a list for a one-line error, with how many more there are."""
    shown = ", ".join(names[:QUOTED])
    return shown + (f", ... ({len(names) - QUOTED} more)" if len(names) > QUOTED else "")


def _subdirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir()) if folder.is_dir() else []


def coco_layout(root: Path) -> str | None:
    """What makes ``root`` a COCO dataset (``annotations/*.json``, a ``person_keypoints_*.json``),
    or None."""
    root = Path(root)
    if root.is_file():
        return root.name if root.suffix.lower() == ".json" else None
    ann = root / "annotations"
    found = sorted(ann.glob("*.json")) if ann.is_dir() else []
    if found:
        return f"annotations/{found[0].name}" + (f" and {len(found) - 1} more" if len(found) > 1 else "")
    direct = sorted(root.glob("person_keypoints_*.json")) if root.is_dir() else []
    return direct[0].name if direct else None


def imagenet_layout(root: Path) -> str | None:
    """What makes ``root`` an ImageNet validation folder (a label file, ILSVRC2012_img_val/,
    synset-named class folders), or None."""
    root = Path(root)
    if not root.is_dir():
        return None
    label = next((n for n in VAL_LABEL_FILES if (root / n).is_file()), None)
    if label:
        return label
    if (root / "ILSVRC2012_img_val").is_dir():
        return "ILSVRC2012_img_val/"
    synsets = [d.name for d in _subdirs(root / "val") + _subdirs(root) if SYNSET_RE.fullmatch(d.name)]
    if synsets:
        return f"synset folders ({synsets[0]}/, ...)"
    return None


def other_task_error(root: Path, asked: str) -> tuple[str, str] | None:
    """(message, hint) when ``root`` is a dataset of another kind than ``asked``; None when
    it does not look like one of the other known kinds."""
    sniffers = {"coco": (coco_layout, "a COCO", "a pose model"),
                "imagenet": (imagenet_layout, "an ImageNet", "a classification model")}
    for kind, (sniff, name, models) in sniffers.items():
        if kind == asked:
            continue
        seen = sniff(root)
        if seen:
            return (f"{root} looks like {name} dataset ({seen}), not {asked}",
                    f"use --data {kind}:{root} with {models} (see 'hrdeploy list')")
    return None
