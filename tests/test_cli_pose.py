"""Top-down pose through the command line: eval on a small COCO-format set with a constant
model whose keypoints and AP are known exactly, predict with boxes and drawn skeletons."""
from __future__ import annotations

import json

import numpy as np
import pytest

from hrdeploy_hrnet_pose.synthetic import build_constant_heatmap_onnx, build_synthetic_coco, onnx_metadata_for


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    data = build_synthetic_coco(root / "coco")
    data["model"] = build_constant_heatmap_onnx(root / "const.onnx", metadata=onnx_metadata_for())
    return data


@pytest.mark.parametrize("boxes", ["detections", "gt"])
def test_eval_gives_the_exact_ap(coco, boxes, tmp_path, run_cli):
    args = ["--gt-boxes"] if boxes == "gt" else ["--boxes", coco["detections"]]
    res = run_cli("eval", coco["model"], "--data", f"coco:{coco['root']}", "-o", tmp_path / "r.json",
                  "--batch", "4", *args)
    assert res.code == 0, res
    r = json.loads((tmp_path / "r.json").read_text())
    expected = coco["stats_gt" if boxes == "gt" else "stats_detections"]
    for k, v in expected.items():
        assert r["metric"][k] == pytest.approx(v, abs=1e-6), k
    assert r["task"] == "pose-topdown" and r["preprocess"]
    results = json.loads((tmp_path / r["files"]["coco_results.json"]).read_text())
    assert all(len(p["keypoints"]) == 51 and p["category_id"] == 1 for p in results)


def test_predict_json_and_skeleton_drawing(coco, tmp_path, run_cli):
    res = run_cli("predict", coco["model"], coco["images"], "--boxes", coco["detections"], "--json", "-",
                  "--vis", tmp_path / "vis")
    assert res.code == 0, res
    preds = {p["image"].rsplit("/", 1)[-1]: p for p in json.loads(res.out)}
    first = preds["000000000001.png"]["people"]
    exp = coco["expected_detections"][1]
    assert len(first) == len(exp)
    for got, want in zip(first, exp):
        assert set(got) == {"keypoints", "score", "box"} and len(got["keypoints"]) == 17
        np.testing.assert_allclose(np.array(got["keypoints"]), np.array(want["keypoints"]), atol=1e-3)
    assert preds["000000000004.png"]["people"] == []   # no box for this image: nobody, no crash
    assert len(list((tmp_path / "vis").iterdir())) == len(preds)


def test_string_options_reach_the_plugin_typed(coco, tmp_path, run_cli):
    res = run_cli("eval", coco["model"], "--data", f"coco:{coco['root']}", "-o", tmp_path / "r.json",
                  "--opt", "flip=false", "--opt", "box_thr=0.6", "--boxes", coco["detections"])
    assert res.code == 0, res
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["preprocess"].get("flip", r["options"].get("flip")) is False
    bad = run_cli("eval", coco["model"], "--data", f"coco:{coco['root']}", "--opt", "flip=maybe")
    assert bad.code == 2 and "flip" in bad.err
