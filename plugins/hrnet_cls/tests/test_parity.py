"""Numerical parity with the official HRNet-C (recorded reference outputs) in PyTorch and
after ONNX export in ONNX Runtime."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import torch

from hrnet_cls_helpers import max_rel

RTOL = 1e-4  # of the largest reference logit (seeded logits reach 7.5e4)


def _export(model, variant, spec, path, dynamic_size: bool = False, size: int = 224) -> onnx.ModelProto:
    axes = spec.dynamic_axes(variant, dynamic_batch=True)
    if dynamic_size:
        axes = {name: {**a, 2: "height", 3: "width"} for name, a in axes.items() if name == variant.input.name}
        axes["logits"] = {0: "batch"}
    torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(path), dynamo=False, opset_version=17,
                      input_names=[variant.input.name], output_names=list(variant.outputs),
                      dynamic_axes=axes)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    return proto


def _run(path, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(["logits"], {"image": x})[0]


def test_w18_torch_matches_official_reference(w18_logits, w18_ref):
    ref = w18_ref["logits"]
    assert np.abs(ref).max() > 1e4  # the seeded weights' scale this tolerance is meant for
    assert max_rel(w18_logits, ref) <= RTOL
    # the two samples differ by ~1 % of the spread: check that difference on its own scale
    assert max_rel(w18_logits[0] - w18_logits[1], ref[0] - ref[1]) <= 1e-3
    assert (w18_logits.argmax(1) == ref.argmax(1)).all()


def test_w18_onnx_matches_reference(w18_model, w18_ref, w18_logits, spec, tmp_path):
    variant = spec.variant("w18")
    path = tmp_path / "w18.onnx"
    proto = _export(w18_model, variant, spec, path)
    ops = {n.op_type for n in proto.graph.node}
    # mean over H, W (any size), nearest upsampling only
    assert "ReduceMean" in ops and not ops & {"AveragePool", "GlobalAveragePool"}
    resize_modes = {a.s.decode() for n in proto.graph.node if n.op_type == "Resize"
                    for a in n.attribute if a.name == "mode"}
    assert resize_modes == {"nearest"}
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"

    ref = w18_ref["logits"]
    got = _run(path, w18_ref["input"])
    assert max_rel(got, ref) <= RTOL
    assert max_rel(got[0] - got[1], ref[0] - ref[1]) <= 1e-3
    assert max_rel(got, w18_logits) <= 1e-5
    single = _run(path, w18_ref["input"][1:])          # dynamic batch
    assert max_rel(single, ref[1:]) <= RTOL


def test_onnx_with_dynamic_size_matches_torch(small_model, spec, tmp_path):
    variant = spec.variant("w18_small_v1")
    path = tmp_path / "small.onnx"
    _export(small_model, variant, spec, path, dynamic_size=True, size=64)
    x = torch.randn(2, 3, 192, 288, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        want = small_model(x).numpy()
    got = _run(path, x.numpy())
    assert max_rel(got, want) <= 1e-5
    assert max_rel(got[0] - got[1], want[0] - want[1]) <= 1e-4
