"""The built-in onnxruntime target against the same contract as every other target."""
from __future__ import annotations

import numpy as np
import pytest

from hrdeploy.artifact import Artifact
from hrdeploy.targets.onnxruntime.target import OnnxRuntimeTarget
from hrdeploy.testing.contract import TargetContract, tiny_request


class TestOnnxRuntimeContract(TargetContract):
    @pytest.fixture
    def target(self):
        return OnnxRuntimeTarget()


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_precisions_stay_close_to_the_source(tmp_path, precision):
    import onnxruntime as ort

    target = OnnxRuntimeTarget()
    req = tiny_request(tmp_path, precision=precision)
    result = target.convert(req)
    (req.out_dir / "manifest.json").write_text(
        '{"format": "hrdeploy-artifact/1", "model": "tiny", "variant": "default", "files": {"model": "%s"}}'
        % result.files["model"])
    x = req.reference_inputs
    ref = ort.InferenceSession(str(req.onnx_path), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    with target.open(Artifact.load(req.out_dir)) as runner:
        got = runner.run({"image": x})[0]
    cos = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    max_rel = {"fp32": 1e-6, "fp16": 1e-3, "int8": 0.2}[precision]
    min_cos = {"fp32": 0.999999, "fp16": 0.9999, "int8": 0.99}[precision]
    assert cos.min() >= min_cos
    assert np.abs(ref - got).max() <= max_rel * np.abs(ref).max()
    if precision == "int8":
        q = result.extra["quantization"]
        assert q["format"] == "QDQ" and q["calibration_images"] == req.calib_count


def test_int8_without_calibration_is_a_user_error(tmp_path):
    from hrdeploy.errors import UserError

    req = tiny_request(tmp_path, precision="int8")
    req.calibration = None
    with pytest.raises(UserError, match="--calib"):
        OnnxRuntimeTarget().convert(req)
