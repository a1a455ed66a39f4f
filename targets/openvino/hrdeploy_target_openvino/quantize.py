"""int8 post-training quantization with NNCF, calibrated on tensors made by the model's own
preprocessing (so the ranges seen at calibration are the ranges seen in deployment), and the
mapping of mixed precision's ``keep_float`` tensor names onto NNCF's ignored scope."""
from __future__ import annotations

import contextlib
import io
import logging
from typing import Any, Iterator, Sequence

import numpy as np

from hrdeploy.errors import UserError

#: ops NNCF quantizes (their inputs get FakeQuantize): keeping a layer in float means leaving
#: these out of the quantization
QUANTIZABLE = {"Convolution", "GroupConvolution", "MatMul", "ConvolutionBackpropData",
               "GroupConvolutionBackpropData", "DeformableConvolution"}
#: per-channel ops the ONNX frontend splits off a layer (a Conv's bias becomes Convolution +
#: Add): the tensor a source node named is the output of the last of them
_TAIL_OPS = {"Add", "Multiply", "Subtract", "Convert", "Reshape"}


def _is_constant(node: Any) -> bool:
    return node.get_type_name() == "Constant"


def producers(model: Any, tensor_names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(friendly names of the OpenVINO ops that compute each source tensor, the tensor names
    not found in the model). The op that carries a source tensor's name is followed back
    through the bias/scale ops the frontend split off, so the Convolution or MatMul that
    NNCF would quantize is in the list too."""
    by_tensor: dict[str, Any] = {}
    for op in model.get_ordered_ops():
        for out in op.outputs():
            for name in out.get_names():
                by_tensor.setdefault(name, op)
    names: list[str] = []
    missing: list[str] = []
    for tensor in tensor_names:
        op = by_tensor.get(tensor)
        if op is None:
            missing.append(tensor)
            continue
        chain = [op]
        while op.get_type_name() in _TAIL_OPS:
            sources = [i.get_source_output().get_node() for i in op.inputs()]
            variable = [s for s in sources if not _is_constant(s)]
            if len(variable) != 1:
                break
            op = variable[0]
            chain.append(op)
            if op.get_type_name() in QUANTIZABLE:
                break
        for node in chain:
            if node.get_type_name() not in ("Parameter", "Constant") and node.get_friendly_name() not in names:
                names.append(node.get_friendly_name())
    return names, missing


def quantize_int8(model: Any, tensors: Sequence[np.ndarray], keep_float: Sequence[str] = ()) -> tuple[Any, dict[str, Any]]:
    """``model`` quantized to int8 by ``nncf.quantize`` on ``tensors`` (CHW float32, one
    calibration sample each); ``keep_float``: source tensor names whose layers stay float."""
    import nncf

    if not tensors:
        raise UserError("no calibration images were found", "check --calib DIR")
    ignored = None
    info: dict[str, Any] = {"tool": f"nncf {nncf.__version__} quantize", "preset": "performance (symmetric)",
                            "weights": "int8 per channel", "activations": "int8 per tensor",
                            "calibration_images": len(tensors), "fast_bias_correction": True}
    if keep_float:
        names, missing = producers(model, keep_float)
        if missing:
            raise UserError(f"mixed precision: tensor(s) {', '.join(missing[:5])} are not in the OpenVINO model",
                            "keep_float names tensors of the source ONNX graph")
        ignored = nncf.IgnoredScope(names=names)
        info["kept_float"] = {"tensors": list(keep_float), "ops": names}
    dataset = nncf.Dataset(list(tensors), lambda t: np.ascontiguousarray(t[None], dtype=np.float32))
    kwargs: dict[str, Any] = {"subset_size": len(tensors)}
    if ignored is not None:
        kwargs["ignored_scope"] = ignored
    with _quiet(nncf):
        quantized = nncf.quantize(model, dataset, **kwargs)
    return quantized, info


@contextlib.contextmanager
def _quiet(nncf: Any) -> Iterator[None]:
    """NNCF draws progress bars on stdout and logs at INFO: hrdeploy's own output (a JSON on
    stdout, the parity table) must stay readable, so both are held back while it runs."""
    logger = logging.getLogger("nncf")
    level = logger.level
    nncf.set_log_level(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)
