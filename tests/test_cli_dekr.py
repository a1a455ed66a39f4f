"""Bottom-up DEKR through the command line: exact AP from a constant model, predict, and the
Ascend plan with the seed's five size gears."""
from __future__ import annotations

import json

import pytest

from hrdeploy_dekr.synthetic import build_constant_dekr_onnx, build_synthetic_coco


@pytest.fixture(scope="module")
def dekr(tmp_path_factory):
    root = tmp_path_factory.mktemp("dekr")
    gt = build_synthetic_coco(root / "coco")
    return {"root": root / "coco", "model": build_constant_dekr_onnx(root / "const.onnx"), "gt": gt}


def test_eval_gives_the_exact_ap(dekr, tmp_path, run_cli):
    res = run_cli("eval", dekr["model"], "--data", f"coco:{dekr['root']}", "-o", tmp_path / "r.json")
    assert res.code == 0, res
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["metric"]["AP"] == pytest.approx(dekr["gt"]["expected_ap"], abs=1e-6)
    assert r["task"] == "pose-bottomup" and r["data"]["evaluated"] == 2


def test_predict_json_shape_matches_top_down(dekr, tmp_path, run_cli):
    res = run_cli("predict", dekr["model"], dekr["root"] / "val2017", "--json", "-", "--vis", tmp_path / "vis")
    assert res.code == 0, res
    preds = json.loads(res.out)
    assert len(preds) == 2 and all(set(p) == {"image", "people"} for p in preds)
    person = preds[0]["people"][0]
    assert set(person) == {"keypoints", "score", "box"} and len(person["keypoints"]) == 17
    assert len(list((tmp_path / "vis").iterdir())) == 2


def test_ascend_dry_run_emits_the_seed_atc_command_with_five_gears(dekr, tmp_path, run_cli):
    res = run_cli("convert", dekr["model"], "--target", "ascend", "--soc", "Ascend310P3", "--dry-run",
                  "-o", tmp_path / "plan")
    assert res.code == 0, res
    m = json.loads((tmp_path / "plan" / "manifest.json").read_text())
    argv = m["commands"][0]["argv"]
    assert argv[0] == "atc"
    assert '--input_shape=image:1,3,-1,-1' in argv or "--input_shape=image:1,3,-1,-1" in " ".join(argv)
    assert "--dynamic_dims=512,768;512,512;768,512;512,1024;1024,512" in argv
    assert "--input_format=ND" in argv and "--soc_version=Ascend310P3" in argv
