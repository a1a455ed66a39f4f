"""The two export forms of DEKR's adaptive convolutions through ``hrdeploy export``: the
portable GridSample form (default, opset 17) is tested in test_dekr_export.py; this is the
DeformConv form onnxruntime runs about 2.4x faster (benchmarks/experiments.py dekr_adapt)."""
from __future__ import annotations

import onnx


def test_deformconv_form_needs_opset_19_and_keeps_parity(tmp_path, run_cli) -> None:
    low = run_cli("export", "dekr", "--random-weights", "--opt", "adapt_conv=deformconv", "-o", tmp_path / "d17.onnx")
    assert low.code == 2
    assert "uses DeformConv, which opset 17 does not have (export with --opset 19 or higher)" in low.err
    assert not (tmp_path / "d17.onnx").exists()

    res = run_cli("export", "dekr", "--random-weights", "--opt", "adapt_conv=deformconv", "--opset", "19",
                  "-o", tmp_path / "d19.onnx")
    assert res.code == 0, res
    assert "parity within tolerance" in res.out and "keypoint error" in res.out
    ops = [n.op_type for n in onnx.load(str(tmp_path / "d19.onnx")).graph.node]
    assert ops.count("DeformConv") == 34 and "GridSample" not in ops  # 17 joints x 2 adaptive blocks

    bad = run_cli("export", "dekr", "--random-weights", "--opt", "adapt_conv=deform", "-o", tmp_path / "x.onnx")
    assert bad.code == 2 and "adaptive conv form 'deform' unknown" in bad.err
