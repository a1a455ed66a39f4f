"""The HRNet-C model family as hrdeploy sees it."""
from __future__ import annotations

from pathlib import Path
from typing import Any, TYPE_CHECKING

from hrdeploy.model import Variant
from hrdeploy.tasks.classification import ClassificationSpec

from .variants import VARIANTS

if TYPE_CHECKING:
    import torch


class HRNetClsSpec(ClassificationSpec):
    name = "hrnet_cls"
    description = ("HRNet-C ImageNet classifier (HRNet-Image-Classification); loads official, "
                   "timm and mmpretrain/mmcls checkpoints")
    variants = VARIANTS

    def build(self, variant: Variant, options: dict[str, Any] | None = None) -> "torch.nn.Module":
        from hrdeploy.nn.hrnet import hrnet_cls_config

        from .model import HRNetClassifier

        return HRNetClassifier(hrnet_cls_config(variant.extra["config"])).eval()

    def load_weights(self, module: "torch.nn.Module", path: Path, variant: Variant) -> str:
        from .weights import load_checkpoint

        return load_checkpoint(module, path, variant.name)
