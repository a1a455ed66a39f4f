"""TResNet-M/L/XL (Ridnik et al. 2021) as a plain PyTorch module, in current timm's layout.

The state_dict has exactly the keys, order and shapes of ``timm.create_model('tresnet_x')``
(timm 1.0): ``body.s2d``, ``body.conv1.{conv,bn}``, ``body.layerN.k.{downsample.1,conv1,conv2,
se,conv3}`` and ``head.fc``. The forward uses only ops the legacy ONNX exporter maps to
standard operators (Reshape/Transpose, Slice/Concat, Conv, AveragePool, ReduceMean, Gemm).

The Ascend flavour (:class:`TResNetConfig` with ``block_slope=0.01`` and ``blur_padding=
"zeros"``) is the network Ascend's TResNet.patch makes of timm v0.4.5: plain BatchNorm, every
LeakyReLU at slope 0.01 and a zero-padded blur. It has the same parameters, so it shares the
module; only its checkpoint names differ (see :mod:`hrdeploy_tresnet.weights`).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

BLOCK_KINDS = ("basic", "basic", "bottleneck", "bottleneck")


@dataclass(frozen=True)
class TResNetConfig:
    """Architecture of one TResNet size and flavour."""

    layers: tuple[int, int, int, int]
    width_factor: float = 1.0
    num_classes: int = 1000
    stem_slope: float = 1e-2
    block_slope: float = 1e-3
    # timm reflects the border before the blur; Ascend's patch pads with zeros
    blur_padding: str = "reflect"

    @property
    def planes(self) -> int:
        return int(64 * self.width_factor)

    @property
    def num_features(self) -> int:
        return self.planes * 8 * Bottleneck.expansion


CONFIGS: dict[str, TResNetConfig] = {
    "m": TResNetConfig(layers=(3, 4, 11, 3)),
    "l": TResNetConfig(layers=(4, 5, 18, 3), width_factor=1.2),
    "xl": TResNetConfig(layers=(4, 5, 24, 3), width_factor=1.3),
    "m_ascend": TResNetConfig(layers=(3, 4, 11, 3), block_slope=1e-2, blur_padding="zeros"),
}


class SpaceToDepth(nn.Module):
    """Moves each 4x4 pixel block into channels, ordered (row in block, column in block,
    channel): the same order as ONNX's SpaceToDepth and timm's stem."""

    def __init__(self, block: int = 4) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        b = self.block
        x = x.reshape(n, c, h // b, b, w // b, b)
        x = x.permute(0, 3, 5, 1, 2, 4)
        return x.reshape(n, c * b * b, h // b, w // b)


class BlurPool(nn.Module):
    """Anti-aliased stride-2 downsampling: a depthwise 3x3 binomial blur ([1,2,1] outer
    [1,2,1] / 16) applied with stride 2. The filter is a non-persistent buffer, as in timm, so
    it never appears in checkpoints."""

    def __init__(self, channels: int, padding: str = "reflect") -> None:
        super().__init__()
        if padding not in ("reflect", "zeros"):
            raise ValueError(f"blur padding must be 'reflect' or 'zeros', not {padding!r}")
        self.channels = channels
        self.padding = padding
        taps = torch.tensor([1.0, 2.0, 1.0]) / 4.0
        filt = (taps[:, None] * taps[None, :]).expand(channels, 1, 3, 3).contiguous()
        self.register_buffer("filt", filt, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == "reflect":
            return F.conv2d(reflect_pad1(x), self.filt, stride=2, groups=self.channels)
        return F.conv2d(x, self.filt, stride=2, padding=1, groups=self.channels)


def reflect_pad1(x: torch.Tensor) -> torch.Tensor:
    """Reflect padding by one pixel (the border gets the second row/column), written as
    Slice + Concat. ``F.pad(mode="reflect")`` exports as a reflect-mode Pad whose pads come
    from a Slice(step -1) subgraph the exporter cannot fold; vendor compilers handle neither
    as well as constant slices. The values are copies, so the result is identical."""
    x = torch.cat([x[:, :, 1:2], x, x[:, :, -2:-1]], dim=2)
    return torch.cat([x[:, :, :, 1:2], x, x[:, :, :, -2:-1]], dim=3)


class ConvBnAct(nn.Module):
    """Conv (no bias) + BatchNorm + optional LeakyReLU + optional blur downsampling.

    With ``blur`` the convolution runs at stride 1 and the blur does the stride-2 step
    (timm's ConvNormActAa). ``slope=None`` means no activation (timm's ``apply_act=False``).
    """

    def __init__(self, cin: int, cout: int, kernel: int, *, stride: int = 1, slope: float | None = None,
                 blur: str | None = None) -> None:
        super().__init__()
        if stride not in (1, 2) or (stride == 2 and blur is None):
            raise ValueError("stride 2 is only built with blur downsampling")
        self.conv = nn.Conv2d(cin, cout, kernel, stride=1, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act: nn.Module = nn.LeakyReLU(slope) if slope is not None else nn.Identity()
        self.aa: nn.Module = BlurPool(cout, blur) if stride == 2 and blur else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.aa(self.act(self.bn(self.conv(x))))


class SqueezeExcite(nn.Module):
    """Channel gate: mean over H, W -> 1x1 conv -> ReLU -> 1x1 conv -> sigmoid -> scale."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced, 1, bias=True)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(reduced, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        s = self.fc2(self.relu(self.fc1(s)))
        return x * torch.sigmoid(s)


def _downsample(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    """Shortcut projection: 2x2 average pool (ceil mode, padding not counted) then a 1x1
    conv + BN without activation. Index 1 holds the conv so the keys read ``downsample.1``."""
    if stride == 1 and cin == cout:
        return None
    if stride != 2:
        raise ValueError("TResNet only projects shortcuts at stride 2")
    return nn.Sequential(
        nn.AvgPool2d(kernel_size=2, stride=2, ceil_mode=True, count_include_pad=False),
        ConvBnAct(cin, cout, 1, slope=None))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int, use_se: bool, cfg: TResNetConfig) -> None:
        super().__init__()
        # attribute order fixes the state_dict order: timm registers the shortcut first
        self.downsample = _downsample(cin, planes * self.expansion, stride)
        self.conv1 = ConvBnAct(cin, planes, 3, stride=stride, slope=cfg.block_slope, blur=cfg.blur_padding)
        self.conv2 = ConvBnAct(planes, planes, 3, slope=None)
        self.se = SqueezeExcite(planes, max(planes * self.expansion // 4, 64)) if use_se else None
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.downsample(x) if self.downsample is not None else x
        out = self.conv2(self.conv1(x))
        if self.se is not None:
            out = self.se(out)
        return self.act(out + shortcut)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, use_se: bool, cfg: TResNetConfig) -> None:
        super().__init__()
        self.downsample = _downsample(cin, planes * self.expansion, stride)
        self.conv1 = ConvBnAct(cin, planes, 1, slope=cfg.block_slope)
        self.conv2 = ConvBnAct(planes, planes, 3, stride=stride, slope=cfg.block_slope, blur=cfg.blur_padding)
        # the gate sits on the narrow 3x3 output, before the expanding 1x1
        self.se = SqueezeExcite(planes, max(planes * self.expansion // 8, 64)) if use_se else None
        self.conv3 = ConvBnAct(planes, planes * self.expansion, 1, slope=None)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.downsample(x) if self.downsample is not None else x
        out = self.conv2(self.conv1(x))
        if self.se is not None:
            out = self.se(out)
        out = self.conv3(out)
        return self.act(out + shortcut)


class Head(nn.Module):
    """Global average pooling written as a mean over H and W (exports as ReduceMean, so any
    input size stays right), then the classifier."""

    def __init__(self, features: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


class TResNet(nn.Module):
    """Image (N, 3, H, W) with H, W multiples of 32 -> logits (N, num_classes)."""

    def __init__(self, cfg: TResNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        planes = cfg.planes
        stages: list[tuple[str, nn.Module]] = [
            ("s2d", SpaceToDepth(4)),
            ("conv1", ConvBnAct(3 * 16, planes, 3, slope=cfg.stem_slope)),
        ]
        cin = planes
        for i, (kind, blocks) in enumerate(zip(BLOCK_KINDS, cfg.layers)):
            block = BasicBlock if kind == "basic" else Bottleneck
            width = planes * 2 ** i
            layer = []
            for k in range(blocks):
                layer.append(block(cin, width, stride=2 if (i > 0 and k == 0) else 1,
                                   use_se=i < 3, cfg=cfg))
                cin = width * block.expansion
            stages.append((f"layer{i + 1}", nn.Sequential(*layer)))
        self.body = nn.Sequential(OrderedDict(stages))
        self.head = Head(cfg.num_features, cfg.num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(image))


def build_tresnet(variant: str) -> TResNet:
    """The network of a variant name (``m``, ``l``, ``xl``, ``m_ascend``) in eval mode."""
    try:
        cfg = CONFIGS[variant]
    except KeyError:
        raise ValueError(f"unknown TResNet variant {variant!r}; known: {', '.join(CONFIGS)}") from None
    return TResNet(cfg).eval()
