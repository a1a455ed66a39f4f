"""A dry-run plan carries the sha256 of its files to the machine that compiles it: a plan
changed on the way is refused before atc runs; the compiled artifact records its new files."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from classification_data import colour_classifier_onnx
from hrdeploy.reference import reference_inputs, run_onnx
from hrdeploy.plugins import registry


@pytest.fixture
def carried(tmp_path: Path, ascend_env, run_cli) -> Path:
    """A plan written on a box without atc, copied to the device box."""
    src = colour_classifier_onnx(tmp_path / "colour.onnx")
    spec = registry().model("hrnet_cls")
    x = reference_inputs(spec, spec.variant("w18"), None, count=2)
    np.savez(src.with_suffix(".ref.npz"), input=x, **{"output:logits": run_onnx(src, x)[0]})
    res = run_cli("convert", src, "--target", "ascend", "--soc", "Ascend310P3", "--precision", "fp16",
                  "--dry-run", "-o", tmp_path / "dev" / "plan")
    assert res.code == 0, res
    folder = tmp_path / "device-box" / "plan"
    shutil.copytree(tmp_path / "dev" / "plan", folder)
    return folder


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_plan_records_its_files_and_the_compile_adds_the_model(carried, ascend_env, run_cli):
    planned = json.loads((carried / "manifest.json").read_text())["sha256"]
    assert {"source.onnx", "plan.json", "plan.sh", "reference.npz"} <= set(planned)
    assert all(_sha(carried / name) == digest for name, digest in planned.items())

    assert run_cli("convert", "--from-plan", carried).code == 0
    compiled = json.loads((carried / "manifest.json").read_text())
    om = compiled["files"]["model"]
    assert compiled["sha256"][om] == _sha(carried / om)
    assert run_cli("verify", carried).code == 0


@pytest.mark.parametrize("name", ["plan.json", "source.onnx"])
def test_a_plan_changed_on_the_way_is_refused_before_atc_runs(carried, ascend_env, run_cli, name):
    with open(carried / name, "ab") as f:
        f.write(b"\n ")
    res = run_cli("convert", "--from-plan", carried)
    assert res.code == 2, res
    assert res.err.count("\n") == 1 and f"artifact file {name} does not match the sha256" in res.err
    assert not ascend_env.atc_calls()
