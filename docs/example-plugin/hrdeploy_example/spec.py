"""A classification model: the core's ClassificationSpec brings preprocessing, ImageNet
reading, the top-k metric and drawing; the plugin adds its network."""
from __future__ import annotations

from pathlib import Path

from hrdeploy.errors import WeightsError
from hrdeploy.tasks.classification import ClassificationSpec, classification_variant


class TinyNetSpec(ClassificationSpec):
    name = "tinynet"
    description = "a 3-layer convnet (example plugin)"
    variants = {"s": classification_variant("s", size=64, resize_short=72, description="64x64 input")}

    def build(self, variant, options=None):
        from .model import TinyNet  # torch only here: deployment boxes run without it

        return TinyNet()

    def load_weights(self, module, path: Path, variant) -> str:
        from hrdeploy.checkpoints import read_state_dict  # never runs code from the file

        state, _notes = read_state_dict(path)
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise WeightsError(f"{path} is not a tinynet checkpoint: {str(e).splitlines()[0]}") from None
        return "plain state_dict"
