"""The benchmark script's pure helpers (benchmarks/hrbench): the MAC counter on a hand-built
graph whose MACs are known, and issue 8's ratio/verdict computation on made-up figures.
Nothing here measures speed: performance is reported by benchmarks/run.py, never asserted."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from hrbench import verdicts  # noqa: E402
from hrbench.flops import count_macs  # noqa: E402
from hrbench.report import markdown  # noqa: E402


def _tiny_graph():
    """N x 3 x 16 x 16 -> Conv 3->8 k3 s2 p1 -> depthwise Conv k3 p1 -> ConvTranspose 8->4 k2 s2
    -> Conv 4->8 k1 s2 -> Flatten -> Gemm 512->10 (transB) -> MatMul 10->6; plus a Relu (not counted)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def w(name: str, *shape: int):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    inits = [w("w1", 8, 3, 3, 3), w("w2", 8, 1, 3, 3), w("wt", 8, 4, 2, 2), w("w3", 8, 4, 1, 1),
             w("g", 10, 512), w("gb", 10), w("m", 10, 6)]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=8),
        helper.make_node("ConvTranspose", ["c2", "wt"], ["t"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["t", "w3"], ["c3"], kernel_shape=[1, 1], strides=[2, 2]),
        helper.make_node("Flatten", ["c3"], ["f"]),
        helper.make_node("Gemm", ["f", "g", "gb"], ["y0"], transB=1),
        helper.make_node("MatMul", ["y0", "m"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model


# per image: conv1 8x8x8 outputs x 3*3*3; depthwise 8x8x8 x 9; transpose 8x8x8 inputs x 4*2*2 (-> 4x16x16);
# conv3 8x8x8 x 4; gemm 512*10; matmul 10*6
PER_IMAGE = {"Conv": 512 * 27 + 512 * 9 + 512 * 4, "ConvTranspose": 512 * 16, "Gemm": 5120, "MatMul": 60}


def test_macs_of_a_hand_built_graph_at_two_batch_sizes():
    model = _tiny_graph()
    one = count_macs(model, (1, 3, 16, 16))
    assert one["by_op"] == PER_IMAGE
    assert one["macs"] == sum(PER_IMAGE.values()) == 33852
    assert one["gflops"] == pytest.approx(2 * 33852 / 1e9, abs=1e-4)
    assert one["nodes"] == 6 and one["unknown"] == []
    four = count_macs(model, (4, 3, 16, 16))
    assert four["macs"] == 4 * one["macs"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"  # the caller's model is untouched


def test_macs_left_unknown_when_shapes_cannot_be_inferred():
    model = _tiny_graph()
    res = count_macs(model)  # symbolic batch, no concrete shape given
    assert res["unknown"] and "Conv" not in res["by_op"]


def _results(*, bare=10.0, hrd=9.9, fp32=10.0, int8=26.0, torch=6.0, eval_ips=9.0, cosine=0.995,
             post_ms=40.0, dekr_ips=1.0):
    def point(b, scale=1.0):
        return {"batch": b, "device": {"pytorch": {"ips": torch}, "bare_fp32": {"ips": bare * scale},
                                       "hrdeploy_fp32": {"ips": hrd * scale if b != 8 else fp32},
                                       "bare_int8": {"ips": 30.0}, "hrdeploy_int8": {"ips": int8 if b == 8 else 30.0}},
                "e2e": {}}
    return {"models": [
        {"key": "hrnet_cls/w18", "points": [point(1), point(8)],
         "eval": {"fp32": {"batch": 8, "images": 64, "images_per_second": eval_ips,
                          "per_image_ms": {"decode": 4, "preprocess": 3, "infer": 95, "postprocess": 0.1}}},
         "int8_parity": {"min_cosine": cosine, "source": "8 held-out images", "top1": "top-1 agreement 100%"}},
        {"key": "dekr/w32", "points": [{"batch": 1, "device": {}, "e2e": {"fp32": {
            "e2e_ips": dekr_ips, "e2e_per_image_ms": {"decode": 5, "preprocess": 10, "infer": 900, "postprocess": post_ms}}}}]},
    ]}


def _by_check(rows):
    return {r["check"]: r for r in rows}


def test_ratios_and_verdicts_on_made_up_figures():
    rows = verdicts.compute(_results(bare=10.0, hrd=9.9, fp32=10.0, int8=26.0, torch=6.0, eval_ips=9.0))
    r = _by_check(rows)
    over = r["hrdeploy onnxruntime device-only / bare ONNX Runtime loop"]
    # pairs: fp32 bs1 0.99, fp32 bs8 10/10 = 1, int8 bs1 1, int8 bs8 26/30
    assert over["value"] == pytest.approx((0.99 * 1.0 * 1.0 * (26 / 30)) ** 0.25, abs=1e-4)
    assert over["passed"] is False and "hrnet_cls/w18 int8 bs8" in over["detail"]
    assert r["w18 eval throughput / device-only, fp32 bs8"]["value"] == pytest.approx(0.9) and r["w18 eval throughput / device-only, fp32 bs8"]["passed"]
    assert r["w18 int8 / fp32 device-only, bs8"]["value"] == pytest.approx(2.6) and r["w18 int8 / fp32 device-only, bs8"]["passed"]
    assert r["w18 int8 logits cosine vs fp32 (held-out images)"]["passed"] is True
    assert r["w18 onnxruntime fp32 / PyTorch eager, bs8"]["value"] == pytest.approx(10 / 6, abs=1e-4)
    assert r["w18 onnxruntime fp32 / PyTorch eager, bs8"]["passed"] is True
    dekr = r["DEKR post-processing share of end-to-end time per image, 512x768"]
    assert dekr["value"] == pytest.approx(0.04) and dekr["passed"] is True
    assert verdicts.summary_line(rows).startswith("5/6 required checks passed")


def test_failing_and_unmeasured_checks():
    rows = verdicts.compute(_results(fp32=10.0, int8=20.0, torch=7.0, eval_ips=8.0, cosine=0.98, post_ms=150.0))
    r = _by_check(rows)
    assert r["w18 int8 / fp32 device-only, bs8"]["passed"] is False
    assert r["w18 int8 logits cosine vs fp32 (held-out images)"]["passed"] is False
    assert r["w18 onnxruntime fp32 / PyTorch eager, bs8"]["value"] == pytest.approx(10 / 7, abs=1e-4) and not r["w18 onnxruntime fp32 / PyTorch eager, bs8"]["passed"]
    assert r["w18 eval throughput / device-only, fp32 bs8"]["passed"] is False  # 8 / 10 < 0.85
    assert r["DEKR post-processing share of end-to-end time per image, 512x768"]["value"] == pytest.approx(0.15)
    # a run without DEKR (--models hrnet_cls): the check says so instead of passing or failing
    only_w18 = {"models": _results()["models"][:1]}
    r2 = _by_check(verdicts.compute(only_w18))
    assert r2["DEKR post-processing share of end-to-end time per image, 512x768"]["passed"] is None
    assert "not measured" in verdicts.summary_line(verdicts.compute(only_w18))


def test_markdown_page_of_made_up_results_lists_every_check():
    res = _results()
    for m in res["models"]:
        m["flops"] = {"gflops": 8.57}
        m["breakdown_batch"] = 8 if m["key"].startswith("hrnet") else 1
    res.update({"host": "box", "date": "2026-01-01", "command": "python benchmarks/run.py",
                "machine": {"cpu": "cpu", "cpus": 2, "threads": 2, "load_before": [0.5], "load_after": [0.7],
                            "versions": {"onnxruntime": "1.31"}},
                "peak": {"fp32_gflops": 100.0, "int8_gops": 200.0, "method": "sgemm"},
                "settings": {"seconds": 3, "rounds": 2}})
    res["checks"] = verdicts.compute(res)
    res["checks_summary"] = verdicts.summary_line(res["checks"])
    page = markdown(res)
    assert page.count("| PASS |") + page.count("| FAIL |") + page.count("| not measured |") == len(res["checks"])
    assert "| hrnet_cls/w18 | 8.57 | 8 |" in page and "| dekr/w32 | fp32 | 1 | 1 | 5.0 | 10.0 | 900.0 | 40.0 | 1000.0 |" in page
