"""export -> convert -> predict / eval / bench through the command line, on the embedded
onnxruntime target, with a real (small) HRNet-C and with a hand-built model whose answers are
known."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from classification_data import colour_classifier_onnx, imagenet_label_layout, imagenet_synset_layout
from hrdeploy.synthetic import write_images


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cls")


@pytest.fixture(scope="module")
def exported(workdir) -> Path:
    """HRNet-W18-small-v1 with seeded random weights, exported once for the module."""
    from hrdeploy.cli import main

    onnx_path = workdir / "w18s.onnx"
    main(["export", "hrnet_cls", "--variant", "w18_small_v1", "--random-weights", "-o", str(onnx_path)])
    assert onnx_path.is_file()
    return onnx_path


@pytest.fixture(scope="module")
def images(workdir) -> Path:
    write_images(workdir / "images", 3, seed=40)
    write_images(workdir / "calib", 12, seed=80)
    return workdir / "images"


def test_export_writes_checked_onnx_with_metadata_and_reference(exported, run_cli):
    from hrdeploy.artifact import Artifact

    art = Artifact.load(exported)
    assert (art.model, art.variant, art.task) == ("hrnet_cls", "w18_small_v1", "classification")
    assert art.manifest["preprocess"]["resize_short"] == 256
    assert "RANDOM" in art.manifest["weights"]
    assert exported.with_suffix(".ref.npz").is_file()
    res = run_cli("export", "hrnet_cls", "--variant", "w18_small_v1", "--random-weights",
                  "-o", exported.with_name("again.onnx"))
    assert res.code == 0, res
    assert "PyTorch vs ONNX Runtime" in res.out and "within tolerance" in res.out
    assert "top-1 agreement" in res.out and "random weights" in res.out


def test_convert_fp32_and_int8_record_parity(exported, images, workdir, run_cli):
    res = run_cli("convert", exported, "--target", "onnxruntime", "-o", workdir / "fp32")
    assert res.code == 0, res
    m = json.loads((workdir / "fp32" / "manifest.json").read_text())
    assert m["parity"]["status"] == "passed" and m["parity"]["outputs"][0]["max_rel"] < 1e-5
    assert m["source_onnx"]["sha256"] and m["commands"] and m["toolchain"]["name"] == "onnxruntime"
    res = run_cli("convert", exported, "--precision", "int8", "--calib", workdir / "calib", "--calib-count", "8",
                  "-o", workdir / "int8")
    assert res.code == 0, res
    m = json.loads((workdir / "int8" / "manifest.json").read_text())
    assert m["conversion"]["quantization"]["calibration_images"] == 8
    assert "held-out" in m["reference"]["source"] and m["parity"]["inputs"] == 4
    assert m["parity"]["outputs"][0]["cosine_min"] >= 0.99
    again = run_cli("convert", exported, "-o", workdir / "int8")
    assert again.code == 2 and "exists" in again.err


def test_predict_json_and_vis(exported, images, workdir, run_cli):
    res = run_cli("predict", exported, images, "--json", "-", "--vis", workdir / "vis")
    assert res.code == 0, res
    preds = json.loads(res.out)
    assert len(preds) == 3
    for p in preds:
        assert set(p) == {"image", "top_k"}
        scores = [t["score"] for t in p["top_k"]]
        assert len(scores) == 5 and scores == sorted(scores, reverse=True)
        assert {"index", "name", "score"} <= set(p["top_k"][0])
    assert len(list((workdir / "vis").glob("*.jpg"))) == 3


@pytest.mark.parametrize("layout", ["label-file", "val-folder", "synsets"])
def test_eval_is_exact_on_a_model_that_is_right(layout, tmp_path, run_cli):
    model = colour_classifier_onnx(tmp_path / "colour.onnx")
    data = tmp_path / "imagenet"
    if layout == "synsets":
        items = imagenet_synset_layout(data)
    else:
        items = imagenet_label_layout(data, "ILSVRC2012_img_val" if layout == "label-file" else "val")
    res = run_cli("eval", model, "--data", f"imagenet:{data}", "-o", tmp_path / "result.json", "--batch", "4")
    assert res.code == 0, res
    r = json.loads((tmp_path / "result.json").read_text())
    assert r["metric"]["top1"] == 100.0 and r["metric"]["images"] == len(items)
    assert r["data"]["layout"] == {"synsets": "synset-folders"}.get(layout, "label-file")
    assert r["preprocess"]["mean"] == [0.485, 0.456, 0.406] and r["preprocess"]["crop"] == 224


def test_eval_counts_misses(tmp_path, run_cli):
    model = colour_classifier_onnx(tmp_path / "colour.onnx")
    items = imagenet_label_layout(tmp_path / "d")
    lines = (tmp_path / "d" / "val_label.txt").read_text().splitlines()
    lines[0] = lines[0].rsplit(" ", 1)[0] + " 7"   # one wrong label out of 12
    (tmp_path / "d" / "val_label.txt").write_text("\n".join(lines) + "\n")
    res = run_cli("eval", model, "--data", f"imagenet:{tmp_path / 'd'}", "-o", tmp_path / "r.json")
    assert res.code == 0, res
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["metric"]["top1"] == pytest.approx(100 * 11 / len(items), abs=1e-3)


def test_eval_resumes_after_interruption(tmp_path, run_cli, monkeypatch):
    import hrdeploy.stream as engine

    model = colour_classifier_onnx(tmp_path / "colour.onnx")
    imagenet_label_layout(tmp_path / "d")
    out = tmp_path / "r.json"
    real_finish = engine.Stream._finish_ready
    seen = {"n": 0}

    def interrupt_after_five(self, waiting, final):
        for item in real_finish(self, waiting, final):
            seen["n"] += 1
            if seen["n"] > 5:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(engine.Stream, "_finish_ready", interrupt_after_five)
    res = run_cli("eval", model, "--data", f"imagenet:{tmp_path / 'd'}", "-o", out)
    assert res.code == 130 and not out.exists()
    partial = out.with_name(out.name + ".partial.jsonl")
    assert len(partial.read_text().splitlines()) == 1 + 5
    monkeypatch.setattr(engine.Stream, "_finish_ready", real_finish)
    res = run_cli("eval", model, "--data", f"imagenet:{tmp_path / 'd'}", "-o", out, "--resume")
    assert res.code == 0, res
    r = json.loads(out.read_text())
    assert r["timing"]["resumed"] == 5 and r["metric"]["images"] == 12 and r["metric"]["top1"] == 100.0
    assert not partial.exists()


def test_bench_sweeps_batches_and_writes_json_and_plot(exported, workdir, run_cli):
    res = run_cli("bench", workdir / "fp32", "--batch", "1,2", "--seconds", "0.3", "--warmup", "1",
                  "--json", workdir / "bench.json", "--plot", workdir / "bench.png")
    assert res.code == 0, res
    rep = json.loads((workdir / "bench.json").read_text())
    assert {"model", "variant", "target", "precision", "threads", "results"} <= set(rep)
    assert [r["batch"] for r in rep["results"]] == [1, 2]
    for r in rep["results"]:
        assert r["device_ips"] > 0 and r["e2e_ips"] > 0 and r["iterations"] >= 5 and r["warmup"] == 1
        assert set(r["latency_ms"]) == {"mean", "p50", "p90", "p99"}
        assert set(r["e2e_per_image_ms"]) == {"decode", "preprocess", "infer", "postprocess"}
    assert (workdir / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_preprocess_writes_seed_style_bins(exported, images, tmp_path, run_cli):
    res = run_cli("ascend", "preprocess", exported, images, "-o", tmp_path / "bins")
    assert res.code == 0, res
    bins = sorted((tmp_path / "bins").glob("*.bin"))
    assert len(bins) == 3 and all(b.stat().st_size == 3 * 224 * 224 * 4 for b in bins)


@pytest.mark.parametrize("args, message", [
    (["predict", "missing.onnx", "x.jpg"], "model file not found: missing.onnx"),
    (["export", "nosuchmodel", "--random-weights", "-o", "x.onnx"], "unknown model 'nosuchmodel'"),
    (["export", "hrnet_cls", "--variant", "w99", "--random-weights", "-o", "x.onnx"], "has no variant 'w99'"),
    (["export", "hrnet_cls", "-o", "x.onnx"], "no weights given"),
    (["export", "hrnet_cls", "--weights", "nope.pth", "-o", "x.onnx"], "checkpoint not found"),
    (["eval", "{onnx}", "--data", "imagenet"], "--data expects KIND:PATH"),
    (["eval", "{onnx}", "--data", "coco:/nowhere"], "no dataset reader for 'coco'"),
    (["convert", "{onnx}", "--target", "nosuch", "-o", "out"], "unknown target 'nosuch'"),
    (["convert", "{onnx}", "--precision", "int8", "-o", "out"], "int8 needs calibration images"),
    (["convert", "{onnx}", "--chip", "bm1684", "-o", "out"], "target 'onnxruntime' has no option --chip"),
    (["predict", "{onnx}", "{corrupt}"], "cannot decode image"),
])
def test_user_errors_are_one_line_with_exit_code_2(args, message, exported, tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 truncated")
    args = [a.format(onnx=exported, corrupt=corrupt) for a in args]
    res = run_cli(*args)
    assert res.code == 2, res
    lines = [ln for ln in res.err.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error: ") and message in lines[-1]
    assert "Traceback" not in res.err


def test_wrong_checkpoint_is_diagnosed_in_one_line(tmp_path, run_cli, fixtures_dir):
    import torch

    from hrdeploy.testing.seeded import seeded_state_dict

    ckpt = tmp_path / "tresnet_m.pth"
    torch.save(seeded_state_dict(fixtures_dir / "official" / "tresnet" / "tresnet_m.timm.json"), ckpt)
    res = run_cli("export", "hrnet_cls", "--variant", "w18_small_v1", "--weights", ckpt, "-o", tmp_path / "x.onnx")
    assert res.code == 2 and "tresnet" in res.err.lower() and "Traceback" not in res.err, res
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("fmt", ["txt", "npy", "bin", "txt1001"])
def test_eval_scores_recorded_ais_bench_outputs(fmt, tmp_path, run_cli):
    """The seeds' imagenet_acc_eval.py: a folder of <stem>_0.txt files written by ais_bench."""
    model = colour_classifier_onnx(tmp_path / "colour.onnx")
    items = imagenet_label_layout(tmp_path / "d")
    outs = tmp_path / "ais_out"
    outs.mkdir()
    for i, (path, label) in enumerate(items[:-1]):        # one image has no output: reported
        logits = np.zeros(1000, np.float32)
        logits[label if i else 5] = 3.0                     # the first one is wrong
        stem = path.name.split(".")[0]
        if fmt.startswith("txt"):
            if fmt == "txt1001":
                logits = np.concatenate([[9.0], logits]).astype(np.float32)
            (outs / f"{stem}_0.txt").write_text(" ".join(f"{v:.6f}" for v in logits) + "\n")
        elif fmt == "npy":
            np.save(outs / f"{stem}_0.npy", logits)
        else:
            logits.tofile(outs / f"{stem}_0.bin")
    res = run_cli("ascend", "score", model, "--data", f"imagenet:{tmp_path / 'd'}", "--outputs", outs, "-o", tmp_path / "r.json")
    assert res.code == 0, res
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["data"]["evaluated"] == len(items) - 1 and r["data"]["missing_outputs"] == 1
    assert r["metric"]["top1"] == pytest.approx(100 * (len(items) - 2) / (len(items) - 1), abs=1e-3)
    ascend = r["metric"]["ascend_format"]  # imagenet_acc_eval.py's layout, for side-by-side comparison
    assert ascend["title"] == "Overall statistical evaluation"
    assert {"key": "Number of images", "value": str(len(items) - 1)} in ascend["value"]
    assert {"key": "Top1 accuracy", "value": f"{r['metric']['top1']:.2f}%"} in ascend["value"]
    assert "missing outputs" in res.out and f"wrote {tmp_path / 'r.json'}" in res.out


def test_eval_compare_checks_agreement_on_the_evaluated_images(exported, workdir, tmp_path, run_cli):
    """``eval --compare`` runs every evaluated input through a reference model too: the
    converted artifact agrees with its source ONNX on these images, figures in result.json."""
    imagenet_label_layout(tmp_path / "d", per_colour=2)
    res = run_cli("convert", exported, "--target", "onnxruntime", "-o", tmp_path / "fp32")
    assert res.code == 0, res
    res = run_cli("eval", tmp_path / "fp32", "--data", f"imagenet:{tmp_path / 'd'}", "-o", tmp_path / "r.json",
                  "--batch", "4", "--compare", exported)
    assert res.code == 0, res
    (cmp,) = json.loads((tmp_path / "r.json").read_text())["compare"]
    assert cmp["input_size"] == "224x224" and cmp["inputs"] == 6 and cmp["passed"]
    assert cmp["outputs"][0]["max_rel"] < 1e-5 and cmp["task"]["value"] == 1.0
    assert "network inputs of 224x224 from this evaluation" in res.out and "top-1 agreement" in res.out

    wrong = run_cli("eval", exported, "--data", f"imagenet:{tmp_path / 'd'}", "-o", tmp_path / "w.json",
                    "--compare", colour_classifier_onnx(tmp_path / "colour.onnx"))
    assert wrong.code == 2 and "--compare model is hrnet_cls/w18, the evaluated one hrnet_cls/w18_small_v1" in wrong.err


def test_eval_compare_breach_exits_1_naming_the_output(tmp_path, run_cli):
    import onnx
    from onnx import numpy_helper

    model = colour_classifier_onnx(tmp_path / "colour.onnx")
    scaled = onnx.load(str(model))
    w = next(i for i in scaled.graph.initializer if i.name == "w")
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * 1.5, "w"))  # same answers, other logits
    onnx.save(scaled, str(tmp_path / "scaled.onnx"))
    imagenet_label_layout(tmp_path / "d", per_colour=1)
    res = run_cli("eval", tmp_path / "scaled.onnx", "--data", f"imagenet:{tmp_path / 'd'}", "-o", tmp_path / "r.json",
                  "--compare", model)
    assert res.code == 1, res
    assert "--compare found a breach: 224x224: output 'logits': max rel 0.5" in res.err
    r = json.loads((tmp_path / "r.json").read_text())  # the evaluation itself is kept
    assert r["metric"]["top1"] == 100.0 and not r["compare"][0]["passed"]
    assert r["compare"][0]["task"]["value"] == 1.0
