"""DEKR's rescoring net (``predictOKS.PredictOKSNet``) in numpy.

The net predicts a pose's OKS from its shape and joint scores; valid.py multiplies the pose score
by it. Deployment boxes have no torch, so the weights travel as an ``.npz`` file
(``l1.weight`` [256, 74], ``l1.bias``, ``l2.*`` [256, 256], ``l3.*`` [1, 256]) and the three
Linear layers run here.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from hrdeploy.errors import WeightsError

#: limbs of the feature (JOINT_COCO_LINK_1/2 of lib/utils/rescore.py)
LINK_1 = np.array([0, 0, 1, 1, 2, 3, 4, 5, 5, 5, 6, 6, 7, 8, 11, 11, 12, 13, 14])
LINK_2 = np.array([1, 2, 2, 3, 4, 5, 6, 6, 7, 11, 8, 12, 9, 10, 12, 13, 14, 15, 16])
KEYS = ("l1.weight", "l1.bias", "l2.weight", "l2.bias", "l3.weight", "l3.bias")
NUM_FEATURES = 2 * len(LINK_1) + len(LINK_1) + 17   # 74


def rescore_features(poses: np.ndarray) -> np.ndarray:
    """The official ``get_feature`` of (K, 17, 3) image-px poses: limb vectors (19 x (dx, dy))
    and limb lengths, both divided by the torso size (mean of limbs 5-11 and 6-12, at least 1),
    then the 17 joint scores: (K, 74) float32."""
    p = np.asarray(poses, dtype=np.float32)
    rel = p[:, LINK_1, :2] - p[:, LINK_2, :2]                        # (K, 19, 2)
    length = (rel[:, :, 0] ** 2 + rel[:, :, 1] ** 2) ** 0.5           # (K, 19)
    torso = (length[:, 9] + length[:, 11]) / 2
    torso = np.where(torso < 1, np.float32(1), torso).astype(np.float32)
    length = length / torso[:, None]
    rel = rel / torso[:, None, None]
    return np.concatenate([rel.reshape(len(p), -1), length, p[:, :, 2]], axis=1).astype(np.float32)


class Rescorer:
    """Linear(74, 256) - ReLU - Linear(256, 256) - ReLU - Linear(256, 1) in float32."""

    def __init__(self, weights: Mapping[str, np.ndarray], source: str = "") -> None:
        missing = [k for k in KEYS if k not in weights]
        if missing:
            raise WeightsError(f"rescore weights {source or ''} lack {', '.join(missing)}: "
                               "expected the layout of final_rescore_coco_kpt.pth (l1, l2, l3)")
        self.w = {k: np.asarray(weights[k], dtype=np.float32) for k in KEYS}
        if self.w["l1.weight"].shape[1] != NUM_FEATURES or self.w["l3.weight"].shape[0] != 1:
            raise WeightsError(
                f"rescore net {source} has l1 {list(self.w['l1.weight'].shape)} and l3 "
                f"{list(self.w['l3.weight'].shape)}: expected [hidden, 74] and [1, hidden] (a COCO "
                "rescore net; CrowdPose nets use 14 joints)")
        self.source = source

    def predict(self, features: np.ndarray) -> np.ndarray:
        # einsum, not BLAS: a few dozen rows are faster in one thread than after waking
        # OpenBLAS's thread pool on a busy machine
        h = np.maximum(np.einsum("nk,ok->no", features, self.w["l1.weight"]) + self.w["l1.bias"], 0)
        h = np.maximum(np.einsum("nk,ok->no", h, self.w["l2.weight"]) + self.w["l2.bias"], 0)
        out = (np.einsum("nk,ok->no", h, self.w["l3.weight"]) + self.w["l3.bias"])[:, 0]
        return np.where(np.isnan(out), np.float32(0), out).astype(np.float32)

    def rescore(self, poses: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """``rescore_valid``: net(feature) x pose score."""
        return self.predict(rescore_features(poses)) * np.asarray(scores, np.float32)

    # -- the .npz carried into artifacts ----------------------------------------------------
    def to_npz_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, **self.w)
        return buf.getvalue()

    @classmethod
    def from_npz(cls, path: Path | str) -> "Rescorer":
        path = Path(path)
        if not path.is_file():
            raise WeightsError(f"rescore weights not found: {path}")
        try:
            with np.load(path) as z:
                return cls({k: z[k] for k in z.files}, source=str(path))
        except (OSError, ValueError) as e:
            raise WeightsError(f"{path} is not a rescore .npz file: {e}") from None


def rescorer_from_checkpoint(path: Path | str) -> Rescorer:
    """Read ``final_rescore_coco_kpt.pth`` (a plain state_dict; ``module.`` stripped) with
    torch, or an ``.npz`` written by :meth:`Rescorer.to_npz_bytes`."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"rescore checkpoint not found: {path}",
                           "give the path of final_rescore_coco_kpt.pth")
    if path.suffix == ".npz":
        return Rescorer.from_npz(path)
    import torch

    try:
        obj: Any = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise WeightsError(f"cannot read rescore checkpoint {path}: {type(e).__name__}: {str(e)[:120]}") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state_dict of the rescore net")
    sd = {k[7:] if k.startswith("module.") else k: v for k, v in obj.items()}
    if any(k.startswith(("conv1", "stage", "offset_feature_layers")) for k in sd):
        raise WeightsError(f"{path} is a DEKR pose network checkpoint, not the rescore net "
                           "(final_rescore_coco_kpt.pth)")
    return Rescorer({k: v.detach().cpu().numpy() for k, v in sd.items() if hasattr(v, "detach")},
                    source=str(path))
