"""Checkpoint layouts (official / timm / mmpretrain, wrappers, prefixes, safetensors) and the
one-line errors for checkpoints that do not fit."""
from __future__ import annotations

import json
import os
import struct
from collections import OrderedDict

import numpy as np
import pytest
import torch

from hrdeploy.checkpoints import read_state_dict, unwrap_state_dict
from hrdeploy.errors import WeightsError
from hrdeploy.nn.hrnet import HRNET_CLS_VARIANTS
from hrdeploy_hrnet_cls.weights import convert_checkpoint

from hrnet_cls_helpers import manifest, max_rel, official_to_mmpretrain, shaped_checkpoint


class TrainerState:
    """Stands for the objects training frameworks pickle next to the weights (mmengine's
    message hub, timm's args namespace); the loader must not need to import it."""

    def __init__(self) -> None:
        self.iteration = 7


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch hrnet_cls_pwned",))


def write_safetensors(sd: dict[str, torch.Tensor], path) -> None:
    header, blobs, offset = {}, [], 0
    for k, v in sd.items():
        data = v.contiguous().numpy().tobytes()
        dtype = {torch.float32: "F32", torch.int64: "I64"}[v.dtype]
        header[k] = {"dtype": dtype, "shape": list(v.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def _errmsg(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    return msg


# -- layouts that load ------------------------------------------------------------------------

def test_timm_training_checkpoint_loads_identically(spec, w18_weights, w18_model, tmp_path, fixtures_dir):
    timm = manifest(fixtures_dir, "hrnet_cls/w18.timm.json")["keys"]
    assert list(timm) == list(w18_weights)                 # timm keeps the official names
    # a timm train.py checkpoint: wrapper, DataParallel prefix, extra non-tensor entries
    ckpt = {"epoch": 99, "arch": "hrnet_w18", "args": TrainerState(),
            "state_dict": OrderedDict(("module." + k, v) for k, v in w18_weights.items())}
    path = tmp_path / "checkpoint-99.pth.tar"
    torch.save(ckpt, path)
    variant = spec.variant("w18")
    model = spec.build(variant)
    layout = spec.load_weights(model, path, variant)
    assert "official/timm layout" in layout and "'state_dict' wrapper" in layout and "'module.'" in layout
    for (k, a), b in zip(model.state_dict().items(), w18_model.state_dict().values()):
        assert torch.equal(a, b), k                        # same tensors, so the same logits


def test_timm_safetensors_loads(spec, small_model, tmp_path):
    variant = spec.variant("w18_small_v1")
    path = tmp_path / "model.safetensors"
    write_safetensors(small_model.state_dict(), path)
    model = spec.build(variant)
    assert spec.load_weights(model, path, variant) == "official/timm layout"
    for (k, a), b in zip(model.state_dict().items(), small_model.state_dict().values()):
        assert torch.equal(a, b), k


def test_mmpretrain_checkpoint_gives_the_same_logits(spec, w18_weights, w18_logits, w18_ref, tmp_path,
                                                     fixtures_dir):
    mm = official_to_mmpretrain(w18_weights)
    mm_manifest = manifest(fixtures_dir, "hrnet_cls/w18.mmpretrain.json")["keys"]
    assert [(k, list(v.shape)) for k, v in mm.items()] == list(mm_manifest.items())
    # as mmengine saves it: meta, state_dict and trainer objects
    path = tmp_path / "hrnet-w18_3rdparty_8xb32_in1k.pth"
    torch.save({"meta": {"epoch": 100, "mmpretrain_version": "1.2.0"}, "state_dict": mm,
                "message_hub": TrainerState()}, path)
    variant = spec.variant("w18")
    model = spec.build(variant)
    layout = spec.load_weights(model, path, variant)
    assert layout.startswith("mmpretrain layout, 4 head conv biases set to zero")
    with torch.inference_mode():
        got = model(torch.from_numpy(w18_ref["input"])).numpy()
    # folding the biases into running_mean is exact up to float rounding
    assert max_rel(got, w18_logits) <= 1e-5
    assert max_rel(got[0] - got[1], w18_logits[0] - w18_logits[1]) <= 1e-4
    assert max_rel(got, w18_ref["logits"]) <= 1e-4


@pytest.mark.parametrize("variant", HRNET_CLS_VARIANTS)
def test_every_variant_accepts_all_three_layouts(meta_model, variant, fixtures_dir):
    expected = meta_model(variant).state_dict()
    official = shaped_checkpoint(manifest(fixtures_dir, f"hrnet_cls/{variant}.official.json")["keys"])
    got, notes = convert_checkpoint(official, expected, variant)
    assert list(got) == list(expected) and notes == ["official/timm layout"]
    timm = shaped_checkpoint(manifest(fixtures_dir, f"hrnet_cls/{variant}.timm.json")["keys"])
    assert list(convert_checkpoint(timm, expected, variant)[0]) == list(expected)
    mm_path = fixtures_dir / "official" / "hrnet_cls" / f"{variant}.mmpretrain.json"
    if mm_path.exists():                                   # mmpretrain has no small variants
        mm = shaped_checkpoint(json.loads(mm_path.read_text())["keys"])
        got, notes = convert_checkpoint(mm, expected, variant)
        assert list(got) == list(expected)
        assert notes == ["mmpretrain layout", "4 head conv biases set to zero"]
        assert all(float(got[k].abs().sum()) == 0 for k in ("final_layer.0.bias", "downsamp_modules.0.0.bias"))


# -- checkpoints that do not fit ----------------------------------------------------------------

def _shaped(fixtures_dir, name: str, wrap=None, prefix: str = ""):
    sd = shaped_checkpoint(manifest(fixtures_dir, name)["keys"])
    sd = OrderedDict((prefix + k, v) for k, v in sd.items())
    return wrap(sd) if wrap else sd


def _recognise(meta_model, variant, obj):
    """What load_weights does after reading the file (the file round trip is tested once
    per kind below: pickling thousands of tensors is the slow part)."""
    sd, _ = unwrap_state_dict(obj)
    return convert_checkpoint(sd, meta_model(variant).state_dict(), variant)


def _load(spec, meta_model, variant, path):
    # a meta module: copying weights into it is a no-op, so the shared one stays clean
    return spec.load_weights(meta_model(variant), path, spec.variant(variant))


def test_wrong_width_file(spec, meta_model, tmp_path, fixtures_dir):
    path = tmp_path / "hrnet_w18_small_model_v1.pth"
    torch.save(_shaped(fixtures_dir, "hrnet_cls/w18_small_v1.official.json", prefix="module."), path)
    with pytest.raises(WeightsError) as exc:
        _load(spec, meta_model, "w18_small_v2", path)
    assert _errmsg(exc) == "this is a w18_small_v1 checkpoint (expected w18_small_v2): choose --variant w18_small_v1"


@pytest.mark.parametrize("variant,manifest_name,found", [
    ("w18", "hrnet_cls/w32.official.json", "w32"),
    ("w18", "hrnet_cls/w64.timm.json", "w64"),
    ("w48", "hrnet_cls/w18_small_v2.official.json", "w18_small_v2"),
    ("w18_small_v2", "hrnet_cls/w18_small_v1.official.json", "w18_small_v1"),
    ("w18_small_v1", "hrnet_cls/w18.official.json", "w18"),
    ("w18", "hrnet_cls/w30.mmpretrain.json", "w30"),
])
def test_wrong_width_names_the_width(meta_model, fixtures_dir, variant, manifest_name, found):
    with pytest.raises(WeightsError) as exc:
        _recognise(meta_model, variant, _shaped(fixtures_dir, manifest_name))
    assert _errmsg(exc) == f"this is a {found} checkpoint (expected {variant}): choose --variant {found}"


@pytest.mark.parametrize("manifest_name,wrap,prefix,words", [
    ("pose/pose_hrnet_w32_256x192.json", None, "module.", "this looks like a pose model (final_layer 17 channels, 32 in)"),
    ("pose/pose_hrnet_w48_384x288.mmpose.json", lambda sd: {"state_dict": sd}, "", "this looks like a pose model"),
    ("pose/dekr_hrnet_w32_coco.json", None, "module.", "this looks like a DEKR bottom-up pose model"),
    ("pose/dekr_rescore_coco.json", None, "", "DEKR's rescoring net"),
    ("tresnet/tresnet_m.timm.json", lambda sd: {"model": sd}, "", "this looks like a TResNet checkpoint"),
    ("tresnet/tresnet_l.timm045.json", None, "", "this looks like a TResNet checkpoint"),
])
def test_other_models_are_named(meta_model, fixtures_dir, manifest_name, wrap, prefix, words):
    with pytest.raises(WeightsError) as exc:
        _recognise(meta_model, "w18", _shaped(fixtures_dir, manifest_name, wrap, prefix))
    msg = _errmsg(exc)
    assert words in msg and msg.endswith("not an HRNet-C w18 checkpoint")


@pytest.mark.parametrize("sd,message", [
    ({"fc.weight": torch.zeros(1000, 2048), "layer4.2.bn3.weight": torch.zeros(2048)},
     "this looks like a ResNet checkpoint, not an HRNet-C w18 checkpoint"),
    ({"encoder.weight": torch.zeros(3), "decoder.bias": torch.zeros(3)},
     "this is not an HRNet-C checkpoint (first keys: encoder.weight, decoder.bias)"),
])
def test_unrelated_checkpoints_are_named(meta_model, sd, message):
    with pytest.raises(WeightsError) as exc:
        _recognise(meta_model, "w18", sd)
    assert _errmsg(exc) == message


def test_other_class_count_is_named(meta_model, fixtures_dir):
    keys = dict(manifest(fixtures_dir, "hrnet_cls/w18_small_v1.official.json")["keys"])
    keys["classifier.weight"], keys["classifier.bias"] = [100, 2048], [100]
    with pytest.raises(WeightsError) as exc:
        _recognise(meta_model, "w18_small_v1", shaped_checkpoint(keys))
    assert _errmsg(exc) == "this HRNet-C w18_small_v1 checkpoint has 100 classes (expected 1000)"


def test_partial_checkpoint_lists_what_is_missing(meta_model, fixtures_dir):
    keys = dict(manifest(fixtures_dir, "hrnet_cls/w18_small_v1.official.json")["keys"])
    del keys["incre_modules.3.0.conv2.weight"]
    keys["extra.weight"] = [3]
    with pytest.raises(WeightsError) as exc:
        _recognise(meta_model, "w18_small_v1", shaped_checkpoint(keys))
    assert _errmsg(exc) == ("checkpoint does not fit HRNet-C w18_small_v1: 1 missing keys "
                            "(e.g. incre_modules.3.0.conv2.weight); 1 unexpected keys (e.g. extra.weight)")


def test_mm_backbone_and_segmentation_checkpoints_are_named(meta_model, fixtures_dir):
    keys = manifest(fixtures_dir, "hrnet_cls/w30.mmpretrain.json")["keys"]
    backbone = OrderedDict((k, v) for k, v in shaped_checkpoint(keys).items() if k.startswith("backbone."))
    with pytest.raises(WeightsError) as exc:
        _recognise(meta_model, "w18", backbone)
    assert _errmsg(exc) == "this is a w30 checkpoint (expected w18): choose --variant w30"
    with pytest.raises(WeightsError) as exc:
        _recognise(meta_model, "w30", backbone)
    assert _errmsg(exc) == "this is an HRNet w30 backbone without the classification head"
    seg = OrderedDict(backbone, **{"decode_head.conv_seg.weight": torch.zeros(19, 270, 1, 1)})
    with pytest.raises(WeightsError) as exc:
        _recognise(meta_model, "w30", seg)
    assert _errmsg(exc) == "this looks like an mmsegmentation model (decode_head), not an HRNet-C w30 checkpoint"


def test_backbone_only_checkpoint_is_named(meta_model, fixtures_dir):
    keys = {k: v for k, v in manifest(fixtures_dir, "hrnet_cls/w18_small_v1.official.json")["keys"].items()
            if not k.startswith(("incre_modules", "downsamp_modules", "final_layer", "classifier"))}
    with pytest.raises(WeightsError) as exc:
        _recognise(meta_model, "w18_small_v1", shaped_checkpoint(keys))
    assert _errmsg(exc) == "this is an HRNet w18_small_v1 backbone without the classification head"


@pytest.mark.parametrize("content,words", [
    (b"", "cannot read broken.pth: not a PyTorch checkpoint or corrupt"),
    (bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)),
     "cannot read broken.pth: not a PyTorch checkpoint or corrupt"),
])
def test_garbage_file(spec, meta_model, tmp_path, content, words):
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(WeightsError) as exc:
        _load(spec, meta_model, "w18", path)
    assert _errmsg(exc).startswith(words)


def test_truncated_checkpoint(spec, meta_model, tmp_path, fixtures_dir):
    path = tmp_path / "broken.pth"
    torch.save(_shaped(fixtures_dir, "hrnet_cls/w18_small_v1.official.json"), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError) as exc:
        _load(spec, meta_model, "w18_small_v1", path)
    assert _errmsg(exc).startswith("cannot read broken.pth: not a PyTorch checkpoint or corrupt")


@pytest.mark.parametrize("obj,words", [
    ({}, "holds no tensors"),
    ({"epoch": 3, "lr": 0.1}, "holds no tensors (top-level keys: epoch, lr)"),
    ([torch.zeros(3)], "holds a list, not a state_dict"),
])
def test_not_a_state_dict(spec, meta_model, tmp_path, obj, words):
    path = tmp_path / "odd.pth"
    torch.save(obj, path)
    with pytest.raises(WeightsError) as exc:
        _load(spec, meta_model, "w18", path)
    assert words in _errmsg(exc)


def test_whole_model_pickle_is_explained(spec, meta_model, tmp_path):
    path = tmp_path / "model.pth"
    # TrainerState stands for a whole model saved with torch.save(model), alone or wrapped
    for obj in (TrainerState(), {"epoch": 3, "model": TrainerState()}):
        torch.save(obj, path)
        with pytest.raises(WeightsError) as exc:
            _load(spec, meta_model, "w18", path)
        msg = _errmsg(exc)
        assert msg.startswith("model.pth holds a pickled ") and msg.endswith(
            ".TrainerState, not a state_dict (save model.state_dict() instead of the whole model)")


def test_missing_file(spec, meta_model, tmp_path):
    with pytest.raises(WeightsError) as exc:
        _load(spec, meta_model, "w18", tmp_path / "nope.pth")
    assert _errmsg(exc) == f"checkpoint not found: {tmp_path / 'nope.pth'}"


def test_foreign_objects_are_never_imported_or_called(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "trainer.pth"
    weights = OrderedDict(conv=torch.arange(6.0).reshape(2, 3))
    torch.save({"state_dict": weights, "hub": TrainerState()}, path)
    sd, notes = read_state_dict(path)
    assert list(sd) == ["conv"] and torch.equal(sd["conv"], weights["conv"])
    assert notes == ["'state_dict' wrapper"]
    # a call to anything else refuses the whole file, before anything in it runs
    torch.save({"state_dict": weights, "payload": Exploit(), "hub": TrainerState()}, path)
    with pytest.raises(WeightsError) as exc:
        read_state_dict(path)
    assert not (tmp_path / "hrnet_cls_pwned").exists()
    assert _errmsg(exc) == ("trainer.pth is not a tensor checkpoint: it contains a call to os.system "
                            "(refused; nothing in it was run)")
