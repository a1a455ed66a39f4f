"""Checkpoint layouts of top-down HRNet pose and their mapping to the official key names.

* official ``pose_hrnet_w{32,48}_{256x192,384x288}.pth``: a plain state_dict (the official
  test.py loads it with strict=False; we load strictly);
* mmpose 0.x: ``{"meta", "state_dict"}`` with ``backbone.`` + official keys and
  ``keypoint_head.final_layer.*``; mmpose 1.x: the same with ``head.final_layer.*`` (and
  possibly ``data_preprocessor.*`` buffers, ignored);
* any of these saved from DataParallel (``module.`` prefix).

Files are read and unwrapped by :mod:`hrdeploy.checkpoints`; what is pose-specific is here.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from hrdeploy.checkpoints import KeyMismatch, read_checkpoint, unwrap_state_dict
from hrdeploy.errors import WeightsError

if TYPE_CHECKING:
    import torch

HEAD_PREFIXES = ("keypoint_head.final_layer.", "head.final_layer.")
DEKR_MARKERS = ("transition_heatmap.", "head_heatmap.", "offset_feature_layers.", "offset_final_layer.",
                "transition_offset.")
CLS_MARKERS = ("incre_modules.", "downsamp_modules.", "classifier.", "head.fc.", "neck.")


def to_official_keys(sd: dict[str, "torch.Tensor"]) -> tuple[dict[str, "torch.Tensor"], str]:
    """Map mmpose names to the official ones; returns the dict and the layout name."""
    if not any(k.startswith("backbone.") for k in sd):
        return sd, "official pose_hrnet state_dict"
    layout = "mmpose checkpoint"
    out: dict[str, Any] = {}
    for k, v in sd.items():
        if k.startswith("data_preprocessor."):
            continue
        if k.startswith("backbone."):
            out[k[len("backbone."):]] = v
            continue
        for prefix in HEAD_PREFIXES:
            if k.startswith(prefix):
                out["final_layer." + k[len(prefix):]] = v
                layout = ("mmpose 0.x checkpoint (keypoint_head.final_layer)" if prefix.startswith("keypoint_head")
                          else "mmpose 1.x checkpoint (head.final_layer)")
                break
        else:
            out[k] = v  # left for the diagnosis
    return out, layout


def diagnose(sd: Mapping[str, Any], expected: Mapping[str, Any], width: int) -> str | None:
    """One line saying what the checkpoint is when it does not fit pose_hrnet w{width}."""
    keys = list(sd)
    if any(k.startswith(DEKR_MARKERS) for k in keys):
        return "this looks like a DEKR (bottom-up) model: use the dekr model"
    if any(k.startswith(CLS_MARKERS) or ".incre_modules." in k for k in keys):
        return "this looks like an HRNet classification model: use hrnet_cls"
    if any("deconv_layers" in k for k in keys):
        return "this is a SimpleBaseline-style model with a deconvolution head, not pose_hrnet"
    w = sd.get("transition1.0.0.weight")
    if w is not None and hasattr(w, "shape") and len(w.shape) == 4 and int(w.shape[0]) != width:
        return f"this is a w{int(w.shape[0])} checkpoint: choose a w{int(w.shape[0])}_* variant"
    head = sd.get("final_layer.weight")
    if head is not None and hasattr(head, "shape") and int(head.shape[0]) != int(expected["final_layer.weight"][0]):
        return (f"its head predicts {int(head.shape[0])} keypoints, not the 17 COCO keypoints "
                "(a model for another dataset)")
    if "final_layer.weight" not in sd and any(k.startswith("stage4.") for k in keys):
        return "it has an HRNet backbone but no pose_hrnet final_layer (another head or task)"
    if not any(k.startswith("stage4.") for k in keys):
        return "it is not an HRNet (no stage4 keys)"
    return None


def load_pose_hrnet(module: "torch.nn.Module", path: Path, width: int) -> str:
    """Load the checkpoint file ``path`` strictly into ``module``; returns the layout description."""
    return load_checkpoint_object(module, read_checkpoint(path), width, Path(path).name)


def load_checkpoint_object(module: "torch.nn.Module", raw: Any, width: int, name: str = "checkpoint") -> str:
    """Load an already unpickled checkpoint (any supported layout) strictly into ``module``."""
    sd, notes = unwrap_state_dict(raw, name)
    sd, layout = to_official_keys(sd)
    expected = {k: list(v.shape) for k, v in module.state_dict().items()}
    mismatch = KeyMismatch.between(sd, expected)
    if not mismatch.ok:
        why = diagnose(sd, expected, width) or "keys do not match pose_hrnet: " + mismatch.describe()
        raise WeightsError(f"{name} does not fit pose_hrnet w{width}: {why}")
    module.load_state_dict({k: sd[k] for k in expected}, strict=True)
    return layout + (f" ({', '.join(notes)})" if notes else "")


def width_of_variant(name: str) -> int:
    m = re.match(r"w(\d+)_", name)
    if not m:
        raise ValueError(f"not a pose_hrnet variant name: {name!r}")
    return int(m.group(1))
