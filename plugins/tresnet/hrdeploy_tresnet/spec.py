"""The ``tresnet`` model family: networks from :mod:`.model`, checkpoints via
:mod:`.weights`, everything else from the shared classification task."""
from __future__ import annotations

from pathlib import Path
from typing import Any, TYPE_CHECKING

from hrdeploy.model import Variant
from hrdeploy.tasks.classification import ClassificationSpec

from .variants import VARIANTS

if TYPE_CHECKING:
    import torch


class TResNetSpec(ClassificationSpec):
    name = "tresnet"
    description = ("TResNet-M/L/XL ImageNet classifiers (timm layout; also timm v0.4.5 InplaceABN "
                   "checkpoints and the Ascend-patched TResNet-M)")
    variants = VARIANTS

    def variant(self, name: str | None = None) -> Variant:
        # the issue and the Ascend guides write the flavour with a hyphen
        return super().variant(name.replace("-", "_") if name else name)

    def build(self, variant: Variant, options: dict[str, Any] | None = None) -> "torch.nn.Module":
        from .model import build_tresnet

        return build_tresnet(variant.extra["arch"])

    def load_weights(self, module: "torch.nn.Module", path: Path, variant: Variant) -> str:
        from .weights import load_weights

        return load_weights(module, Path(path), variant.extra["arch"])
