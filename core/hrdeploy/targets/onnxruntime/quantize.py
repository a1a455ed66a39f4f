"""int8 static quantisation (QDQ) with calibration images run through the model's own
preprocessing, so the ranges seen at calibration are the ranges seen in deployment."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ...errors import UserError
from ...target import ConvertRequest


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over preprocessed tensors."""

    def __init__(self, input_name: str, tensors: Iterator[np.ndarray], batch: int = 1) -> None:
        self.input_name = input_name
        self.tensors = tensors
        self.batch = batch
        self.count = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        chunk = []
        for t in self.tensors:
            chunk.append(t)
            if len(chunk) == self.batch:
                break
        if not chunk:
            return None
        self.count += len(chunk)
        return {self.input_name: np.stack(chunk).astype(np.float32)}

    def rewind(self) -> None:  # part of the protocol; one pass is all calibration needs
        pass


def quantize_int8(request: ConvertRequest, out: Path) -> dict[str, Any]:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    opts = request.options
    method = str(opts.get("calib_method") or "minmax").lower()
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise UserError(f"unknown calibration method {method!r}", "choose minmax, entropy or percentile")
    per_channel = str(opts.get("per_channel", "true")).lower() not in ("0", "false", "no")
    exclude_types = [t.strip() for t in str(opts.get("exclude_ops") or "").split(",") if t.strip()]
    assert request.calibration is not None
    model = onnx.load(str(request.onnx_path), load_external_data=False)
    input_name = model.graph.input[0].name
    nodes_to_exclude = [n.name for n in model.graph.node if n.op_type in exclude_types]
    with tempfile.TemporaryDirectory() as tmp:
        prepped = Path(tmp) / "prepped.onnx"
        # shape inference + fusions first, as onnxruntime recommends before static quantisation
        quant_pre_process(str(request.onnx_path), str(prepped), skip_symbolic_shape=True)
        kept = _nodes_producing(prepped, request.keep_float)
        nodes_to_exclude += kept
        reader = _Reader(input_name, request.calibration(request.calib_count), batch=1)
        quantize_static(
            str(prepped), str(out), reader,
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            per_channel=per_channel, calibrate_method=methods[method],
            nodes_to_exclude=nodes_to_exclude,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    if reader.count == 0:
        raise UserError("no calibration images were found", "check --calib DIR")
    return {"quantization": {"format": "QDQ", "activations": "uint8 asymmetric", "weights": "int8 symmetric",
                             "per_channel": per_channel, "calibration": method,
                             "calibration_images": reader.count, "excluded_op_types": exclude_types,
                             **({"kept_float": {"tensors": list(request.keep_float), "nodes": kept}}
                                if request.keep_float else {})}}


def _nodes_producing(model_path: Path, tensors: list[str]) -> list[str]:
    """The nodes of the pre-processed graph producing ``tensors`` (source tensor names; the
    pre-processing keeps them) and reading them: what ``nodes_to_exclude`` takes. A name the graph does not
    produce is refused, since the user's accuracy budget would silently not be honoured."""
    if not tensors:
        return []
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    producer = {out: node for node in model.graph.node for out in node.output}
    missing = [t for t in tensors if t not in producer]
    if missing:
        raise UserError(f"cannot keep {missing[0]!r} in float: no layer of the model produces it",
                        "name tensors of the source graph (as 'hrdeploy debug' lists them)")
    consumers: dict[str, list[str]] = {}
    for node in model.graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node.name)
    names = set()
    for t in tensors:
        node = producer[t]
        names.add(node.name)
        # a tensor is quantized for the layers reading it: they stay in float too, or the
        # tensor is rounded to int8 all the same (only its producer's weights would be float)
        names.update(consumers.get(t, []))
        # the quantizer folds an activation into the layer before it: a Relu's output is that
        # Conv's, so keeping it in float means keeping the Conv
        if node.op_type in _FOLDED_ACTIVATIONS and node.input and node.input[0] in producer:
            before = producer[node.input[0]]
            if before.op_type in ("Conv", "Gemm", "MatMul"):
                names.add(before.name)
    return sorted(names)


_FOLDED_ACTIVATIONS = ("Relu", "Clip")
