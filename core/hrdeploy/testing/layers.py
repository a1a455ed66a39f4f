"""Deliberately broken layers, for tests and benchmarks of ``hrdeploy debug``: a debugger is
only proven by finding a fault planted where it is known."""
from __future__ import annotations

from pathlib import Path

from ..artifact import HASHES, MANIFEST, hash_files
from ..io import atomic_write_json, read_json


def conv_nodes(onnx_path: Path) -> list[tuple[str, str]]:
    """(node name, output tensor) of every Conv, in graph order."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return [(n.name, n.output[0]) for n in model.graph.node if n.op_type in ("Conv", "FusedConv")]


def corrupt_conv(onnx_in: Path, onnx_out: Path, conv: int | str, factor: float = -4.0) -> tuple[str, str]:
    """Multiply the weights of one convolution (by index among the Convs, or node name) by
    ``factor`` and write the model to ``onnx_out``; return (node name, output tensor).

    A float graph has the weights as an initializer; a QDQ graph (onnxruntime int8) has int8
    weights behind a DequantizeLinear, whose scale is multiplied instead (the codes stay
    valid int8)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_in))
    g = model.graph
    convs = [n for n in g.node if n.op_type in ("Conv", "FusedConv")]
    node = convs[conv] if isinstance(conv, int) else next((n for n in convs if n.name == conv), None)
    if node is None:
        raise KeyError(f"no Conv named {conv!r}")
    inits = {i.name: i for i in g.initializer}
    name = node.input[1]
    if name not in inits:  # QDQ: weight = DequantizeLinear(codes, scale, zero point)
        dq = next(n for n in g.node if name in n.output and n.op_type == "DequantizeLinear")
        name = dq.input[1]
    tensor = inits[name]
    tensor.CopyFrom(numpy_helper.from_array((numpy_helper.to_array(tensor) * factor).astype(
        numpy_helper.to_array(tensor).dtype), name))
    onnx.save(model, str(onnx_out))
    return node.name, node.output[0]


def corrupt_artifact_conv(folder: Path, conv: int | str, factor: float = -4.0) -> tuple[str, str]:
    """:func:`corrupt_conv` on an artifact folder's model file in place, and the manifest's
    sha256 record brought along (as a tamperer would, so the file opens and runs)."""
    folder = Path(folder)
    doc = read_json(folder / MANIFEST, "manifest")
    model = folder / doc["files"]["model"]
    result = corrupt_conv(model, model, conv, factor)
    doc[HASHES] = hash_files(folder)
    atomic_write_json(folder / MANIFEST, doc)
    return result
