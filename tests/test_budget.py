"""``convert --accuracy-budget`` through the CLI on a small convolutional network carrying
hrnet_cls metadata (so the ImageNet pipeline makes its inputs): the loop builds full int8,
measures each depth segment in float, keeps the smallest float set meeting the budget, records
every build, and exits 1 keeping the closest build when the budget cannot be met."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hrdeploy.budget import parse_budget, segments
from hrdeploy.errors import UserError
from hrdeploy.synthetic import write_images
from hrdeploy.testing.graphs import save_classifier


def small_convnet(path: Path, seed: int = 0) -> Path:
    """image -> 4 Conv+Relu (strided) -> GlobalAveragePool -> Gemm -> 1000 logits."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits, nodes, x = [], [], "image"
    chans = [3, 16, 32, 32, 64]
    for i in range(4):
        w = rng.normal(0, (2.0 / (chans[i] * 9)) ** 0.5, (chans[i + 1], chans[i], 3, 3)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(rng.normal(0, 0.1, chans[i + 1]).astype(np.float32), f"b{i}")]
        nodes += [helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], name=f"conv{i}", kernel_shape=[3, 3],
                                   strides=[2, 2], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
        x = f"r{i}"
    inits += [numpy_helper.from_array(rng.normal(0, 0.1, (1000, 64)).astype(np.float32), "fc"),
              numpy_helper.from_array(np.zeros(1000, np.float32), "fcb")]
    nodes += [helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"),
              helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
              helper.make_node("Gemm", ["flat", "fc", "fcb"], ["logits"], name="fc", transB=1)]
    return save_classifier(path, nodes, inits, "seeded small convnet", name="small")


@pytest.fixture(scope="module")
def net(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("budget")
    write_images(d / "calib", 20, seed=3)
    return {"dir": d, "onnx": small_convnet(d / "small.onnx"), "calib": d / "calib"}


def test_budget_is_met_with_the_fewest_layers_in_float(net, tmp_path, run_cli):
    out = tmp_path / "art"
    res = run_cli("convert", net["onnx"], "--precision", "int8", "--calib", net["calib"], "--calib-count", "8",
                  "--accuracy-budget", "cosine=0.99999", "-o", out)
    assert res.code == 0, res.err
    rec = json.loads((out / "manifest.json").read_text())["accuracy_budget"]
    steps = rec["steps"]
    assert rec["met"] and steps[0]["layers_in_float"] == 0 and not steps[0]["met"]
    assert steps[0]["why"] == "full int8" and any(s["why"].startswith("sensitivity") for s in steps)
    chosen = steps[rec["chosen_step"]]
    assert chosen["met"] and chosen["min_cosine"] >= 0.99999
    # the kept build is the smallest float set that met it
    assert len(rec["kept_float"]) == min(s["layers_in_float"] for s in steps if s["met"])
    assert rec["kept_float"] and len(rec["kept_float"]) < len(steps[1]["kept_float"]) * 8
    assert all(s["images_per_second"] for s in steps)
    assert rec["speedup_over_fp32"]["int8"] > 0
    # the kept build is a working artifact with those layers out of quantization
    q = json.loads((out / "manifest.json").read_text())["conversion"]["quantization"]
    assert q["kept_float"]["tensors"] == rec["kept_float"]
    assert run_cli("verify", out).code in (0, 1)
    assert "budget" in res.out and "(kept)" in res.out
    assert not any(p.name.startswith("hrdeploy-budget-") for p in tmp_path.iterdir())  # no step folders left


def test_budget_missed_keeps_the_closest_build_and_exits_1(net, tmp_path, run_cli):
    out = tmp_path / "art"
    res = run_cli("convert", net["onnx"], "--precision", "int8", "--calib", net["calib"], "--calib-count", "8",
                  "--accuracy-budget", "cosine=0.999999999", "--budget-steps", "1", "-o", out)
    assert res.code == 1
    rec = json.loads((out / "manifest.json").read_text())["accuracy_budget"]
    assert rec["met"] is False and len(rec["steps"]) == 1
    assert "was not met in 1 steps (the closest build kept" in " ".join(res.err.split())


@pytest.mark.parametrize("args, message", [
    (["--accuracy-budget", "cosine"], "expects KIND=VALUE"),
    (["--accuracy-budget", "psnr=30"], "KIND one of cosine, top1, keypoints-px, metric-drop"),
    (["--accuracy-budget", "cosine=1.5"], "must be in (0, 1]"),
    (["--accuracy-budget", "keypoints-px=1"], "is a pose figure; hrnet_cls is a classification model"),
    (["--accuracy-budget", "metric-drop=0.5"], "metric-drop needs --data"),
    (["--accuracy-budget", "cosine=0.999", "--precision", "fp32"], "add --precision int8"),
    (["--accuracy-budget", "cosine=0.999", "--target", "ascend", "--soc", "Ascend310P3"], "cannot keep chosen layers in float"),
])
def test_budget_user_errors_are_one_line(net, tmp_path, run_cli, args, message):
    base = ["convert", net["onnx"], "--calib", net["calib"], "-o", tmp_path / "x"]
    if "--precision" not in args:
        base += ["--precision", "int8"]
    res = run_cli(*base, *args)
    assert res.code == 2, res.out
    assert message in " ".join(res.err.split()) and len(res.err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_segments_cover_the_layers_in_order():
    names = [f"t{i}" for i in range(10)]
    parts = segments(names, 3)
    assert [n for p in parts for n in p] == names and [len(p) for p in parts] == [3, 4, 3]
    assert segments(names[:2], 8) == [["t0"], ["t1"]]
    with pytest.raises(UserError):
        parse_budget("top1=0")
