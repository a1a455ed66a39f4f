"""Checkpoint reading and the one-line diagnoses of checkpoints that are not DEKR."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hrdeploy.errors import WeightsError
from hrdeploy_dekr.model import DEKRNet
from hrdeploy_dekr.weights import diagnose, load_dekr_weights


def _shapes_only(manifest: Path, prefix: str = "") -> dict[str, torch.Tensor]:
    keys = json.loads(manifest.read_text())["keys"]
    return {prefix + k: torch.empty(v, device="meta") for k, v in keys.items()}


@pytest.fixture(scope="module")
def expected_w32(pose_manifests: Path) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v) for k, v in json.loads((pose_manifests / "dekr_hrnet_w32_coco.json").read_text())["keys"].items()}


def test_official_checkpoint_in_wrapper_with_module_prefix_loads(w32_state, tmp_path: Path) -> None:
    path = tmp_path / "pose_dekr_hrnetw32_coco.pth"
    torch.save({"epoch": 140, "state_dict": {"module." + k: v for k, v in w32_state.items()}}, path)
    with torch.device("meta"):
        model = DEKRNet(32)
    model.to_empty(device="cpu")
    desc = load_dekr_weights(model, path, 32)
    assert "official DEKR w32" in desc and "'module.' prefix stripped" in desc and "state_dict" in desc
    key = "offset_final_layer.16.weight"
    assert torch.equal(model.state_dict()[key], w32_state[key])


@pytest.mark.parametrize("manifest,prefix,needle", [
    ("dekr_hrnet_w48_coco.json", "", "this is a w48 checkpoint; use --variant w48"),
    ("pose_hrnet_w32_256x192.json", "", "top-down pose model"),
    ("pose_hrnet_w32_256x192.mmpose.json", "", "mmpose checkpoint"),
    ("dekr_rescore_coco.json", "", "rescoring net"),
])
def test_wrong_checkpoints_are_named(manifest: str, prefix: str, needle: str, pose_manifests: Path,
                                     expected_w32) -> None:
    problem = diagnose(_shapes_only(pose_manifests / manifest, prefix), expected_w32, 32)
    assert problem is not None and needle in problem
    assert "\n" not in problem


def test_incomplete_checkpoint_is_counted(pose_manifests: Path, expected_w32) -> None:
    sd = _shapes_only(pose_manifests / "dekr_hrnet_w32_coco.json")
    del sd["offset_feature_layers.5.1.regular_matrix"]
    sd["extra.weight"] = torch.empty(3, device="meta")
    problem = diagnose(sd, expected_w32, 32)
    assert "1 missing keys (e.g. offset_feature_layers.5.1.regular_matrix)" in problem
    assert "1 unexpected keys (e.g. extra.weight)" in problem
    assert diagnose(_shapes_only(pose_manifests / "dekr_hrnet_w32_coco.json"), expected_w32, 32) is None


def test_load_raises_one_line_weights_error(tmp_path: Path) -> None:
    path = tmp_path / "pose_hrnet_w32_256x192.pth"
    torch.save({"final_layer.weight": torch.zeros(17, 32, 1, 1), "stage4.0.x": torch.zeros(1)}, path)
    with torch.device("meta"):
        model = DEKRNet(32)
    with pytest.raises(WeightsError, match="top-down pose model") as err:
        load_dekr_weights(model, path, 32)
    assert "\n" not in str(err.value)
    bad = tmp_path / "notes.pth"
    bad.write_text("not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read"):
        load_dekr_weights(model, bad, 32)
    with pytest.raises(WeightsError, match="not found"):
        load_dekr_weights(model, tmp_path / "missing.pth", 32)
