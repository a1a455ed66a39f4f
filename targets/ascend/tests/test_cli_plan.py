"""Issue 9's cross-machine path through the real CLI: plan on a box without the toolchain,
carry the folder, compile it with --from-plan where the (stand-in) toolchain is, verify there."""
from __future__ import annotations

import json
import shutil

import numpy as np

from classification_data import colour_classifier_onnx
from hrdeploy.reference import reference_inputs, run_onnx
from hrdeploy.plugins import registry


def test_dry_run_plan_travels_and_compiles_from_plan_then_verifies(tmp_path, ascend_env, run_cli):
    src = colour_classifier_onnx(tmp_path / "colour.onnx")
    spec = registry().model("hrnet_cls")
    x = reference_inputs(spec, spec.variant("w18"), None, count=2)
    np.savez(src.with_suffix(".ref.npz"), input=x, **{"output:logits": run_onnx(src, x)[0]})

    res = run_cli("convert", src, "--target", "ascend", "--soc", "Ascend310P3", "--batch", "1,4",
                  "--precision", "fp16", "--dry-run", "-o", tmp_path / "dev" / "plan")
    assert res.code == 0, res
    assert "would run:" in res.out and "atc" in res.out and not ascend_env.atc_calls()
    plan = json.loads((tmp_path / "dev" / "plan" / "manifest.json").read_text())
    assert plan["dry_run"] and "parity" not in plan

    carried = tmp_path / "device-box" / "plan"
    shutil.copytree(tmp_path / "dev" / "plan", carried)
    not_compiled = run_cli("verify", carried)
    assert not_compiled.code == 2 and "dry-run plan" in not_compiled.err

    res = run_cli("convert", "--from-plan", carried)
    assert res.code == 0, res
    calls = ascend_env.atc_calls()
    assert len(calls) == 1 and "--dynamic_batch_size=1,4" in calls[0]["argv"]
    m = json.loads((carried / "manifest.json").read_text())
    assert not m["dry_run"] and m["parity"]["status"] == "passed"
    assert m["plan_commands"] and m["commands"]

    ok = run_cli("verify", carried)
    assert ok.code == 0 and "verify passed" in ok.out, ok
