"""The nine official HRNet-C variants (HRNet-Image-Classification experiments/*.yaml).

Input 224x224 RGB, dynamic batch, output ``logits`` (N, 1000). Preprocessing as the official
``valid.py`` and the Ascend/VastAI seeds: short side to 256 (bilinear), centre crop 224,
/255, ImageNet mean/std.
"""
from __future__ import annotations

from hrdeploy.model import Variant
from hrdeploy.tasks.classification import classification_variant

# (variant, timm model name, parameters)
_TABLE = (
    ("w18_small_v1", "hrnet_w18_small", 13_187_464),
    ("w18_small_v2", "hrnet_w18_small_v2", 15_597_464),
    ("w18", "hrnet_w18", 21_299_004),
    ("w30", "hrnet_w30", 37_712_220),
    ("w32", "hrnet_w32", 41_232_680),
    ("w40", "hrnet_w40", 57_557_160),
    ("w44", "hrnet_w44", 67_064_984),
    ("w48", "hrnet_w48", 77_469_864),
    ("w64", "hrnet_w64", 128_059_944),
)

VARIANTS: dict[str, Variant] = {
    name: classification_variant(
        name,
        size=224,
        resize_short=256,
        outputs=("logits",),
        description=f"HRNet-C {name} ({params / 1e6:.1f} M parameters; timm {timm_name})",
        extra={"config": name, "timm_name": timm_name, "params": params},
    )
    for name, timm_name, params in _TABLE
}
# the first variant is the default: w18, the width the Ascend and VastAI seeds deploy
VARIANTS = {"w18": VARIANTS["w18"], **{k: v for k, v in VARIANTS.items() if k != "w18"}}
