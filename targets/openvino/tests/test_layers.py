"""``hrdeploy debug`` on OpenVINO: the IR's intermediate tensors come back under the source
graph's names, equal to the source's for a faithful fp32 conversion, and the layer a
corrupted conversion breaks is the first one below the threshold."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hrdeploy.artifact import FORMAT, MANIFEST, Artifact
from hrdeploy.layerwise import compare_layers, source_tensors
from hrdeploy.target import ConvertRequest
from hrdeploy.testing.contract import tiny_request
from hrdeploy.testing.layers import corrupt_conv
from hrdeploy_target_openvino.probe import query
from hrdeploy_target_openvino.target import OpenVinoTarget

_VERSION, _DEVICES, _REASON = query()
pytestmark = pytest.mark.skipif(_VERSION is None, reason=f"openvino not here: {_REASON}")


def request_in(folder: Path) -> ConvertRequest:
    folder.mkdir(parents=True, exist_ok=True)
    return tiny_request(folder)


def artifact_of(onnx_path: Path, tmp_path: Path) -> Artifact:
    req = request_in(tmp_path)
    req.onnx_path = onnx_path
    result = OpenVinoTarget().convert(req)
    (req.out_dir / MANIFEST).write_text(json.dumps({
        "format": FORMAT, "model": "tiny", "variant": "default", "task": "classification", "input": req.input.to_dict(),
        "outputs": ["logits"], "target": "openvino", "precision": "fp32", "files": result.files,
        "conversion": result.extra}))
    return Artifact.load(req.out_dir)


def test_layers_come_back_under_the_source_names(tmp_path: Path) -> None:
    req = request_in(tmp_path / "src")
    x = req.reference_inputs
    art = artifact_of(req.onnx_path, tmp_path / "ok")
    dump = OpenVinoTarget().layer_outputs(art, x, req.onnx_path, tmp_path, log=lambda _m: None)
    src = source_tensors(req.onnx_path, x)
    assert {"c1", "r1", "logits"} <= set(dump.tensors)
    for name, got in dump.tensors.items():
        ref = src[name].reshape(got.shape)
        assert np.abs(got - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max()), name
    assert dump.producers["c1"] == "c1 (Add)" and "layers exposed" in dump.label


def test_a_corrupted_conv_is_the_first_layer_below_threshold(tmp_path: Path) -> None:
    req = request_in(tmp_path / "src")
    x = req.reference_inputs
    _node, tensor = corrupt_conv(req.onnx_path, tmp_path / "bad.onnx", 0)
    art = artifact_of(tmp_path / "bad.onnx", tmp_path / "bad")
    dump = OpenVinoTarget().layer_outputs(art, x, req.onnx_path, tmp_path, log=lambda _m: None)
    report = compare_layers(req.onnx_path, source_tensors(req.onnx_path, x), dump, threshold=0.999)
    assert report.first_below is not None and report.first_below.tensor == tensor == "c1"
