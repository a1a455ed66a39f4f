"""The exportable TResNet configurations and their preprocessing.

timm's default_cfg for every TResNet is crop_pct 0.875 (short side int(224 / 0.875) = 256,
centre crop 224), bilinear, mean (0, 0, 0) and std (1, 1, 1): the network sees RGB / 255.
Ascend's TResNet_preprocess.py runs timm v0.4.5's eval loader with the same settings.
"""
from __future__ import annotations

from hrdeploy.model import Variant
from hrdeploy.tasks.classification import classification_variant

#: RGB / 255 only: TResNet was trained without mean/std normalisation
TRESNET_MEAN = (0.0, 0.0, 0.0)
TRESNET_STD = (1.0, 1.0, 1.0)


def _variant(name: str, arch: str, timm_name: str, params: int, description: str) -> Variant:
    return classification_variant(
        name, size=224, resize_short=256, mean=TRESNET_MEAN, std=TRESNET_STD,
        interpolation="pil-bilinear", outputs=("logits",), description=description,
        extra={"arch": arch, "timm_name": timm_name, "params": params})


VARIANTS: dict[str, Variant] = {
    "m": _variant("m", "m", "tresnet_m", 31_389_032,
                  "TResNet-M (timm tresnet_m): 31.4 M parameters, 224x224"),
    "l": _variant("l", "l", "tresnet_l", 55_989_256,
                  "TResNet-L (timm tresnet_l): 56.0 M parameters, 224x224"),
    "xl": _variant("xl", "xl", "tresnet_xl", 78_436_244,
                   "TResNet-XL (timm tresnet_xl): 78.4 M parameters, 224x224"),
    "m_ascend": _variant("m_ascend", "m_ascend", "tresnet_m", 31_389_032,
                         "TResNet-M as Ascend's TResNet.patch builds it (plain BN, LeakyReLU 0.01 everywhere, "
                         "zero-padded blur), for the Ascend ModelZoo checkpoint model_best.pth.tar"),
}
