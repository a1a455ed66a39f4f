"""Checkpoint layouts: official, mmpose 0.x / 1.x, DataParallel; one-line diagnoses otherwise."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from hrdeploy.errors import WeightsError
from hrdeploy_hrnet_pose.spec import HRNetPoseSpec
from hrdeploy_hrnet_pose.weights import load_checkpoint_object, to_official_keys

SPEC = HRNetPoseSpec()


def _empty(manifest: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A state_dict with the manifest's keys and shapes (uninitialised: only names and shapes
    matter to the diagnosis)."""
    return {k: torch.empty(shape) for k, shape in manifest["keys"].items()}


def _mmpose(sd: dict[str, torch.Tensor], head: str) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        out[f"{head}.{k.split('.', 1)[1]}" if k.startswith("final_layer.") else "backbone." + k] = v
    return out


@pytest.fixture(scope="module")
def w32_meta_model() -> Any:
    with torch.device("meta"):
        return SPEC.build(SPEC.variant("w32_256x192"))


def test_mmpose_manifests_map_onto_the_official_keys(pose_manifests: dict[str, Any]) -> None:
    for mm, official in (("w32_256x192.mmpose", "w32_256x192"), ("w48_384x288.mmpose", "w48_384x288")):
        mapped, layout = to_official_keys(_empty(pose_manifests[mm]))
        assert layout == "mmpose 1.x checkpoint (head.final_layer)"
        assert list(mapped) == list(pose_manifests[official]["keys"])
        assert {k: list(v.shape) for k, v in mapped.items()} == pose_manifests[official]["keys"]


def test_official_and_mmpose_files_load_strictly(seeded_w32: dict[str, torch.Tensor], tmp_path: Path) -> None:
    variant = SPEC.variant("w32_256x192")
    cases = {
        "official.pth": (dict(seeded_w32), "official pose_hrnet state_dict"),
        "mmpose0.pth": ({"meta": {"epoch": 210, "mmpose_version": "0.29.0"},
                         "state_dict": _mmpose(seeded_w32, "keypoint_head.final_layer")},
                        "mmpose 0.x checkpoint (keypoint_head.final_layer) ('state_dict' wrapper)"),
        "mmpose1_dp.pth": ({"meta": {"dataset_meta": {"dataset_name": "coco"}},
                            "state_dict": {"module." + k: v for k, v in
                                           {**_mmpose(seeded_w32, "head.final_layer"),
                                            "data_preprocessor.mean": torch.zeros(3, 1, 1)}.items()}},
                           "mmpose 1.x checkpoint (head.final_layer) ('state_dict' wrapper, "
                           "'module.' prefix stripped)"),
    }
    for name, (obj, expected) in cases.items():
        torch.save(obj, tmp_path / name)
        model = SPEC.build(variant)
        assert SPEC.load_weights(model, tmp_path / name, variant) == expected
        assert torch.equal(model.state_dict()["final_layer.weight"], seeded_w32["final_layer.weight"])
        assert torch.equal(model.state_dict()["stage3.3.fuse_layers.2.1.0.1.running_mean"],
                           seeded_w32["stage3.3.fuse_layers.2.1.0.1.running_mean"])
        (tmp_path / name).unlink()


def _error(model: Any, obj: Any, width: int = 32) -> str:
    with pytest.raises(WeightsError) as info:
        load_checkpoint_object(model, obj, width, "ckpt.pth")
    text = str(info.value)
    assert "\n" not in text
    return text


def test_diagnoses_say_what_the_checkpoint_is(w32_meta_model: Any, pose_manifests: dict[str, Any],
                                              fixtures_dir: Path) -> None:
    official = fixtures_dir / "official"
    w48 = _empty(pose_manifests["w48_256x192"])
    assert "this is a w48 checkpoint: choose a w48_* variant" in _error(w32_meta_model, w48)
    assert "this is a w48 checkpoint" in _error(w32_meta_model, {"state_dict": _mmpose(w48, "head.final_layer")})
    dekr = _empty(json.loads((official / "pose" / "dekr_hrnet_w32_coco.json").read_text()))
    assert "this looks like a DEKR (bottom-up) model" in _error(w32_meta_model, dekr)
    cls = _empty(json.loads((official / "hrnet_cls" / "w32.official.json").read_text()))
    assert "this looks like an HRNet classification model" in _error(w32_meta_model, cls)
    mmpretrain = _empty(json.loads((official / "hrnet_cls" / "w32.mmpretrain.json").read_text()))
    assert "classification" in _error(w32_meta_model, {"meta": {}, "state_dict": mmpretrain})
    w32 = _empty(pose_manifests["w32_256x192"])
    other_head = {**w32, "final_layer.weight": torch.empty(14, 32, 1, 1), "final_layer.bias": torch.empty(14)}
    assert "predicts 14 keypoints" in _error(w32_meta_model, other_head)
    missing = dict(w32)
    del missing["stage2.0.branches.0.0.bn1.running_var"]
    assert "1 missing keys (e.g. stage2.0.branches.0.0.bn1.running_var)" in _error(w32_meta_model, missing)
    assert _error(w32_meta_model, {"epoch": 3}) == "ckpt.pth holds no tensors (top-level keys: epoch)"


def test_a_file_that_is_no_checkpoint(tmp_path: Path) -> None:
    bad = tmp_path / "notes.pth"
    bad.write_text("hello")
    variant = SPEC.variant("w32_256x192")
    with torch.device("meta"):
        model = SPEC.build(variant)
    with pytest.raises(WeightsError, match="^cannot read notes.pth: not a PyTorch checkpoint or corrupt"):
        SPEC.load_weights(model, bad, variant)
    with pytest.raises(WeightsError, match="checkpoint not found"):
        SPEC.load_weights(model, tmp_path / "absent.pth", variant)
