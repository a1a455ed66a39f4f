"""``hrdeploy debug`` on onnxruntime through the CLI: no false alarm on fp32, a planted fault
found where it was planted in int8, dataset inputs, and one-line refusals."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from classification_data import imagenet_label_layout
from hrdeploy.layerwise import added_noise_db, cosine_min, graph_layers, noise_budget_db, source_tensors, sqnr_db
from hrdeploy.synthetic import write_images
from hrdeploy.testing.layers import conv_nodes, corrupt_artifact_conv


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """HRNet-W18-small-v1 with seeded weights, exported, converted fp32 and int8 once."""
    from hrdeploy.cli import main

    d = tmp_path_factory.mktemp("debug")
    write_images(d / "calib", 12, seed=80)
    onnx_path = d / "w18s.onnx"
    main(["export", "hrnet_cls", "--variant", "w18_small_v1", "--random-weights", "-o", str(onnx_path)])
    for precision in ("fp32", "int8"):
        args = ["convert", str(onnx_path), "--target", "onnxruntime", "--precision", precision, "-o",
                str(d / precision)]
        if precision == "int8":
            args += ["--calib", str(d / "calib"), "--calib-count", "12"]
        try:
            main(args)
        except SystemExit as e:  # main exits with the command's code
            assert e.code in (0, None)
    return {"dir": d, "onnx": onnx_path, "fp32": d / "fp32", "int8": d / "int8"}


def test_fp32_artifact_every_layer_at_0_99999_no_false_alarm(built, tmp_path, run_cli):
    res = run_cli("debug", built["fp32"], "--source", built["onnx"], "--json", tmp_path / "d.json",
                  "--plot", tmp_path / "d.png")
    assert res.code == 0, res.err
    doc = json.loads((tmp_path / "d.json").read_text())
    assert doc["first_below_threshold"] is None and doc["origin"] is None
    assert doc["threshold"] == 0.99999
    # the fused fp32 graph still exposes most layers under their source names
    assert doc["layers_compared"] >= 100
    assert all(layer["cosine"] >= 0.99999 for layer in doc["layers"])
    assert (tmp_path / "d.png").stat().st_size > 10_000
    assert "every layer at cosine >= 0.99999" in res.out


def test_corrupted_conv_in_int8_artifact_is_named_first_diverging(built, tmp_path, run_cli):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(built["int8"], bad)
    convs = conv_nodes(built["onnx"])
    node, tensor = corrupt_artifact_conv(bad, convs[len(convs) // 2][0], factor=-4.0)
    res = run_cli("debug", bad, "--source", built["onnx"], "--json", tmp_path / "d.json")
    assert res.code == 1  # a layer below the threshold is a breach
    doc = json.loads((tmp_path / "d.json").read_text())
    # onnxruntime's quantizer folds a Relu into the Conv before it: the tensor compared may be
    # the Relu's, the layer named is the corrupted Conv either way
    assert doc["origin"]["converted"] == f"{node} (Conv)"
    assert doc["origin"]["tensor"] in (tensor, *_relu_after(built["onnx"], tensor))
    assert doc["ranked_by_added_error"][0] == doc["origin"]["tensor"]
    assert doc["origin"]["cosine"] < 0.5  # sign-flipped, then through the folded Relu
    assert f"computed by {node} (Conv)" in " ".join(res.out.split())
    # the clean int8 artifact has no single layer breaking the budget by itself
    clean = run_cli("debug", built["int8"], "--source", built["onnx"], "--json", tmp_path / "c.json")
    assert json.loads((tmp_path / "c.json").read_text())["origin"] is None
    assert clean.code in (0, 1)


def _relu_after(onnx_path: Path, tensor: str) -> list[str]:
    import onnx

    return [n.output[0] for n in onnx.load(str(onnx_path), load_external_data=False).graph.node
            if n.op_type == "Relu" and n.input[0] == tensor]


def test_int8_layers_are_matched_through_the_qdq_names(built, tmp_path, run_cli):
    res = run_cli("debug", built["int8"], "--source", built["onnx"], "--json", tmp_path / "d.json",
                  "--threshold", "0.9")
    doc = json.loads((tmp_path / "d.json").read_text())
    assert res.code == 0 and doc["first_below_threshold"] is None
    names = {layer["tensor"] for layer in doc["layers"]}
    convs = {t for _, t in conv_nodes(built["onnx"])}
    assert len(names & convs) >= 0.5 * len(convs)
    # int8 rounding is visible, but modest, in every matched layer
    cos = [layer["cosine"] for layer in doc["layers"]]
    assert min(cos) < 0.99999 and min(cos) > 0.9
    assert any("QDQ" in n for n in doc["notes"])


def test_debug_on_dataset_images_through_the_model_pipeline(built, tmp_path, run_cli):
    imagenet_label_layout(tmp_path / "imnet", per_colour=2)
    res = run_cli("debug", built["fp32"], "--source", built["onnx"], "--data", f"imagenet:{tmp_path / 'imnet'}",
                  "--limit", "3", "--json", tmp_path / "d.json")
    assert res.code == 0, res.err
    doc = json.loads((tmp_path / "d.json").read_text())
    assert doc["inputs"] == 3
    assert "3 inputs of 3 images of imagenet:" in " ".join(res.err.split() + res.out.split())


def test_source_defaults_to_the_recorded_one_and_mismatches_are_refused(built, tmp_path, run_cli):
    ok = run_cli("debug", built["fp32"], "--top", "3")
    assert ok.code == 0, ok.err
    from hrdeploy.cli import main

    other = tmp_path / "pose.onnx"
    main(["export", "hrnet_pose", "--variant", "w32_256x192", "--random-weights", "-o", str(other)])
    res = run_cli("debug", built["fp32"], "--source", other)
    assert res.code == 2
    assert "--source is hrnet_pose/w32_256x192, the artifact hrnet_cls/w18_small_v1" in res.err
    assert len(res.err.strip().splitlines()) == 1
    res = run_cli("debug", built["onnx"])
    assert res.code == 2 and "debug an artifact folder" in res.err


def test_keep_float_leaves_named_layers_unquantized(built, tmp_path):
    """What --accuracy-budget builds on: nodes producing the named tensors are excluded."""
    import onnx

    from hrdeploy.api import convert

    convs = conv_nodes(built["onnx"])
    keep = [convs[0][1], convs[3][1]]
    art = convert(built["onnx"], tmp_path / "mixed", target="onnxruntime", precision="int8",
                  calib=built["dir"] / "calib", calib_count=12, keep_float=keep)
    q = art.manifest["conversion"]["quantization"]
    assert q["kept_float"]["tensors"] == keep
    assert {convs[0][0], convs[3][0]} <= set(q["kept_float"]["nodes"])
    graph = onnx.load(str(art.file("model"))).graph
    producers = {o: n for n in graph.node for o in n.output}
    for name in keep:
        node = producers[name]
        weight_from = producers.get(node.input[1])
        assert weight_from is None or weight_from.op_type != "DequantizeLinear"
        # the tensor itself is not rounded either: its readers take it unquantized
        readers = [n for n in graph.node if name in n.input]
        assert readers and all(n.op_type != "QuantizeLinear" for n in readers)


def test_the_figures():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 100)).astype(np.float32)
    assert cosine_min(a, a) == pytest.approx(1.0)
    assert cosine_min(a, -a) == pytest.approx(-1.0)
    assert sqnr_db(a, a) == 150.0
    assert sqnr_db(a, a * 1.1) == pytest.approx(20.0, abs=1e-4)
    assert noise_budget_db(0.99) == pytest.approx(-16.99, abs=0.01)
    # a layer that only passes its input's noise on adds none; one doubling it adds as much again
    assert added_noise_db(20.0, 20.0) == -150.0
    assert added_noise_db(20.0, 20.0 - 10 * np.log10(2)) == pytest.approx(-20.0, abs=1e-6)


def test_source_tensors_follow_the_graph_order(built):
    x = np.zeros((1, 3, 224, 224), np.float32)
    acts = source_tensors(built["onnx"], x)
    order = [layer.tensor for layer in graph_layers(built["onnx"])]
    assert list(acts) == [t for t in order if t in acts]
    assert len(acts) > 100
