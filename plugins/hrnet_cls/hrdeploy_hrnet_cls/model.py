"""HRNet-C (HRNet-Image-Classification ``cls_hrnet.py``) as a torch module with the official
state_dict keys and order: the shared backbone, then ``incre_modules``, ``downsamp_modules``,
``final_layer`` and ``classifier``."""
from __future__ import annotations

from torch import Tensor, nn

from hrdeploy.nn.hrnet import BN_EPS, BN_MOMENTUM, Bottleneck, HRNetBackbone, HRNetConfig, make_layer

HEAD_CHANNELS = (32, 64, 128, 256)
FEATURES = 2048
NUM_CLASSES = 1000


def _conv_bn_relu(in_ch: int, out_ch: int, kernel: int, stride: int) -> nn.Sequential:
    # the official head convs carry a bias even though a BN follows (mmpretrain's do not)
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=True),
        nn.BatchNorm2d(out_ch, eps=BN_EPS, momentum=BN_MOMENTUM),
        nn.ReLU(),
    )


class HRNetClassifier(HRNetBackbone):
    """HRNet-C: the four branch outputs are widened (one Bottleneck each), merged from high to
    low resolution with stride-2 convs, projected to 2048 channels, averaged and classified.

    Global pooling is a mean over H and W (ONNX ``ReduceMean``), so the exported graph stays
    right for input sizes other than 224.
    """

    def __init__(self, config: HRNetConfig, num_classes: int = NUM_CLASSES) -> None:
        super().__init__(config)
        if len(self.stage_channels) != len(HEAD_CHANNELS):
            raise ValueError("HRNet-C needs a four-branch stage 4 with multi-scale output")
        exp = Bottleneck.expansion
        self.incre_modules = nn.ModuleList(
            make_layer(Bottleneck, ch, head, 1) for ch, head in zip(self.stage_channels, HEAD_CHANNELS))
        self.downsamp_modules = nn.ModuleList(
            _conv_bn_relu(HEAD_CHANNELS[i] * exp, HEAD_CHANNELS[i + 1] * exp, 3, 2)
            for i in range(len(HEAD_CHANNELS) - 1))
        self.final_layer = _conv_bn_relu(HEAD_CHANNELS[-1] * exp, FEATURES, 1, 1)
        self.classifier = nn.Linear(FEATURES, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        ys = self.forward_features(x)
        y = self.incre_modules[0](ys[0])
        for i, down in enumerate(self.downsamp_modules):
            y = self.incre_modules[i + 1](ys[i + 1]) + down(y)
        y = self.final_layer(y)
        y = y.mean(dim=(2, 3))
        return self.classifier(y)
