"""Reference outputs travel with every artifact; `hrdeploy verify` checks them where it runs."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
from onnx import numpy_helper

from classification_data import colour_classifier_onnx
from hrdeploy.reference import reference_inputs, run_onnx
from hrdeploy.plugins import registry


def _with_reference(onnx_path):
    """Store reference inputs/outputs next to a hand-built ONNX, as `hrdeploy export` does."""
    spec = registry().model("hrnet_cls")
    x = reference_inputs(spec, spec.variant("w18"), None, count=3)
    (y,) = run_onnx(onnx_path, x)
    np.savez(onnx_path.with_suffix(".ref.npz"), input=x, **{"output:logits": y})
    return onnx_path


def test_verify_passes_then_fails_on_a_corrupted_artifact(tmp_path, run_cli):
    src = _with_reference(colour_classifier_onnx(tmp_path / "colour.onnx"))
    res = run_cli("convert", src, "--target", "onnxruntime", "-o", tmp_path / "art")
    assert res.code == 0, res
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    assert manifest["files"]["reference"] == "reference.npz"
    ok = run_cli("verify", tmp_path / "art")
    assert ok.code == 0 and "verify passed" in ok.out, ok
    doc = json.loads((tmp_path / "art" / "verify.json").read_text())
    assert doc["verdict"] == "pass" and doc["outputs"][0]["max_rel"] < 1e-5

    # alter the weights inside the compiled file: verify must fail and name the output
    model = onnx.load(str(tmp_path / "art" / "model.onnx"))
    for init in model.graph.initializer:
        if init.name == "w":
            w = numpy_helper.to_array(init).copy()
            w[:, 100] = -w[:, 100]
            init.CopyFrom(numpy_helper.from_array(w, "w"))
    onnx.save(model, str(tmp_path / "art" / "model.onnx"))
    edited = run_cli("verify", tmp_path / "art")
    assert edited.code == 2 and "model.onnx does not match the sha256" in edited.err, edited
    # the same numbers from a compiled file whose hash was recorded (a toolchain that
    # miscompiles): the model runs and differs, which is a breach
    manifest["sha256"]["model.onnx"] = hashlib.sha256((tmp_path / "art" / "model.onnx").read_bytes()).hexdigest()
    (tmp_path / "art" / "manifest.json").write_text(json.dumps(manifest))
    bad = run_cli("verify", tmp_path / "art")
    assert bad.code == 1, bad
    assert "output 'logits'" in bad.err
    assert json.loads((tmp_path / "art" / "verify.json").read_text())["verdict"] == "breach"


def test_verify_without_reference_or_runtime_is_exit_2(tmp_path, run_cli):
    src = colour_classifier_onnx(tmp_path / "plain.onnx")
    res = run_cli("verify", src)
    assert res.code == 2 and "no reference outputs" in res.err
