"""Checkpoint layouts: current timm, timm v0.4.5 (InplaceABN) and Ascend's patched v0.4.5,
wrappers and prefixes, and the one-line errors for checkpoints that do not fit."""
from __future__ import annotations

import argparse
import re
from collections import OrderedDict

import numpy as np
import pytest
import torch

from hrdeploy.errors import WeightsError
from hrdeploy.testing.seeded import load_manifest
from hrdeploy_tresnet.model import build_tresnet
from hrdeploy_tresnet.weights import IABN_EPS, convert, detect_layout


def empty_state(manifest: dict) -> "OrderedDict[str, torch.Tensor]":
    """Uninitialised tensors of a manifest's shapes: layout checks only read names and shapes."""
    return OrderedDict((k, torch.empty(s, dtype=torch.int64 if k.endswith("num_batches_tracked") else torch.float32))
                       for k, s in manifest["keys"].items())


def test_timm_checkpoint_file_loads_strictly(spec, seeded_m, timm_m_checkpoint):
    variant = spec.variant("m")
    module = spec.build(variant)
    assert spec.load_weights(module, timm_m_checkpoint, variant) == "timm tresnet_m checkpoint"
    for key, value in module.state_dict().items():
        assert torch.equal(value, seeded_m[key]), key


def test_timm_training_checkpoint_with_namespace(spec, seeded_m, tmp_path):
    """timm's train.py saves args (an argparse Namespace) next to the weights."""
    path = tmp_path / "checkpoint-12.pth.tar"
    torch.save({"epoch": 12, "arch": "tresnet_m", "args": argparse.Namespace(lr=0.1), "version": 2,
                "state_dict": seeded_m, "state_dict_ema": seeded_m}, path)
    variant = spec.variant("m")
    module = spec.build(variant)
    text = spec.load_weights(module, path, variant)
    assert text == "timm tresnet_m checkpoint: 'state_dict' wrapper"
    assert torch.equal(module.head.fc.bias, seeded_m["head.fc.bias"])


@pytest.mark.parametrize("wrapper", [None, "state_dict", "model", "state_dict_ema"])
@pytest.mark.parametrize("prefix", ["", "module."])
def test_wrappers_and_prefixes(wrapper, prefix, seeded_m, expected_state):
    sd = OrderedDict((prefix + k, v) for k, v in seeded_m.items())
    obj = sd if wrapper is None else {wrapper: sd, "epoch": 3}
    state, text = convert(obj, "m", expected_state("m"))
    assert list(state) == list(expected_state("m"))
    assert state["body.conv1.conv.weight"] is seeded_m["body.conv1.conv.weight"]
    assert (f"'{wrapper}' wrapper" in text) == (wrapper is not None)
    assert ("'module.' prefix stripped" in text) == bool(prefix)


def test_seeded_v045_checkpoint_loads_through_the_remap(seeded_v045, expected_state):
    v045 = seeded_v045
    assert detect_layout(v045) == "timm045"
    state, text = convert(v045, "m", expected_state("m"))
    module = build_tresnet("m")
    module.load_state_dict(state, strict=True)
    assert "timm v0.4.5 (InplaceABN) tresnet_m checkpoint" in text
    assert "60 InplaceABN weights -> |w| + 1e-05" in text
    # IABN weights become |w| + eps, everything else is copied
    torch.testing.assert_close(module.body.layer2[0].conv1.bn.weight,
                               v045["body.layer2.0.conv1.0.1.weight"].abs() + IABN_EPS, rtol=0, atol=0)
    assert torch.equal(module.body.layer3[0].downsample[1].conv.weight, v045["body.layer3.0.downsample.1.0.weight"])
    assert int(module.body.conv1.bn.num_batches_tracked) == 0


def test_v045_logits_equal_current_logits(seeded_m, manifest, model_m, logits_m, reference_input, v045_names):
    """Write the seeded timm checkpoint the way InplaceABN stores it (random signs, gamma
    minus eps; |gamma| + eps is what IABN applies) under v0.4.5 names: the remap must give
    the same network."""
    v045_keys = manifest("m.timm045")["keys"]
    signs = torch.Generator().manual_seed(7)
    current = OrderedDict()
    for key, value in seeded_m.items():
        if key.endswith(".bn.weight"):
            flip = torch.randint(0, 2, value.shape, generator=signs) * 2 - 1
            value = (value - IABN_EPS) * flip
        current[key] = value
    old = v045_names(current, set(v045_keys))
    assert {k: list(v.shape) for k, v in old.items()} == v045_keys
    assert any((v < 0).any() for k, v in old.items() if re.search(r"\.1\.weight$", k))

    state, _ = convert(old, "m", model_m.state_dict())
    module = build_tresnet("m")
    module.load_state_dict(state, strict=True)
    with torch.no_grad():
        y = module(reference_input).numpy()
    err = float(np.abs(y - logits_m).max() / np.abs(logits_m).max())
    diff_err = float(np.abs((y[0] - y[1]) - (logits_m[0] - logits_m[1])).max()
                     / np.abs(logits_m[0] - logits_m[1]).max())
    print(f"v0.4.5 vs timm logits: max rel {err:.2e}, sample-difference rel {diff_err:.2e}")
    assert err < 1e-5 and diff_err < 1e-3


def test_ascend_checkpoint_loads_into_m_ascend(ascend_model, seeded_ascend):
    module, text = ascend_model
    assert text == ("Ascend-patched timm v0.4.5 tresnet_m checkpoint: 'state_dict' wrapper, 'module.' prefix "
                    "stripped, renamed to timm names (60 BatchNorms copied as is)")
    # plain BN: no |w| + eps
    assert torch.equal(module.body.layer2[0].conv1.bn.weight, seeded_ascend["body.layer2.0.conv1.0.1.weight"])
    assert torch.equal(module.body.conv1.bn.running_var, seeded_ascend["body.conv1.1.running_var"])
    assert torch.equal(module.body.layer4[0].downsample[1].bn.bias, seeded_ascend["body.layer4.0.downsample.1.1.bias"])


def test_v045_blur_filter_buffers_are_dropped(manifest, expected_state):
    """no_aa_jit=True builds store the blur filter of the three stride-2 convs."""
    sd = empty_state(manifest("m.timm045"))
    for key in ("body.layer2.0.conv1.1.op.filt", "body.layer3.0.conv2.1.op.filt", "body.layer4.0.conv2.1.op.filt"):
        sd[key] = torch.ones(1, 1, 3, 3)
    state, _ = convert(sd, "m", expected_state("m"))
    assert list(state) == list(expected_state("m"))


# -- checkpoints that do not fit -----------------------------------------------------------------

def _error(obj, variant: str, expected) -> str:
    with pytest.raises(WeightsError) as info:
        convert(obj, variant, expected)
    text = str(info.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("name, variant, pattern", [
    ("tresnet/tresnet_l.timm.json", "m", r"^this is a tresnet_l checkpoint \(timm layout\), not tresnet_m \(use variant l\)$"),
    ("tresnet/tresnet_xl.timm045.json", "l", r"^this is a tresnet_xl checkpoint \(timm v0.4.5 \(InplaceABN\) layout\)"),
    ("tresnet/tresnet_m.timm.json", "xl", r"^this is a tresnet_m checkpoint .*use variant m"),
    ("tresnet/tresnet_m.timm.json", "m_ascend", r"timm tresnet_m checkpoint, trained for timm's network .*use variant m\)$"),
    ("hrnet_cls/w18_small_v1.official.json", "m", r"^this looks like an HRNet-C classification checkpoint: use model hrnet_cls$"),
    ("hrnet_cls/w18.mmpretrain.json", "m", r"HRNet-C classification checkpoint \(mmpretrain layout\)"),
    ("pose/pose_hrnet_w32_256x192.json", "m", r"^this looks like an HRNet top-down pose checkpoint: use model hrnet_pose$"),
    ("pose/pose_hrnet_w32_256x192.mmpose.json", "m", r"HRNet top-down pose checkpoint \(mmpose layout\)"),
    ("pose/dekr_hrnet_w32_coco.json", "m", r"^this looks like a DEKR \(bottom-up pose\) checkpoint"),
])
def test_wrong_checkpoints_say_what_they_are(name, variant, pattern, fixtures_dir, expected_state):
    sd = empty_state(load_manifest(fixtures_dir / "official" / name))
    assert re.search(pattern, _error(sd, variant, expected_state(variant)))


def test_ascend_checkpoint_into_timm_variant(ascend_manifest, expected_state):
    text = _error(empty_state(ascend_manifest), "m", expected_state("m"))
    assert text.startswith("this is an Ascend-patched TResNet-M checkpoint")
    assert text.endswith("(use variant m_ascend)")


def test_incomplete_and_modified_checkpoints(manifest, expected_state):
    sd = empty_state(manifest("m.timm"))
    del sd["body.layer3.4.se.fc1.bias"]
    assert _error(sd, "m", expected_state("m")) == (
        "incomplete or modified tresnet_m checkpoint (timm layout): 1 missing keys "
        "(e.g. body.layer3.4.se.fc1.bias)")

    sd = empty_state(manifest("m.timm"))
    sd["body.layer1.0.se.fc1.weight"] = torch.empty(32, 64, 1, 1)
    assert _error(sd, "m", expected_state("m")) == (
        "incomplete or modified tresnet_m checkpoint (timm layout): 1 shape mismatches "
        "(e.g. body.layer1.0.se.fc1.weight: [32, 64, 1, 1] vs [64, 64, 1, 1])")

    sd = empty_state(manifest("m.timm"))
    sd["head.fc.weight"], sd["head.fc.bias"] = torch.empty(11221, 2048), torch.empty(11221)
    assert "11221-class head (ImageNet-21k)" in _error(sd, "m", expected_state("m"))


def test_not_a_tresnet_at_all(expected_state):
    text = _error({"encoder.weight": torch.zeros(3), "decoder.bias": torch.zeros(2)}, "m", expected_state("m"))
    assert text == "this is not a TResNet checkpoint (2 tensors, first keys: encoder.weight, decoder.bias)"
    assert _error([torch.zeros(1)], "m", expected_state("m")) == "the checkpoint holds a list, not a state_dict"
    assert _error({"epoch": 3, "best": 0.5}, "m", expected_state("m")) == (
        "the checkpoint holds no tensors (top-level keys: epoch, best)")


class _Pickled:
    """Stands for a whole pickled model object."""


def test_unreadable_files(spec, built, tmp_path):
    variant = spec.variant("m")
    module = built("m")
    cases = {
        "missing.pth": None,
        "garbage.pth": b"\x00not a checkpoint at all",
        "object.pth": _Pickled(),
    }
    messages = {}
    for name, content in cases.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            torch.save({"model": content}, path)
        with pytest.raises(WeightsError) as info:
            spec.load_weights(module, path, variant)
        messages[name] = str(info.value)
        assert "\n" not in messages[name]
    assert messages["missing.pth"].startswith("checkpoint not found")
    assert messages["garbage.pth"].startswith("cannot read garbage.pth: not a PyTorch checkpoint or corrupt")
    assert messages["object.pth"].startswith("object.pth holds a pickled ")
    assert "_Pickled" in messages["object.pth"]
    assert "save model.state_dict() instead of the whole model" in messages["object.pth"]


def test_m_ascend_accepts_hyphen(spec):
    assert spec.variant("m-ascend").name == "m_ascend"
