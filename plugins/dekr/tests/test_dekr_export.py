"""The whole seeded w32 network against the official reference, in PyTorch and exported to ONNX
(standard operators, dynamic H/W): the heavy part, done once per session (``w32_export``)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

# Measured on the seeded w32 at 512 x 768 (torch 2.13 CPU, onnxruntime CPU, 2 threads), as
# max|got - ref| / max|ref|; each limit is a small multiple of what is achieved:
# - the plugin's PyTorch module vs the official reference: heatmap 0 (bit-identical), offset 2.2e-7
TORCH_REL = 1e-6
# - onnxruntime vs the reference: heatmap 2.3e-6 (2.6e-6 vs PyTorch at 512 x 512)
HEATMAP_REL = 1e-5
# - onnxruntime vs the reference: offset 4.0e-4 (1.9e-4 vs PyTorch at 512 x 512). A handful of
#   offset elements are ill-conditioned: their few in-bounds deformable taps sit far outside the
#   map (the reference meta's adapt_block_inbounds_fraction), and onnxruntime's GridSample
#   rounds those taps differently from PyTorch's grid_sample (which matches torchvision's
#   DeformConv2d of the reference to the 2.2e-7 above).
OFFSET_REL = 1e-3


def _rel(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(got - ref).max() / np.abs(ref).max())


def test_pytorch_reproduces_reference(w32_export, ref_model) -> None:
    hm, off = w32_export.torch_out
    assert hm.shape == (1, 18, 128, 192) and off.shape == (1, 34, 128, 192)
    assert _rel(hm, ref_model["heatmap"]) <= TORCH_REL
    assert _rel(off, ref_model["offset"]) <= TORCH_REL


def test_onnxruntime_reproduces_reference(w32_export, ref_model) -> None:
    hm, off = w32_export.ort_out
    print(f"\nORT vs reference: heatmap {_rel(hm, ref_model['heatmap']):.2e}, "
          f"offset {_rel(off, ref_model['offset']):.2e} of max|ref|; export {w32_export.export_seconds:.1f} s")
    assert _rel(hm, ref_model["heatmap"]) <= HEATMAP_REL
    assert _rel(off, ref_model["offset"]) <= OFFSET_REL
    assert np.quantile(np.abs(off - ref_model["offset"]), 0.999) < 0.2


def test_graph_is_standard_onnx_with_dynamic_size(w32_export) -> None:
    model = onnx.load(str(w32_export.onnx_path))
    onnx.checker.check_model(model)
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
    ops = {n.op_type for n in model.graph.node}
    assert "GridSample" in ops
    # the taps are contracted by a 1x1 Conv, not MatMul: TPU-MLIR 1.30.2 corrupts its heap on
    # MatMul(2-D weight, 3-D batch) (model.deform_conv3x3_grid_sample)
    assert "MatMul" not in ops
    producer = {o: n for n in model.graph.node for o in n.output}
    taps = [n for n in model.graph.node if n.op_type == "Conv" and producer.get(n.input[0]) is not None
            and producer[n.input[0]].op_type == "Reshape" and producer[n.input[0]].input[0] in
            {g.output[0] for g in model.graph.node if g.op_type == "GridSample"}]
    assert len(taps) == ops_count(model, "GridSample") == 34  # 17 joints x 2 adaptive blocks
    assert all([list(a.ints) for a in n.attribute if a.name == "kernel_shape"] == [[1, 1]] for n in taps)
    assert not ops & {"DeformConv", "ScatterND", "DeformableConv2D"}
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["heatmap", "offset"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[2].dim_param and dims[3].dim_param


def ops_count(model: onnx.ModelProto, op_type: str) -> int:
    return sum(n.op_type == op_type for n in model.graph.node)


def test_other_gear_runs_from_the_same_file(w32_export, ref_model) -> None:
    """The 512 x 512 gear (and any multiple of 32) runs from the 512 x 768 export."""
    import torch

    x = np.ascontiguousarray(ref_model["input"][:, :, :, 128:640])
    hm, off = w32_export.session.run(None, {"image": x})
    with torch.inference_mode():
        want_hm, want_off = (t.numpy() for t in w32_export.module(torch.from_numpy(x)))
    assert hm.shape == (1, 18, 128, 128) and off.shape == (1, 34, 128, 128)
    assert _rel(hm, want_hm) <= HEATMAP_REL
    assert _rel(off, want_off) <= OFFSET_REL


def test_task_check_between_pytorch_and_onnxruntime(spec, w32_export) -> None:
    variant = spec.variant("w32")
    check = spec.task_check(variant, w32_export.torch_out, w32_export.ort_out, variant.tolerance("fp32"))
    print("\n" + check.text)
    assert check.passed, check.text
    assert "person centres found again" in check.text


@pytest.mark.parametrize("precision", ["fp32"])
def test_parity_report_within_variant_tolerance(spec, w32_export, precision: str) -> None:
    from hrdeploy.parity import compare

    report = compare(spec, spec.variant("w32"), w32_export.torch_out, w32_export.ort_out, precision,
                     "pytorch", "onnxruntime")
    assert report.passed, report.failures()
