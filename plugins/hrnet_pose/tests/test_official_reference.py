"""pose_hrnet W48 256x192 against the official HRNet-Human-Pose-Estimation (00d7bf7,
lib/models/pose_hrnet.py get_pose_net(cfg, is_train=False) + experiments/coco/hrnet/
w48_256x192_adam_lr1e-3.yaml) on seed-0 weights, beside W32 in test_model.py. The fixture and
how it was made: tests/fixtures/ref/pose_hrnet_w48_256x192.npz (``meta``) and
tests/reference_outputs/make_reference_outputs.py.

PyTorch only: the ONNX export of this network family is compared with the official output for
W32 (test_model.py); W48's export adds ~1 min on 2 cores for the same modules, wider.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hrdeploy.testing.reference import assert_matches_reference, load_reference
from hrdeploy.testing.seeded import seeded_state_dict
from hrdeploy_hrnet_pose.spec import HRNetPoseSpec

# (max rel, sample-difference rel) measured with torch 2.13 CPU: 0.0, 0.0 with 2 threads,
# 1.3e-6, 3.2e-5 with 1 (and, for the record, ONNX Runtime 1.6e-6, 3.6e-5 via ``hrdeploy export``)
MAX_REL, DIFF_REL = 1e-5, 5e-4


def test_w48_256x192_torch_matches_official(pose_manifests: dict[str, dict[str, Any]], fixtures_dir: Path,
                                            tmp_path: Path) -> None:
    ref = load_reference(fixtures_dir / "ref" / "pose_hrnet_w48_256x192.npz")
    assert ref["meta"]["function"] == "get_pose_net(cfg, is_train=False)"
    assert ref["meta"]["reference"].endswith("experiments/coco/hrnet/w48_256x192_adam_lr1e-3.yaml")
    checkpoint = tmp_path / "pose_hrnet_w48_256x192_seeded.pth"
    torch.save(seeded_state_dict(pose_manifests["w48_256x192"], seed=0), checkpoint)
    spec = HRNetPoseSpec()
    variant = spec.variant("w48_256x192")
    model = spec.build(variant)
    assert spec.load_weights(model, checkpoint, variant) == "official pose_hrnet state_dict"
    with torch.inference_mode():
        got = model(torch.from_numpy(ref["input"])).numpy()
    assert_matches_reference("pose_hrnet w48_256x192 torch", got, ref["heatmaps"], MAX_REL, DIFF_REL)
