"""``hrdeploy debug`` on VastAI: refused, because VastAI documents no per-layer dump.

What was looked for (December 2026): the public VastAI material (Vastai/VastModelZOO's docs
``doc_vamc.md``, ``doc_vamp.md``, ``vamc_config.yaml`` and its per-model deploy guides,
Vastai/VastStreamX-Samples) documents vamc's build configs, vamp's performance and dataset
runs (``--datalist`` / ``--path_output``: the network's *outputs* per input, as npz) and the
vaststreamx runtime API; none documents a dump of intermediate tensors or a per-layer compare
(vamc's own manual ships inside its release package, ``vamc_x.x.x/docs/README.md``, and is
not public). A plan that runs vamp for the network's outputs only would compare what
``hrdeploy verify`` already compares, not layers, so hrdeploy does not pretend it does.

What would make it possible: a documented VastAI dump facility (a vamc/vamp option writing each
layer's output with the ONNX tensor it stands for), or a debug build of the model with the
intermediate tensors of interest as extra graph outputs, compiled by vamc and run by
vaststreamx on the device -- a different compiled graph than the artifact's (extra outputs stop
fusions), which hrdeploy does not drive today.
"""
from __future__ import annotations

REASON = ("VastAI documents no per-layer dump for vamc, vamp or VastStreamX, so hrdeploy cannot compare "
          "this model layer by layer (vamp's --path_output holds the network's outputs only, which "
          "'hrdeploy verify' already compares)")
HINT = ("layer-wise debugging needs a vendor dump of every layer's output; compare the outputs with "
        "'hrdeploy verify', or debug the same ONNX model on a target that exposes its layers (onnxruntime, sophon)")
