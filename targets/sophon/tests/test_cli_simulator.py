"""The Sophon path through the command line, as a user without a card runs it: convert an
hrdeploy model for BM1684X with TPU-MLIR, then predict and eval on the cmodel simulator, and
check the answers against the onnxruntime target with ``eval --compare``.

The networks are small hand-built ones carrying hrnet_cls / hrnet_pose metadata (so the
plugins' real pre- and post-processing, datasets and metrics run) because the simulator
needs about 20 s per image for even the smallest HRNet; full-size HRNet conversions on the
simulator are recorded in the README's support table.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hrdeploy.synthetic import write_images

pytestmark = pytest.mark.toolchain


def conv_net(path: Path, *, input_hw: tuple[int, int], head: str, metadata: dict[str, Any], seed: int) -> Path:
    """Two strided 3x3 convolutions, then either global pooling + a 1000-way linear layer
    (``head="logits"``) or a 17-channel conv giving quarter-resolution heatmaps
    (``head="heatmaps"``). Opset 13, IR 8: readable by the toolchain's onnx 1.14."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from hrdeploy.artifact import write_onnx_metadata

    rng = np.random.default_rng(seed)

    def w(name: str, *shape: int, scale: float) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.normal(0, scale, shape).astype(np.float32), name)

    h, wd = input_hw
    inits = [w("w1", 8, 3, 3, 3, scale=0.3), w("b1", 8, scale=0.1)]
    nodes = [helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c1"], ["r1"])]
    if head == "logits":
        inits += [w("w2", 16, 8, 3, 3, scale=0.2), w("b2", 16, scale=0.1), w("w3", 1000, 16, scale=0.5),
                  w("b3", 1000, scale=0.1)]
        nodes += [helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
                  helper.make_node("Relu", ["c2"], ["r2"]),
                  helper.make_node("GlobalAveragePool", ["r2"], ["gap"]),
                  helper.make_node("Flatten", ["gap"], ["flat"]),
                  helper.make_node("Gemm", ["flat", "w3", "b3"], ["logits"], transB=1)]
        out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000])
    else:
        inits += [w("w2", 17, 8, 3, 3, scale=0.2), w("b2", 17, scale=0.1)]
        nodes += [helper.make_node("Conv", ["r1", "w2", "b2"], ["heatmaps"], pads=[1, 1, 1, 1], strides=[2, 2])]
        out = helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, ["N", 17, h // 4, wd // 4])
    graph = helper.make_graph(nodes, f"small_{head}",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, h, wd])], [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    write_onnx_metadata(model, metadata)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sophon_cli")


@pytest.fixture(scope="module")
def classifier(work: Path) -> Path:
    from hrdeploy.tasks.classification import classification_variant

    v = classification_variant("w18")
    return conv_net(work / "small_cls.onnx", input_hw=(224, 224), head="logits", seed=3, metadata={
        "model": "hrnet_cls", "variant": "w18", "task": "classification", "input": v.input.to_dict(),
        "outputs": ["logits"], "preprocess": v.preprocess, "weights": "seeded small test network"})


@pytest.fixture(scope="module")
def imagenet(work: Path) -> Path:
    """Five generated photographs in the ImageNet label-file layout (labels are arbitrary:
    the test compares targets, not accuracy)."""
    root = work / "imagenet"
    paths = write_images(root / "ILSVRC2012_img_val", 5, seed=61)
    (root / "val_label.txt").write_text("".join(f"{p.name} {i * 7}\n" for i, p in enumerate(paths)))
    return root


def predictions(run_cli: Any, model: Path, images: Path) -> dict[str, Any]:
    res = run_cli("predict", model, images, "--json", "-")
    assert res.code == 0, res
    return {Path(p["image"]).name: p for p in json.loads(res.out)}


def test_classifier_fp32_on_the_simulator_agrees_with_onnxruntime(classifier: Path, imagenet: Path, work: Path,
                                                                  run_cli: Any) -> None:
    art = work / "cls.bm1684x.fp32"
    res = run_cli("convert", classifier, "--target", "sophon", "--chip", "bm1684x", "--batch", "2", "-o", art)
    assert res.code == 0, res
    m = json.loads((art / "manifest.json").read_text())
    assert [c["argv"][0] for c in m["commands"] if "argv" in c][:2] == ["model_transform", "model_deploy"]
    assert m["batch_sizes"] == [2] and m["parity"]["status"] == "passed"
    assert m["checks"] and all(c["passed"] for c in m["checks"])

    images = imagenet / "ILSVRC2012_img_val"
    on_sim, on_ort = predictions(run_cli, art, images), predictions(run_cli, classifier, images)
    assert len(on_sim) == 5 and on_sim.keys() == on_ort.keys()
    for name in on_ort:  # fp32: the same top-1 for every image, the same probabilities
        assert on_sim[name]["top_k"][0]["index"] == on_ort[name]["top_k"][0]["index"], name
        np.testing.assert_allclose([t["score"] for t in on_sim[name]["top_k"]],
                                   [t["score"] for t in on_ort[name]["top_k"]], rtol=1e-3, atol=1e-6)

    # static batch 2: the fifth image goes out padded; every evaluated input is checked
    res = run_cli("eval", art, "--data", f"imagenet:{imagenet}", "-o", work / "cls_fp32.json", "--batch", "2",
                  "--compare", classifier)
    assert res.code == 0, res
    assert "simulator" in res.out
    r = json.loads((work / "cls_fp32.json").read_text())
    assert r["simulated"] is True and r["runner"].startswith("simulator (cmodel)")
    (cmp,) = r["compare"]
    assert cmp["inputs"] == 5 and cmp["passed"] and cmp["task"]["value"] == 1.0
    assert cmp["outputs"][0]["max_rel"] <= 1e-4
    print(f"\nsmall classifier, bm1684x fp32 on the cmodel vs onnxruntime, 5 images: max rel "
          f"{cmp['outputs'][0]['max_rel']:.2e}, {cmp['task']['text']}")

    # bench on the simulator: no throughput figures (host simulation time), the parity instead
    res = run_cli("bench", art, "--batch", "2", "--json", work / "bench.json")
    assert res.code == 0, res
    rep = json.loads((work / "bench.json").read_text())
    assert rep["results"] == [] and rep["simulated"] is True and "not measured" in rep["note"]
    assert rep["parity"]["passed"] and rep["parity"]["inputs"] >= 4
    assert "vs onnxruntime fp32 (stored)" in res.out
    res = run_cli("bench", art, "--batch", "2", "--plot", work / "bench.png")
    assert res.code == 2 and "nothing to plot" in res.err and not (work / "bench.png").exists()


def test_classifier_int8_on_the_simulator_stays_close(classifier: Path, imagenet: Path, work: Path,
                                                      run_cli: Any) -> None:
    calib = work / "calib"
    write_images(calib, 12, seed=90)
    art = work / "cls.bm1684x.int8"
    res = run_cli("convert", classifier, "--target", "sophon", "--chip", "bm1684x", "--precision", "int8",
                  "--calib", calib, "--calib-count", "8", "-o", art)
    assert res.code == 0, res
    m = json.loads((art / "manifest.json").read_text())
    assert "run_calibration" in [c["argv"][0] for c in m["commands"] if "argv" in c]
    assert m["conversion"]["calibration"]["tensors"] == 8 and "held-out" in m["reference"]["source"]

    res = run_cli("eval", art, "--data", f"imagenet:{imagenet}", "-o", work / "cls_int8.json", "--compare", classifier)
    assert res.code == 0, res
    (cmp,) = json.loads((work / "cls_int8.json").read_text())["compare"]
    cosine = cmp["outputs"][0]["cosine_min"]
    print(f"\nsmall classifier, bm1684x int8 on the cmodel vs onnxruntime fp32, 5 images: min cosine {cosine:.5f}, "
          f"{cmp['task']['text']}")
    assert cmp["inputs"] == 5 and cosine >= 0.99 and cmp["passed"]
    assert m["parity"]["toolchain"]["passed"] is True and m["parity"]["toolchain"]["verdicts"] >= 2

    # one parity policy: a TPU-MLIR floor that int8 cannot meet is recorded and, when asked
    # for, decisive — the bmodel is kept either way (the tool itself would have stopped)
    strict = work / "cls.bm1684x.int8.strict"
    res = run_cli("convert", classifier, "--target", "sophon", "--chip", "bm1684x", "--precision", "int8",
                  "--calib", calib, "--calib-count", "8", "--set", "tolerance=0.999999,0.9999",
                  "--toolchain-verdict", "decide", "-o", strict)
    assert res.code == 1, res
    assert "toolchain verdict:" in res.out and "decisive" in res.out
    assert "breaches the toolchain's own similarity floor (artifact kept" in res.err
    m = json.loads((strict / "manifest.json").read_text())
    assert (strict / "model.bmodel").is_file() and m["parity"]["status"] == "failed"
    assert m["parity"]["passed"] is True  # hrdeploy's own int8 tolerance holds
    assert m["parity"]["toolchain"]["failed"] and m["parity"]["toolchain"]["decisive"] is True


def test_pose_fp32_on_the_simulator_agrees_with_onnxruntime(work: Path, run_cli: Any) -> None:
    from hrdeploy_hrnet_pose.synthetic import build_synthetic_coco, onnx_metadata_for

    coco = build_synthetic_coco(work / "coco")
    model = conv_net(work / "small_pose.onnx", input_hw=(256, 192), head="heatmaps", seed=5,
                     metadata=onnx_metadata_for("w32_256x192"))
    art = work / "pose.bm1684x.fp32"
    res = run_cli("convert", model, "--target", "sophon", "--chip", "bm1684x", "--batch", "4", "-o", art)
    assert res.code == 0, res
    assert json.loads((art / "manifest.json").read_text())["parity"]["status"] == "passed"

    # flip test on: two crops per person, batched four at a time on the static-batch bmodel
    res = run_cli("eval", art, "--data", f"coco:{coco['root']}", "--boxes", coco["detections"], "--batch", "4",
                  "-o", work / "pose_sim.json", "--compare", model)
    assert res.code == 0, res
    sim = json.loads((work / "pose_sim.json").read_text())
    (cmp,) = sim["compare"]
    assert sim["simulated"] is True and cmp["passed"] and cmp["input_size"] == "256x192"
    res = run_cli("eval", model, "--data", f"coco:{coco['root']}", "--boxes", coco["detections"], "--batch", "4",
                  "-o", work / "pose_ort.json")
    assert res.code == 0, res
    ort = json.loads((work / "pose_ort.json").read_text())
    kp_sim = json.loads((work / sim["files"]["coco_results.json"]).read_text())
    kp_ort = json.loads((work / ort["files"]["coco_results.json"]).read_text())
    assert len(kp_sim) == len(kp_ort) > 0
    err = max(float(np.abs(np.array(a["keypoints"]) - np.array(b["keypoints"])).max()) for a, b in zip(kp_sim, kp_ort))
    print(f"\nsmall pose net, bm1684x fp32 on the cmodel vs onnxruntime: {cmp['inputs']} crops, heatmap max rel "
          f"{cmp['outputs'][0]['max_rel']:.2e}; COCO keypoints differ by at most {err:.2e} (px / score)")
    assert err <= 1e-2
    assert sim["metric"]["AP"] == pytest.approx(ort["metric"]["AP"], abs=1e-9)
