"""Architecture: state_dict keys, order and shapes against the official manifests (meta device,
no memory or time spent on weights), and the shared backbone against the pose/DEKR manifests."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from hrdeploy.nn.hrnet import (HRNET_CLS_VARIANTS, HRNetBackbone, hrnet_cls_config, pose_hrnet_config,
                               state_dict_shapes)
from hrdeploy_hrnet_cls.model import HRNetClassifier

from hrnet_cls_helpers import manifest

BACKBONE_ROOTS = {"conv1", "bn1", "conv2", "bn2", "layer1", "transition1", "stage2",
                  "transition2", "stage3", "transition3", "stage4"}


@pytest.mark.parametrize("variant", HRNET_CLS_VARIANTS)
def test_state_dict_matches_official_manifest(variant, fixtures_dir, meta_model):
    official = manifest(fixtures_dir, f"hrnet_cls/{variant}.official.json")
    timm = manifest(fixtures_dir, f"hrnet_cls/{variant}.timm.json")
    model = meta_model(variant)
    assert isinstance(model, HRNetClassifier) and not model.training
    ours = list(state_dict_shapes(model).items())
    assert ours == list(official["keys"].items())      # names, order and shapes
    assert ours == list(timm["keys"].items())
    assert sum(p.numel() for p in model.parameters()) == official["params"]


@pytest.mark.parametrize("name,config", [
    ("pose/pose_hrnet_w32_256x192.json", pose_hrnet_config(32)),
    ("pose/pose_hrnet_w48_384x288.json", pose_hrnet_config("w48")),
    ("pose/dekr_hrnet_w32_coco.json", hrnet_cls_config(32)),
    ("pose/dekr_hrnet_w48_coco.json", hrnet_cls_config(48)),
])
def test_shared_backbone_matches_pose_and_dekr_manifests(name, config, fixtures_dir):
    keys = manifest(fixtures_dir, name)["keys"]
    backbone = [(k, v) for k, v in keys.items() if k.split(".")[0] in BACKBONE_ROOTS]
    with torch.device("meta"):
        model = HRNetBackbone(config)
    assert list(state_dict_shapes(model).items()) == backbone
    # everything else in the manifest is the model's head, after the backbone
    assert list(keys)[: len(backbone)] == [k for k, _ in backbone]


def test_single_scale_stage4_outputs_only_the_high_resolution_branch():
    # pose_hrnet's layout (checked against its manifest above) on a small width for speed
    config = replace(hrnet_cls_config("w18_small_v1"), last_multi_scale_output=False)
    assert pose_hrnet_config(32).last_multi_scale_output is False
    model = HRNetBackbone(config).eval()
    with torch.inference_mode():
        feats = model.forward_features(torch.zeros(1, 3, 128, 96))
    assert [tuple(f.shape) for f in feats] == [(1, 16, 32, 24)]
    assert model.stage_channels == [16]
    assert not any(k.startswith("stage4.0.fuse_layers.1.") for k in model.state_dict())


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="w18_small_v1"):
        hrnet_cls_config("w20")
    with pytest.raises(ValueError):
        pose_hrnet_config(18)


def test_other_input_sizes_give_logits(small_model):
    # the mean over H and W (not a fixed 7x7 window) keeps any size multiple of 32 valid
    with torch.inference_mode():
        y = small_model(torch.randn(1, 3, 256, 320, generator=torch.Generator().manual_seed(0)))
    assert y.shape == (1, 1000) and torch.isfinite(y).all()
