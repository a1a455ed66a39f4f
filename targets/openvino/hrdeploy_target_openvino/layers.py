"""``hrdeploy debug`` on OpenVINO: the converted IR run with every tensor that still carries a
name of the source ONNX graph made an output, so the core can compare it layer by layer."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from hrdeploy.artifact import Artifact
from hrdeploy.target import LayerDump


def layer_outputs(artifact: Artifact, inputs: np.ndarray, source: Path, config: dict[str, Any],
                  label: str, log: Callable[[str], None] = print) -> LayerDump:
    """The IR's value of every source tensor it still names (the ONNX frontend keeps the
    source's tensor names on the ops computing them; fused or renamed ones are absent),
    compiled with ``config`` (the artifact's own execution precision)."""
    import openvino as ov

    from hrdeploy.layerwise import graph_layers

    wanted = [layer.tensor for layer in graph_layers(source)]
    core = ov.Core()
    model = core.read_model(str(artifact.file("model")))
    by_name: dict[str, Any] = {}
    producers: dict[str, str] = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() in ("Parameter", "Constant", "Result"):
            continue
        for out in op.outputs():
            if out.get_element_type().is_real():
                for name in out.get_names():
                    if name not in by_name:
                        by_name[name] = out
                        producers[name] = f"{op.get_friendly_name()} ({op.get_type_name()})"
    names = [n for n in wanted if n in by_name]
    model.add_outputs([by_name[n] for n in names])
    log(f"running {artifact.path} with {len(names)} of {len(wanted)} source tensors exposed on {len(inputs)} inputs")
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    ports = {n: next(p for p in compiled.outputs if n in p.get_names()) for n in names}
    batches: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for i in range(len(inputs)):
        request.infer({0: np.ascontiguousarray(inputs[i:i + 1], dtype=np.float32)})
        for n in names:
            batches[n].append(np.array(request.get_tensor(ports[n]).data, dtype=np.float32, copy=True))
    tensors = {n: np.concatenate(v) for n, v in batches.items()}
    notes = ["exposing a tensor as an output stops OpenVINO fusing across it: the per-layer figures "
             "are of this exposed graph; the artifact's end-to-end parity is its own"]
    if artifact.precision == "int8":
        notes.append("int8: each exposed tensor is the layer's output before the FakeQuantize that feeds the next layer")
    return LayerDump(tensors=tensors, producers={n: producers[n] for n in names},
                     label=f"{label}, layers exposed", notes=notes)
