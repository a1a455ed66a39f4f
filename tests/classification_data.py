"""Builders for classification tests: ImageNet-format folders and a model that is right on
known images, so the metric can be checked end to end."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hrdeploy.testing.graphs import save_classifier

# a colour -> class rule the hand-built model implements exactly
COLOURS = {"red": ((20, 20, 235), 100), "green": ((20, 235, 20), 200), "blue": ((235, 20, 20), 300)}


def colour_images(folder: Path, per_colour: int = 4, seed: int = 0) -> list[tuple[Path, int]]:
    import cv2

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    n = 0
    for name, (bgr, label) in COLOURS.items():
        for k in range(per_colour):
            h, w = (300, 400) if k % 2 else (420, 320)
            img = np.clip(np.array(bgr, np.float32) + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
            n += 1
            path = folder / f"ILSVRC2012_val_{n:08d}.JPEG"
            cv2.imwrite(str(path), img)
            out.append((path, label))
    return out


def imagenet_label_layout(root: Path, folder_name: str = "ILSVRC2012_img_val", per_colour: int = 4) -> list[tuple[Path, int]]:
    items = colour_images(root / folder_name, per_colour)
    (root / "val_label.txt").write_text("".join(f"{p.name} {label}\n" for p, label in items))
    return items


def imagenet_synset_layout(root: Path, per_colour: int = 2) -> list[tuple[Path, int]]:
    from hrdeploy.tasks.classification import imagenet_classes

    wnids = [w for w, _ in imagenet_classes()]
    items = colour_images(root / "tmp", per_colour)
    out = []
    for p, label in items:
        d = root / "val" / wnids[label]
        d.mkdir(parents=True, exist_ok=True)
        p.rename(d / p.name)
        out.append((d / p.name, label))
    (root / "tmp").rmdir()
    return out


def colour_classifier_onnx(path: Path) -> Path:
    """logits = channel means of the normalised crop @ W, with W making red -> 100,
    green -> 200, blue -> 300; carries hrnet_cls/w18 metadata so the ImageNet pipeline is used."""
    from onnx import helper, numpy_helper

    w = np.zeros((3, 1000), np.float32)
    for c, (_, label) in enumerate(COLOURS.values()):  # channel c (RGB order) -> its class
        w[:, label] = -1.0
        w[c, label] = 1.0
    nodes = [helper.make_node("ReduceMean", ["image", "axes"], ["m"], keepdims=0),
             helper.make_node("MatMul", ["m", "w"], ["logits"])]
    return save_classifier(path, nodes, [numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
                                         numpy_helper.from_array(w, "w")],
                           "hand-built colour classifier", opset=18, name="colour")


def colour_eval_case(root: Path, per_colour: int = 4, *args: str) -> dict[str, Any]:
    """An ImageNet-format colour set under ``root``, the colour classifier, and its evaluation
    in this process (``eval ... ARGS``): the single-process result other runs must equal."""
    from hrdeploy.cli import main

    imagenet_label_layout(root / "data", per_colour=per_colour)
    model = colour_classifier_onnx(root / "colour.onnx")
    local = root / "local" / "r.json"
    data = f"imagenet:{root / 'data'}"
    main(["eval", str(model), "--data", data, "-o", str(local), *args])
    return {"model": model, "data": data, "local": local, "root": root}
