"""``hrdeploy debug`` on onnxruntime: the artifact's graph run with every intermediate tensor
exposed, matched to the source graph by name.

int8 artifacts are QDQ graphs: a source tensor ``X`` appears as ``X`` (the float result of
the layer computed from quantized inputs) followed by ``X_QuantizeLinear_Output`` and
``X_DequantizeLinear_Output`` (the value the next layer actually sees). The latter is taken, so
a layer's figure includes the rounding of its own output. fp16 artifacts keep the names.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ...artifact import Artifact
from ...layerwise import expose_all, match_suffixed, run_exposed
from ...target import LayerDump

#: what onnxruntime's quantizer appends to a tensor's name (quant_utils), most faithful first
QDQ_SUFFIXES = ("_DequantizeLinear_Output", "")


def layer_outputs(artifact: Artifact, inputs: np.ndarray, source: Path, workdir: Path,
                  log: Callable[[str], None] = print) -> LayerDump:
    import onnxruntime as ort

    from ...layerwise import graph_layers

    exposed = workdir / "artifact-exposed.onnx"
    expose_all(artifact.file("model"), exposed)
    log(f"running {artifact.path} with its layers exposed on {len(inputs)} inputs")
    acts = run_exposed(exposed, inputs)
    names = [layer.tensor for layer in graph_layers(source)]
    tensors = match_suffixed(names, acts, QDQ_SUFFIXES)
    notes = []
    if artifact.precision == "int8":
        notes.append("int8 layers run as QDQ in float with graph optimisations off (onnxruntime's "
                     "debug mode); the integer kernels' end-to-end parity is the artifact's")
    return LayerDump(tensors=tensors, label=f"onnxruntime {ort.__version__} {artifact.precision}, layers exposed",
                     notes=notes, producers=producers(artifact.file("model"), tensors))


def producers(model_path: Path, tensors: dict[str, np.ndarray]) -> dict[str, str]:
    """The artifact's node computing each matched tensor, through the Quantize/Dequantize pair
    around it: onnxruntime's quantizer folds a Relu into the Conv before it, so the source's
    Relu output is computed by that Conv."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    by_output = {o: n for n in graph.node for o in n.output}
    found = {}
    for name in tensors:
        node = by_output.get(name)
        if node is not None:
            found[name] = f"{node.name} ({node.op_type})"
    return found
