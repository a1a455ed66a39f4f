"""Hand-built classifiers for tests and benchmarks: a few ONNX nodes from ``image`` (N x 3 x 224
x 224) to ``logits`` (N x 1000), carrying hrnet_cls/w18 metadata so that hrdeploy treats the
file as an export of that model (its ImageNet pipeline, metric and tolerances) while the
network stays small enough to convert and run in seconds."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..artifact import write_onnx_metadata


def save_classifier(path: Path, nodes: Sequence[Any], initializers: Sequence[Any], weights: str, *,
                    opset: int = 17, ir_version: int = 9, batch: str = "batch", name: str = "classifier") -> Path:
    """Write ``nodes`` (reading ``image``, producing ``logits``) as an hrnet_cls/w18 export."""
    import onnx
    from onnx import TensorProto, helper

    from ..tasks.classification import classification_variant

    graph = helper.make_graph(list(nodes), name,
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, 224, 224])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 1000])],
                              list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    v = classification_variant("w18")
    write_onnx_metadata(model, {"model": "hrnet_cls", "variant": "w18", "task": "classification",
                                "input": v.input.to_dict(), "outputs": ["logits"], "preprocess": v.preprocess,
                                "weights": weights})
    onnx.save(model, str(path))
    return Path(path)
