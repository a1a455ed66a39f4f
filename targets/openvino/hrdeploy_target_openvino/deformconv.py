"""ONNX ``DeformConv`` (opset 19) for OpenVINO's ONNX frontend, which has no conversion rule
for it (2026.4: "No conversion rule found for operations: DeformConv-19"): a conversion
extension that maps it onto OpenVINO's own ``DeformableConvolution`` (opset 8). DEKR's
adaptive convolutions export in this form (``--opt adapt_conv=deformconv``)."""
from __future__ import annotations

from typing import Any

import numpy as np


def _ints(node: Any, name: str, default: list[int]) -> list[int]:
    try:
        value = node.get_attribute(name)
    except Exception:  # an attribute the exporter left out takes the ONNX default
        return list(default)
    return [int(v) for v in value]


def _int(node: Any, name: str, default: int) -> int:
    try:
        return int(node.get_attribute(name))
    except Exception:  # absent: the ONNX default
        return default


def translate(node: Any) -> list[Any]:
    """inputs X, W, offset[, B[, mask]] -> DeformableConvolution (+ the bias added per
    channel). ONNX's offsets are (y, x) pairs per tap, the layout OpenVINO takes; samples
    outside the map read zeros on both sides (``bilinear_interpolation_pad``)."""
    import openvino.opset8 as ops

    x, w, offset = node.get_input(0), node.get_input(1), node.get_input(2)
    count = node.get_input_size()
    bias = node.get_input(3) if count > 3 and not _is_empty(node, 3) else None
    mask = node.get_input(4) if count > 4 and not _is_empty(node, 4) else None
    pads = _ints(node, "pads", [0, 0, 0, 0])
    half = len(pads) // 2
    y = ops.deformable_convolution(
        x, offset, w, strides=_ints(node, "strides", [1, 1]), pads_begin=pads[:half], pads_end=pads[half:],
        dilations=_ints(node, "dilations", [1, 1]), mask=mask, group=_int(node, "group", 1),
        deformable_group=_int(node, "offset_group", 1), bilinear_interpolation_pad=True)
    if bias is not None:
        shape = ops.constant(np.array([1, -1, 1, 1], dtype=np.int64))
        y = ops.add(y, ops.reshape(bias, shape, special_zero=False))
    return y.outputs()


def _is_empty(node: Any, index: int) -> bool:
    """An optional input given as "" (ONNX's way of skipping one)."""
    try:
        return node.get_input(index).get_node().get_type_name() == "NullNode"
    except Exception:  # no way to tell: treat it as given
        return False


def extensions() -> list[Any]:
    """The conversion extensions hrdeploy's OpenVINO conversion always passes."""
    from openvino.frontend import ConversionExtension

    return [ConversionExtension("DeformConv", translate)]
