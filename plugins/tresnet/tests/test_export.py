"""``hrdeploy export`` of TResNet (legacy exporter, opset 17, ``image`` -> ``logits``, dynamic
batch): ONNX Runtime reproduces the PyTorch module, for the timm and the Ascend flavour."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from hrdeploy.onnx_export import export
from hrdeploy.parity import compare_output
from hrdeploy_tresnet.model import build_tresnet


def _session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _graph_ops(path: Path) -> Counter:
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}  # standard operators only
    assert model.opset_import[0].version == 17
    (inp,) = model.graph.input
    (out,) = model.graph.output
    assert inp.name == "image" and out.name == "logits"
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["batch", 3, 224, 224]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 1000]
    return Counter(n.op_type for n in model.graph.node)


def _export(spec, variant_name: str, weights: Path, out: Path):
    result = export(spec, spec.variant(variant_name), out, weights=weights, random_weights=False,
                    log=lambda _line: None)
    (diff,) = result.parity.outputs
    print(f"{variant_name}: export parity ORT vs torch: max abs {diff.max_abs:.2e}, max rel {diff.max_rel:.2e} "
          f"(max|logit| {diff.max_ref:.3f}), sample-difference rel {diff.sample_diff_rel:.2e}, "
          f"cosine {diff.cosine_min:.8f}")
    assert result.parity.passed and diff.max_rel <= 1e-4
    assert diff.sample_diff_rel <= 1e-3  # the input-dependent part survives, not only the mean
    return result


def _compare(spec, variant_name: str, sess: ort.InferenceSession, x: np.ndarray, ref: np.ndarray) -> None:
    (got,) = sess.run(["logits"], {"image": x})
    variant = spec.variant(variant_name)
    diff = compare_output("logits", ref, got, variant.tolerance("fp32"))
    print(f"{variant_name}: reference input, ORT vs torch: max rel {diff.max_rel:.2e}, "
          f"sample-difference rel {diff.sample_diff_rel:.2e}")
    assert diff.passed and diff.max_rel <= 1e-4 and diff.sample_diff_rel <= 1e-3
    check = spec.task_check(variant, [ref], [got], variant.tolerance("fp32"))
    assert check.passed and check.value == 1.0
    # dynamic batch: one image alone gives the same row
    (one,) = sess.run(["logits"], {"image": x[1:2]})
    assert np.abs(one[0] - ref[1]).max() <= 1e-4 * np.abs(ref).max()


def test_export_timm_m(spec, timm_m_checkpoint, logits_m, reference_input, tmp_path):
    result = _export(spec, "m", timm_m_checkpoint, tmp_path / "tresnet_m.onnx")
    assert result.metadata["weights"] == "tresnet_m_seeded.pth: timm tresnet_m checkpoint"
    ops = _graph_ops(result.onnx_path)
    # space-to-depth as one 6-D Reshape/Transpose; the blur's reflect border as 4 constant
    # Slices + 2 Concats per blur (no Pad with computed pads); pooling as ReduceMean (18 SE
    # gates + head), the only AveragePools are the three 2x2 shortcut pools
    assert ops["Transpose"] == 1 and ops["Slice"] == 3 * 4 and "Pad" not in ops
    assert ops["ReduceMean"] == 18 + 1 and ops["Gemm"] == 1 and ops["AveragePool"] == 3
    # the exported network gives the reference statistics' logits too
    _compare(spec, "m", _session(result.onnx_path), reference_input.numpy(), logits_m)


def test_export_m_ascend(spec, ascend_checkpoint, ascend_model, tmp_path):
    result = _export(spec, "m_ascend", ascend_checkpoint, tmp_path / "tresnet_m_ascend.onnx")
    assert result.metadata["weights"].startswith("model_best.pth.tar: Ascend-patched timm v0.4.5 tresnet_m")
    assert result.metadata["preprocess"]["mean"] == [0.0, 0.0, 0.0]
    ops = _graph_ops(result.onnx_path)
    assert "Pad" not in ops and "Slice" not in ops  # the zero padding is the blur Conv's own pads
    # stem, conv1 of each BasicBlock, conv1 and conv2 of each Bottleneck; conv2/conv3 have none
    assert ops["LeakyRelu"] == 1 + 3 + 4 + 11 * 2 + 3 * 2
    module, _ = ascend_model
    x = np.random.default_rng(5).random((2, 3, 224, 224), dtype=np.float32)  # RGB / 255 range
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    _compare(spec, "m_ascend", _session(result.onnx_path), x, ref)


def test_flavours_differ_on_the_same_weights(ascend_model):
    """Same parameters, different network: slope 0.01 and zero-padded blur change the logits
    (that is why the Ascend checkpoint is not loaded into the timm variant)."""
    module, _ = ascend_model
    timm_net = build_tresnet("m")  # a fresh one: the session's seeded model must stay intact
    timm_net.load_state_dict(module.state_dict(), strict=True)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a, b = module(x), timm_net(x)
    rel = float((a - b).abs().max() / a.abs().max())
    assert rel > 1e-3


@pytest.mark.parametrize("variant", ["m", "l", "xl", "m_ascend"])
def test_variant_declarations(spec, variant):
    v = spec.variant(variant)
    assert v.input.name == "image" and v.input.fixed_size == (224, 224) and v.input.batch == "dynamic"
    assert v.outputs == ("logits",)
    assert v.preprocess["resize_short"] == 256 and v.preprocess["crop"] == 224
    assert v.preprocess["mean"] == [0.0, 0.0, 0.0] and v.preprocess["std"] == [1.0, 1.0, 1.0]
    assert v.preprocess["color"] == "rgb" and v.preprocess["interpolation"] == "pil-bilinear"
    assert spec.dynamic_axes(v, True) == {"image": {0: "batch"}, "logits": {0: "batch"}}
