"""``hrdeploy matrix`` through the command line: every chosen target x precision for one
exported model — real onnxruntime cells (fp32 / fp16 / int8, evaluated and timed), plan rows
for targets whose toolchain is absent here (ascend, vastai), a failing cell that does not stop
the others, re-runs that skip what is done, the JSON and the PNG.

The model is the hand-built colour classifier carrying hrnet_cls/w18 metadata (the real
ImageNet pipeline, dataset and metric run; its answers on the colour images are known, so the
source's top-1 is 100 %). Its int8 form genuinely misses the int8 cosine floor: the network is
a per-channel mean of the whole image, which per-tensor minmax quantisation coarsens."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from classification_data import colour_classifier_onnx, imagenet_label_layout

TARGETS = "onnxruntime,ascend,vastai"


def _installed(*names: str) -> None:
    from hrdeploy.plugins import registry

    missing = [n for n in names if n not in registry().targets]
    if missing:
        pytest.skip(f"target plugins not installed: {', '.join(missing)}")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("matrix")


@pytest.fixture(scope="module")
def model(work: Path) -> Path:
    return colour_classifier_onnx(work / "colour.onnx")


@pytest.fixture(scope="module")
def data(work: Path) -> str:
    imagenet_label_layout(work / "imagenet", per_colour=2)
    return f"imagenet:{work / 'imagenet'}"


@pytest.fixture(scope="module")
def first_run(model: Path, data: str, work: Path) -> dict[str, Any]:
    """The matrix run once for the module (its cells are what the re-run tests find)."""
    from hrdeploy.cli import _dispatch

    _installed("ascend", "vastai")
    code = _dispatch(["matrix", str(model), "-o", str(work / "m"), "--data", data, "--targets", TARGETS,
                      "--seconds", "0.05", "--calib-count", "8", "--json", str(work / "m.json"),
                      "--plot", str(work / "m.png")])
    doc = json.loads((work / "m.json").read_text())
    return {"code": code, "doc": doc, "cells": {(c["target"], c["precision"]): c for c in doc["cells"]}}


def test_every_target_and_precision_gets_a_row(first_run: dict[str, Any], work: Path) -> None:
    cells = first_run["cells"]
    assert list(cells) == [("onnxruntime", "fp32"), ("onnxruntime", "fp16"), ("onnxruntime", "int8"),
                           ("ascend", "fp16"), ("ascend", "fp32"), ("vastai", "fp16"), ("vastai", "int8")]
    src = first_run["doc"]["source_eval"]
    assert src["metric"] == {"name": "top1", "value": 100.0} and src["images"] == 6
    for precision in ("fp32", "fp16"):
        c = cells[("onnxruntime", precision)]
        assert c["status"] == "passed", c
        assert c["metric"]["value"] == 100.0 and c["metric"]["passed"] is True
        assert c["cosine"] >= 0.9999 and c["agreement"] == 1.0
        assert [t["batch"] for t in c["throughput"]] == [1, 8]
        assert all(t["images_per_second"] > 0 and t["ms_per_image"] > 0 for t in c["throughput"])
        assert c["size_mb"] > 0 and c["simulated"] is False
        # the cell's own files: the artifact, its evaluation (with --compare against the source)
        folder = Path(c["folder"])
        assert (folder / "cell.json").is_file() and (folder / "artifact" / "manifest.json").is_file()
        assert json.loads((folder / "eval.json").read_text())["compare"][0]["passed"] is True


def test_int8_below_its_cosine_floor_is_a_breach_exit_1(first_run: dict[str, Any]) -> None:
    c = first_run["cells"][("onnxruntime", "int8")]
    assert c["status"] == "converted, parity below floor"
    assert "cosine" in c["reason"] and "< 0.99" in c["reason"] and c["cosine"] < 0.99
    assert c["throughput"] and c["metric"]["name"] == "top1"  # the breach is kept and measured
    assert first_run["code"] == 1


def test_absent_toolchains_write_plans_and_a_failing_cell_does_not_stop_the_rest(first_run: dict[str, Any]) -> None:
    cells = first_run["cells"]
    for precision in ("fp16", "fp32"):  # no --soc, no Ascend chip to read it from: a failed cell
        c = cells[("ascend", precision)]
        assert c["status"] == "failed" and "--soc auto needs a device" in c["reason"], c
    for precision in ("fp16", "int8"):  # the cells after it ran
        c = cells[("vastai", precision)]
        assert c["status"] == "plan written" and c["artifact"] in c["reason"]
        manifest = json.loads((Path(c["artifact"]) / "manifest.json").read_text())
        assert manifest["dry_run"] is True and manifest["commands"]
        assert c["throughput"] == [] and c["metric"] is None


def test_table_json_and_plot(first_run: dict[str, Any], model: Path, data: str, work: Path, run_cli: Any) -> None:
    assert (work / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((work / "m" / "matrix.json").read_text())["cells"] == first_run["doc"]["cells"]
    # a re-run prints the table again (every cell from the earlier run)
    res = run_cli("matrix", model, "-o", work / "m", "--data", data, "--targets", "onnxruntime",
                  "--precisions", "fp32", "--seconds", "0.05")
    assert res.code == 0, res
    for column in ("target", "precision", "status", "size MB", "metric", "cosine", "ms/img", "img/s"):
        assert column in res.out
    assert "top1 100.00" in res.out and "passed (earlier run)" in res.out


def test_rerun_skips_done_cells_and_retries_failed_ones(first_run: dict[str, Any], model: Path, data: str,
                                                        work: Path, run_cli: Any) -> None:
    fp32 = Path(first_run["cells"][("onnxruntime", "fp32")]["folder"]) / "artifact" / "manifest.json"
    plan = Path(first_run["cells"][("vastai", "fp16")]["artifact"]) / "manifest.json"
    before = fp32.stat().st_mtime_ns, plan.stat().st_mtime_ns
    res = run_cli("matrix", model, "-o", work / "m", "--data", data, "--targets", TARGETS, "--seconds", "0.05",
                  "--calib-count", "8", "--set", "ascend.soc=Ascend310P3", "--json", work / "m2.json")
    assert res.code == 1, res  # the int8 breach is still there (from the earlier run)
    cells = {(c["target"], c["precision"]): c for c in json.loads((work / "m2.json").read_text())["cells"]}
    assert (fp32.stat().st_mtime_ns, plan.stat().st_mtime_ns) == before
    assert res.err.count("skipped") == 5  # onnxruntime x3, vastai x2
    for precision in ("fp16", "fp32"):  # the failed cells ran again, now with the SoC named
        c = cells[("ascend", precision)]
        assert c["status"] == "plan written", c
        manifest = json.loads((Path(c["artifact"]) / "manifest.json").read_text())
        assert "--soc_version=Ascend310P3" in " ".join(manifest["commands"][0]["argv"])


def test_changed_settings_and_restart_redo_cells(first_run: dict[str, Any], model: Path, data: str, work: Path,
                                                 run_cli: Any) -> None:
    fp32 = Path(first_run["cells"][("onnxruntime", "fp32")]["folder"]) / "cell.json"
    int8 = Path(first_run["cells"][("onnxruntime", "int8")]["folder"]) / "cell.json"
    before = fp32.stat().st_mtime_ns, int8.stat().st_mtime_ns
    # another calibration count changes the int8 cell only
    res = run_cli("matrix", model, "-o", work / "m", "--data", data, "--targets", "onnxruntime",
                  "--precisions", "fp32,int8", "--seconds", "0.05", "--calib-count", "6")
    assert res.code == 1, res
    assert fp32.stat().st_mtime_ns == before[0] and int8.stat().st_mtime_ns != before[1]
    manifest = json.loads((int8.parent / "artifact" / "manifest.json").read_text())
    assert manifest["conversion"]["quantization"]["calibration_images"] == 6
    res = run_cli("matrix", model, "-o", work / "m", "--data", data, "--targets", "onnxruntime",
                  "--precisions", "fp32", "--seconds", "0.05", "--restart")
    assert res.code == 0, res
    assert fp32.stat().st_mtime_ns != before[0] and "skipped" not in res.err


def test_without_data_the_plot_uses_the_cosine(model: Path, work: Path, run_cli: Any) -> None:
    res = run_cli("matrix", model, "-o", work / "nodata", "--targets", "onnxruntime", "--precisions", "fp32",
                  "--batch", "2", "--seconds", "0.05", "--plot", work / "nodata.png", "--json", "-")
    assert res.code == 0, res
    doc = json.loads(res.out)  # standard output holds the JSON alone; the table went to stderr
    (cell,) = doc["cells"]
    assert doc["source_eval"] is None and cell["metric"] is None and cell["status"] == "passed"
    assert [t["batch"] for t in cell["throughput"]] == [2] and cell["cosine"] >= 0.9999
    assert "onnxruntime" in res.err and (work / "nodata.png").stat().st_size > 1000


@pytest.mark.parametrize("args, message", [
    (["--targets", "nosuch"], "unknown target 'nosuch'"),
    (["--targets", "onnxruntime", "--precisions", "int4"], "no chosen target supports int4"),
    (["--targets", "onnxruntime", "--set", "threads=2"], "--set expects TARGET.KEY=VALUE"),
    (["--targets", "onnxruntime", "--set", "onnxruntime.bogus=1"], "has no option --bogus"),
    (["--targets", "onnxruntime", "--set", "vastai.calib_mode=kl"], "not in this matrix"),
    (["--targets", "onnxruntime", "--calib-method", "nearest"], "'nearest' is not one of"),
    (["--targets", "onnxruntime", "--batch", "0"], "out of range"),
    (["--targets", "onnxruntime", "--data", "imagenet"], "--data expects KIND:PATH"),
])
def test_usage_errors_exit_2_before_any_cell(model: Path, work: Path, run_cli: Any, args: list[str],
                                              message: str) -> None:
    out = work / "refused"
    res = run_cli("matrix", model, "-o", out, *args)
    assert res.code == 2, res
    assert message in res.err and res.err.count("\n") == 1
    assert not (out / "onnxruntime-fp32").exists()


def test_a_folder_that_is_not_a_matrix_is_refused(model: Path, work: Path, run_cli: Any) -> None:
    other = work / "someone-elses"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    res = run_cli("matrix", model, "-o", other, "--targets", "onnxruntime")
    assert res.code == 2 and "is not a matrix folder" in res.err
    assert os.listdir(other) == ["notes.txt"]


def test_metric_floor_and_simulator_rows() -> None:
    from hrdeploy.matrix import Cell, _judge_metric, table_rows

    assert _judge_metric(("top1", 75.0), ("top1", 76.0), 0.01)["passed"] is False   # floor 75.24
    assert _judge_metric(("top1", 75.3), ("top1", 76.0), 0.01)["passed"] is True
    assert _judge_metric(("AP", 0.0), ("AP", 0.0), 0.01)["passed"] is True  # random weights: nothing to lose
    assert _judge_metric(("AP", 0.5), None, 0.01)["passed"] is None
    sim = Cell("chip", "fp32", status="passed", simulated=True, cosine=0.9999991, size_mb=12.34)
    assert table_rows([sim]) == [["chip", "fp32", "passed", "12.3", "-", "0.999999", "simulator, no throughput", "-"]]


@pytest.mark.toolchain
def test_sophon_cell_on_the_simulator(work: Path, run_cli: Any) -> None:
    """One Sophon fp32 cell on the TPU-MLIR cmodel: compiled, evaluated on two images against
    the source, and no throughput (the simulator's speed is not the chip's)."""
    import numpy as np
    from hrdeploy.plugins import registry
    from hrdeploy.synthetic import write_images
    from hrdeploy.testing.graphs import save_classifier
    from onnx import helper, numpy_helper

    _installed("sophon")
    probe = registry().target("sophon").probe()
    if not probe.available:
        pytest.skip(f"sophon toolchain not here: {probe.detail}")
    # a small conv net the toolchain's onnx 1.14 reads (opset 13, IR 8), with hrnet_cls metadata
    rng = np.random.default_rng(5)
    inits = [numpy_helper.from_array(rng.normal(0, s, shape).astype(np.float32), n) for n, shape, s in
             (("w1", (8, 3, 3, 3), 0.3), ("b1", (8,), 0.1), ("w2", (1000, 8), 0.5), ("b2", (1000,), 0.1))]
    nodes = [helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[4, 4]),
             helper.make_node("Relu", ["c1"], ["r1"]), helper.make_node("GlobalAveragePool", ["r1"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]), helper.make_node("Gemm", ["f", "w2", "b2"], ["logits"], transB=1)]
    save_classifier(work / "small.onnx", nodes, inits, "seeded small test network", opset=13, ir_version=8,
                    batch="N", name="small")
    root = work / "sim-data"
    paths = write_images(root / "ILSVRC2012_img_val", 3, seed=9)
    (root / "val_label.txt").write_text("".join(f"{p.name} {i}\n" for i, p in enumerate(paths)))
    res = run_cli("matrix", work / "small.onnx", "-o", work / "sim", "--targets", "sophon", "--precisions", "fp32",
                  "--batch", "1", "--limit", "2", "--data", f"imagenet:{root}", "--chip", "bm1684x",
                  "--json", work / "sim.json")
    assert res.code == 0, res
    (cell,) = json.loads((work / "sim.json").read_text())["cells"]
    assert cell["status"] == "passed" and cell["simulated"] is True, cell
    assert cell["throughput"] == [] and cell["agreement"] == 1.0 and cell["cosine"] >= 0.9999
    assert "simulator, no throughput" in res.out
    print(f"\nsophon fp32 cell on the cmodel: {cell['seconds']}")
