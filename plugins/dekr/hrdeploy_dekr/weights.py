"""Checkpoint layouts DEKR accepts, and one-line diagnoses of those it does not.

Accepted: the official ``pose_dekr_hrnetw{32,48}_coco.pth`` (a plain state_dict, loaded
strictly as valid.py does), optionally wrapped in ``{"state_dict": ...}`` / ``{"model": ...}``
and/or carrying DataParallel's ``module.`` prefix (the Ascend export strips it too); files are
read and unwrapped by :mod:`hrdeploy.checkpoints`.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from hrdeploy.checkpoints import KeyMismatch, read_state_dict
from hrdeploy.errors import WeightsError

if TYPE_CHECKING:
    import torch


def checkpoint_width(sd: Mapping[str, Any]) -> int | None:
    """HRNet width of a DEKR (or any official HRNet) state_dict, from stage 2's first conv."""
    w = sd.get("stage2.0.branches.0.0.conv1.weight")
    return int(w.shape[0]) if w is not None and hasattr(w, "shape") else None


def diagnose(sd: Mapping[str, Any], expected: Mapping[str, tuple[int, ...]], width: int) -> str | None:
    """One line saying what ``sd`` is when it is not a DEKR-w``width`` state_dict, else None."""
    keys = set(sd)
    if not keys:
        return "the checkpoint holds no tensors"
    if {"l1.weight", "l2.weight", "l3.weight"} <= keys and len(keys) <= 8:
        return ("this is the rescoring net (final_rescore_coco_kpt.pth), not the pose network: "
                "pass it as the 'rescore' model option")
    if any(k.startswith(("backbone.", "keypoint_head.", "head.")) for k in keys):
        return ("this is an mmpose checkpoint (backbone./head. keys); use the official DEKR "
                "checkpoint pose_dekr_hrnetw32_coco.pth / pose_dekr_hrnetw48_coco.pth")
    has_offset = any(k.startswith("offset_feature_layers.") for k in keys)
    if not has_offset:
        if "final_layer.weight" in keys and any(k.startswith("stage4.") for k in keys):
            return ("this looks like a top-down pose model (pose_hrnet final_layer), not DEKR: "
                    "use the hrnet_pose model")
        if any(k.startswith("final_layers.") for k in keys) or any(k.startswith("deconv_layers.") for k in keys):
            return "this looks like a HigherHRNet checkpoint (final_layers/deconv_layers), not DEKR"
        if any(k.startswith(("incre_modules.", "downsamp_modules.", "classifier.")) for k in keys):
            return ("this is an HRNet ImageNet classification checkpoint (the DEKR training init), "
                    "not a trained DEKR model")
        return "no DEKR offset heads (offset_feature_layers.*) in the checkpoint: not a DEKR model"
    found = checkpoint_width(sd)
    if found is not None and found != width:
        return f"this is a w{found} checkpoint; use --variant w{found}"
    hm = sd.get("head_heatmap.1.weight")
    if hm is not None and hasattr(hm, "shape") and int(hm.shape[0]) != 18:
        return (f"the heatmap head has {int(hm.shape[0])} channels, not 18 (17 COCO joints + centre): "
                "a CrowdPose or other dataset model")
    mismatch = KeyMismatch.between(sd, expected)
    return None if mismatch.ok else f"not a DEKR w{width} checkpoint: {mismatch.describe()}"


def load_dekr_weights(module: "torch.nn.Module", path: Path, width: int) -> str:
    """Load ``path`` strictly into a :class:`~hrdeploy_dekr.model.DEKRNet`; return a short
    description of the layout found, or raise :class:`WeightsError` with a diagnosis."""
    sd, notes = read_state_dict(path, "give the path of pose_dekr_hrnetw32_coco.pth (or w48)")
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    problem = diagnose(sd, expected, width)
    if problem:
        raise WeightsError(f"{Path(path).name}: {problem}")
    module.load_state_dict(sd, strict=True)
    return ", ".join([f"official DEKR w{width} state_dict"] + notes)
