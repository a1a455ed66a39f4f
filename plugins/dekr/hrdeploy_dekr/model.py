"""DEKR (HRNet/DEKR ``hrnet_dekr.PoseHigherResolutionNet``) in PyTorch without torchvision.

Key names, order and shapes are the official ones, so ``pose_dekr_hrnetw{32,48}_coco.pth`` load
strictly. The adaptive convolution of the offset branches (torchvision ``DeformConv2d`` in the
official code) is written with standard operators so that it exports to ONNX that
onnxruntime runs at any input size:

* ``grid_sample`` (default, opset >= 16): the 9 taps of every output pixel are sampled with
  ``grid_sample(bilinear, zeros, align_corners=True)`` on the normalised grid, which is
  exactly torchvision's bilinear sampling (taps outside the map read 0), then one 1x1 Conv with
  ``weight.flatten(1)``. Shapes come from the input at run time: the H and W axes stay dynamic.
* ``deformconv``: the same forward in PyTorch, exported as one ONNX ``DeformConv`` node
  (opset >= 19; onnxruntime 1.17+ runs it).

The official in-place ``offset[:, 0::2] += translation`` would export as ScatterND; the offsets
are computed out of place here.
"""
from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hrdeploy.nn.hrnet import BasicBlock, HRNetBackbone, HRNetConfig, hrnet_cls_config, make_layer

NUM_JOINTS = 17
CHANNELS_PER_JOINT = 15
ADAPT_IMPLS = ("grid_sample", "deformconv")


def dekr_config(width: int) -> HRNetConfig:
    """The DEKR COCO backbone (w32/w48 yaml): HRNet-W32/W48 whose stage 4 keeps all 4 outputs."""
    if width not in (32, 48):
        raise ValueError(f"DEKR exists in widths 32 and 48, not {width}")
    return replace(hrnet_cls_config(width), last_multi_scale_output=True)


def deform_conv3x3_grid_sample(x: Tensor, dy: Tensor, dx: Tensor, weight: Tensor) -> Tensor:
    """torchvision ``deform_conv2d`` (3x3, stride 1, padding 1, one offset group, no bias) with
    tap offsets ``dy``/``dx`` of shape (N, 9, H, W)."""
    n, c, h, w = x.shape
    # pixel coordinates and the normalising extents from the tensor itself, so that they stay
    # graph values (dynamic H, W) in the exported model
    ones = torch.ones_like(dy[:, :1])
    ys = torch.cumsum(ones, dim=2) - 1.0                     # (N, 1, H, W) row index
    xs = torch.cumsum(ones, dim=3) - 1.0                     # (N, 1, H, W) column index
    h_last = ys[:, :, -1:, :1]                               # H - 1
    w_last = xs[:, :, :1, -1:]                               # W - 1
    # torchvision's fixed 3x3 grid, row-major taps: (ky, kx) = (k // 3 - 1, k % 3 - 1); built
    # with arange (a traced constant) rather than torch.tensor (a tracer warning)
    k = torch.arange(9, dtype=x.dtype, device=x.device).view(1, 9, 1, 1)
    tap_y = torch.floor(k / 3.0)
    tap_x = k - 3.0 * tap_y - 1.0
    tap_y = tap_y - 1.0
    py = (ys + tap_y) + dy
    px = (xs + tap_x) + dx
    grid = torch.stack([px * (2.0 / w_last) - 1.0, py * (2.0 / h_last) - 1.0], dim=-1)
    grid = grid.reshape(n, 9, -1, 2)                          # (N, 9, H*W, 2)
    cols = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    cols = cols.reshape(n, c * 9, h, w)                       # (N, C*9, H, W), tap-minor like weight
    # the taps are contracted with a 1x1 convolution rather than MatMul(weight (O, C*9), cols
    # (N, C*9, H*W)): TPU-MLIR 1.30.2's CPU MatMul of a 2-D weight by a batched 3-D tensor
    # writes past its output buffer (heap corruption in model_transform's top-MLIR check,
    # measured on DEKR-W32 at 512x512), and every NPU compiler maps a 1x1 Conv natively
    return F.conv2d(cols, weight.flatten(1)[:, :, None, None])   # (N, O, H, W)


class _DeformConvOnnx(torch.autograd.Function):
    """Runs the grid_sample form in PyTorch; exports as ONNX ``DeformConv`` (opset 19)."""

    @staticmethod
    def forward(ctx, x: Tensor, offset: Tensor, weight: Tensor) -> Tensor:  # type: ignore[override]
        return deform_conv3x3_grid_sample(x, offset[:, 0::2], offset[:, 1::2], weight)

    @staticmethod
    def symbolic(g, x, offset, weight):  # type: ignore[no-untyped-def]
        return g.op("DeformConv", x, weight, offset, kernel_shape_i=[3, 3], pads_i=[1, 1, 1, 1],
                    strides_i=[1, 1], dilations_i=[1, 1], group_i=1, offset_group_i=1)


class AdaptiveConv3x3(nn.Module):
    """Holds ``adapt_conv.weight`` (torchvision DeformConv2d without bias)."""

    def __init__(self, inplanes: int, outplanes: int, impl: str = "grid_sample") -> None:
        super().__init__()
        if impl not in ADAPT_IMPLS:
            raise ValueError(f"adaptive conv implementation must be one of {ADAPT_IMPLS}, not {impl!r}")
        self.weight = nn.Parameter(torch.empty(outplanes, inplanes, 3, 3))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        self.impl = impl

    def forward(self, x: Tensor, dy: Tensor, dx: Tensor) -> Tensor:
        if self.impl == "deformconv":
            return _DeformConvOnnx.apply(x, interleave(dy, dx), self.weight)
        return deform_conv3x3_grid_sample(x, dy, dx, self.weight)


def interleave(dy: Tensor, dx: Tensor) -> Tensor:
    """(N, 9, H, W) x 2 -> torchvision/ONNX offset layout (N, 18, H, W): (dy_k, dx_k) per tap."""
    n, _, h, w = dy.shape
    return torch.stack([dy, dx], dim=2).reshape(n, 18, h, w)


class AdaptBlock(nn.Module):
    """The official ``conv_block.AdaptBlock`` (stride 1, dilation 1, no downsample): a per-pixel
    2x2 transform ``T`` and translation ``t`` from 3x3 convs deform the regular 3x3 grid ``R``
    (the ``regular_matrix`` buffer, loaded from the checkpoint): offsets ``T R - R + t``."""

    expansion = 1

    def __init__(self, inplanes: int, outplanes: int, impl: str = "grid_sample") -> None:
        super().__init__()
        regular = torch.tensor([[-1, -1, -1, 0, 0, 0, 1, 1, 1], [-1, 0, 1, -1, 0, 1, -1, 0, 1]])
        self.register_buffer("regular_matrix", regular.float())   # persistent: in the state_dict
        self.transform_matrix_conv = nn.Conv2d(inplanes, 4, 3, 1, 1, bias=True)
        self.translation_conv = nn.Conv2d(inplanes, 2, 3, 1, 1, bias=True)
        self.adapt_conv = AdaptiveConv3x3(inplanes, outplanes, impl)
        self.bn = nn.BatchNorm2d(outplanes, momentum=0.1)
        self.relu = nn.ReLU()

    def tap_offsets(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(dy, dx), each (N, 9, H, W): row r of ``T R - R`` plus the translation's channel r."""
        t = self.transform_matrix_conv(x)                       # (N, 4, H, W) = T00 T01 T10 T11
        r0 = self.regular_matrix[0].view(1, 9, 1, 1)
        r1 = self.regular_matrix[1].view(1, 9, 1, 1)
        shift = self.translation_conv(x)
        dy = (t[:, 0:1] * r0 + t[:, 1:2] * r1 - r0) + shift[:, 0:1]
        dx = (t[:, 2:3] * r0 + t[:, 3:4] * r1 - r1) + shift[:, 1:2]
        return dy, dx

    def offset(self, x: Tensor) -> Tensor:
        """The official 18-channel offset tensor (what torchvision's DeformConv2d receives)."""
        return interleave(*self.tap_offsets(x))

    def forward(self, x: Tensor) -> Tensor:
        dy, dx = self.tap_offsets(x)
        out = self.bn(self.adapt_conv(x, dy, dx))
        return self.relu(out + x)


def _head_transition(inplanes: int, outplanes: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inplanes, outplanes, 1, 1, 0, bias=False),
                         nn.BatchNorm2d(outplanes), nn.ReLU())


class DEKRNet(HRNetBackbone):
    """``forward(image) -> (heatmap (N, 18, H/4, W/4), offset (N, 34, H/4, W/4))``: 17 joint
    heatmaps plus the person centre last; (dx, dy) per joint with pose = pixel - offset."""

    def __init__(self, width: int = 32, adapt_impl: str = "grid_sample") -> None:
        super().__init__(dekr_config(width))
        inp = sum(self.stage_channels)                          # 480 (w32) / 720 (w48)
        self.width = width
        self.transition_heatmap = _head_transition(inp, width)
        self.transition_offset = _head_transition(inp, NUM_JOINTS * CHANNELS_PER_JOINT)
        self.head_heatmap = nn.ModuleList([make_layer(BasicBlock, width, width, 1),
                                           nn.Conv2d(width, NUM_JOINTS + 1, 1, 1, 0)])
        self.offset_feature_layers = nn.ModuleList(
            nn.Sequential(AdaptBlock(CHANNELS_PER_JOINT, CHANNELS_PER_JOINT, adapt_impl),
                          AdaptBlock(CHANNELS_PER_JOINT, CHANNELS_PER_JOINT, adapt_impl))
            for _ in range(NUM_JOINTS))
        self.offset_final_layer = nn.ModuleList(
            nn.Conv2d(CHANNELS_PER_JOINT, 2, 1, 1, 0) for _ in range(NUM_JOINTS))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        ys = self.forward_features(x)
        size = ys[0].shape[-2:]
        # F.upsample(mode='bilinear') of the official code = align_corners False
        feat = torch.cat([ys[0]] + [F.interpolate(y, size=size, mode="bilinear", align_corners=False)
                                    for y in ys[1:]], dim=1)
        heatmap = self.head_heatmap[1](self.head_heatmap[0](self.transition_heatmap(feat)))
        off = self.transition_offset(feat)
        c = CHANNELS_PER_JOINT
        offsets = [self.offset_final_layer[j](self.offset_feature_layers[j](off[:, j * c:(j + 1) * c]))
                   for j in range(NUM_JOINTS)]
        return heatmap, torch.cat(offsets, dim=1)


def set_adapt_impl(model: nn.Module, impl: str) -> None:
    """Switch every adaptive conv of ``model`` between the two export forms."""
    if impl not in ADAPT_IMPLS:
        raise ValueError(f"adaptive conv implementation must be one of {ADAPT_IMPLS}, not {impl!r}")
    for m in model.modules():
        if isinstance(m, AdaptiveConv3x3):
            m.impl = impl
