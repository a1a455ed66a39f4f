"""``hrdeploy debug`` on VastAI is refused with one line: VastAI documents no per-layer dump
(hrdeploy_target_vastai/layers.py says what was looked for and what it would take)."""
from __future__ import annotations

from pathlib import Path

import pytest

from hrdeploy.errors import UserError
from hrdeploy.model import InputSpec
from hrdeploy.target import ConvertRequest
from hrdeploy.testing.standins import artifact_from_result, normalised_pixels
from hrdeploy_target_vastai.target import VastaiTarget

SPEC = InputSpec(name="image", channels=3, height=16, width=24)


def test_layer_dump_plan_and_read_back_are_refused_with_the_reason(vastai_env, tiny_onnx: Path, tmp_path: Path) -> None:
    req = ConvertRequest(onnx_path=tiny_onnx, out_dir=tmp_path / "art", model="tiny", variant="t",
                         task="classification", input=SPEC,
                         preprocess={"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
                         precision="fp16", log=lambda s: None)
    art = artifact_from_result(req, VastaiTarget().convert(req), "vastai", ["heatmaps", "logits"])
    folder = tmp_path / "plan"
    with pytest.raises(UserError) as e:
        VastaiTarget().layer_dump_plan(art, normalised_pixels(1, 16, 24), tiny_onnx, folder)
    msg = str(e.value)
    assert "\n" not in msg and "documents no per-layer dump" in msg and "outputs only" in msg
    assert "hrdeploy verify" in e.value.hint
    assert not folder.exists()  # nothing half-written: no vamp command pretending to be layer-wise
    assert not vastai_env.calls("vamp")
    with pytest.raises(UserError, match="documents no per-layer dump"):
        VastaiTarget().read_layer_dump(art, tmp_path, tiny_onnx)
