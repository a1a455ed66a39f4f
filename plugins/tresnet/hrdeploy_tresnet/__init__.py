"""hrdeploy model plugin: TResNet-M/L/XL image classification (timm layout, plus the
Ascend-patched TResNet-M flavour). The network lives in :mod:`.model`, checkpoint layouts in
:mod:`.weights`; both import torch and are loaded only when a model is built."""
