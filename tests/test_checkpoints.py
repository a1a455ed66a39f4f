"""hrdeploy.checkpoints: safe reading, unwrapping and the one-line key/shape summary shared by
the model plugins."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections import OrderedDict

import pytest
import torch

from hrdeploy.checkpoints import KeyMismatch, Opaque, read_checkpoint, read_state_dict, unwrap_state_dict
from hrdeploy.errors import WeightsError


class TrainerState:
    """Stands for what training frameworks pickle next to the weights."""

    def __init__(self) -> None:
        self.iteration = 7


def _one_line(excinfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text
    return text


def test_module_imports_without_torch():
    code = "import sys, hrdeploy.checkpoints; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("legacy", [False, True])
def test_trainer_objects_become_inert_placeholders(tmp_path, legacy):
    weights = OrderedDict(conv=torch.arange(6.0).reshape(2, 3), bn=torch.ones(2))
    path = tmp_path / "trainer.pth"
    torch.save({"state_dict": weights, "hub": TrainerState()}, path, _use_new_zipfile_serialization=not legacy)
    obj = read_checkpoint(path)
    assert isinstance(obj["hub"], Opaque) and type(obj["hub"]).origin == f"{__name__}.TrainerState"
    assert not hasattr(obj["hub"], "iteration")           # nothing of it was built
    sd, notes = unwrap_state_dict(obj)
    assert list(sd) == ["conv", "bn"] and torch.equal(sd["conv"], weights["conv"])
    assert notes == ["'state_dict' wrapper"]


def test_safetensors(tmp_path):
    sd = OrderedDict(a=torch.arange(6.0).reshape(2, 3), n=torch.tensor(5, dtype=torch.int64))
    header, blobs, offset = {}, [], 0
    for k, v in sd.items():
        data = v.numpy().tobytes()
        header[k] = {"dtype": {torch.float32: "F32", torch.int64: "I64"}[v.dtype], "shape": list(v.shape),
                     "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps({"__metadata__": {"format": "pt"}, **header}).encode()
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))
    got, notes = read_state_dict(path)
    assert notes == [] and list(got) == ["a", "n"]
    assert torch.equal(got["a"], sd["a"]) and int(got["n"]) == 5


@pytest.mark.parametrize("wrapper", ["state_dict", "model", "state_dict_ema", "model_state_dict", "net"])
def test_wrappers_and_prefix(wrapper):
    sd = OrderedDict(("module." + k, torch.zeros(1)) for k in ("a", "b"))
    got, notes = unwrap_state_dict({"epoch": 3, "meta": {"x": 1}, wrapper: sd})
    assert list(got) == ["a", "b"]
    assert notes == [f"'{wrapper}' wrapper", "'module.' prefix stripped"]


def test_first_wrapper_wins_and_nested_wrappers_are_peeled():
    a, b = {"w": torch.zeros(1)}, {"w": torch.ones(1)}
    got, notes = unwrap_state_dict({"state_dict": a, "state_dict_ema": b})
    assert got["w"] is a["w"] and notes == ["'state_dict' wrapper"]
    got, notes = unwrap_state_dict({"model": {"state_dict": b}})
    assert got["w"] is b["w"] and notes == ["'model' wrapper", "'state_dict' wrapper"]


def test_partial_prefix_and_non_tensors_are_kept_as_is():
    got, notes = unwrap_state_dict({"module.a": torch.zeros(1), "b": torch.zeros(1), "step": 4})
    assert list(got) == ["module.a", "b"] and notes == []


def test_pickled_module_gives_its_state_dict():
    lin = torch.nn.Linear(2, 3)
    got, notes = unwrap_state_dict(lin)
    assert list(got) == ["weight", "bias"] and notes == ["pickled nn.Module"]


@pytest.mark.parametrize("obj,message", [
    ([torch.zeros(1)], "x.pth holds a list, not a state_dict"),
    ({}, "x.pth holds no tensors (top-level keys: none)"),
    ({"epoch": 3, "lr": 0.1}, "x.pth holds no tensors (top-level keys: epoch, lr)"),
])
def test_not_a_state_dict(obj, message):
    with pytest.raises(WeightsError) as exc:
        unwrap_state_dict(obj, "x.pth")
    assert _one_line(exc) == message


def test_whole_model_pickle_is_explained(tmp_path):
    path = tmp_path / "whole.pth"
    torch.save({"epoch": 1, "model": TrainerState()}, path)
    with pytest.raises(WeightsError) as exc:
        read_state_dict(path)
    assert _one_line(exc) == (f"whole.pth holds a pickled {__name__}.TrainerState, not a state_dict "
                              "(save model.state_dict() instead of the whole model)")


def test_missing_file_with_hint(tmp_path):
    with pytest.raises(WeightsError) as exc:
        read_checkpoint(tmp_path / "nope.pth", "give the official file")
    assert _one_line(exc) == f"checkpoint not found: {tmp_path / 'nope.pth'} (give the official file)"


@pytest.mark.parametrize("content", ["empty", "text", "truncated"])
def test_unreadable_files(tmp_path, content):
    path = tmp_path / "broken.pth"
    if content == "truncated":
        torch.save({f"w{i}": torch.zeros(64) for i in range(20)}, path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(b"" if content == "empty" else b"hello, not a checkpoint")
    with pytest.raises(WeightsError) as exc:
        read_checkpoint(path)
    assert _one_line(exc).startswith("cannot read broken.pth: not a PyTorch checkpoint or corrupt (")


def test_key_mismatch_summary():
    expected = OrderedDict(a=torch.empty(2, 3, device="meta"), b=torch.empty(4), c=torch.empty(1))
    assert KeyMismatch.between({"a": torch.zeros(2, 3), "b": torch.zeros(4), "c": torch.zeros(1)}, expected).ok
    found = KeyMismatch.between({"a": torch.zeros(3, 3), "x": torch.zeros(1), "y": torch.zeros(1)}, expected)
    assert not found.ok
    assert found.missing == ["b", "c"] and found.unexpected == ["x", "y"]
    assert found.shapes == [("a", (3, 3), (2, 3))]
    assert found.describe() == ("2 missing keys (e.g. b); 2 unexpected keys (e.g. x); "
                                "1 shape mismatches (e.g. a: [3, 3] vs [2, 3])")


def test_key_mismatch_takes_shapes_as_well_as_tensors():
    found = KeyMismatch.between({"a": torch.zeros(2)}, {"a": [3], "b": (1, 1)})
    assert found.describe() == "1 missing keys (e.g. b); 1 shape mismatches (e.g. a: [2] vs [3])"
    assert KeyMismatch.between({"a": torch.zeros(2)}, {"a": (2,)}).describe() == ""
