"""HRNet building blocks shared by every HRNet model plugin (classification, top-down pose, DEKR).

Module and attribute names reproduce the official implementations
(HRNet-Image-Classification ``cls_hrnet.py``, HRNet-Human-Pose-Estimation ``pose_hrnet.py``)
so that their checkpoints load strictly with unchanged key names and order. A model class
subclasses :class:`HRNetBackbone` and adds its head as further attributes, keeping the
official top-level names (``conv1, bn1, ..., stage4`` then the head).

Export notes: upsampling uses a constant ``scale_factor`` (an ONNX ``Resize`` with fixed
scales, valid for any input size divisible by the branch strides), and no activation is in
place so the legacy ONNX exporter sees a plain graph.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from torch import Tensor, nn

BN_MOMENTUM = 0.1
BN_EPS = 1e-5


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = _bn(planes)
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = _bn(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = _bn(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = _bn(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = _bn(planes * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"BASIC": BasicBlock, "BOTTLENECK": Bottleneck}


def make_layer(block: type[BasicBlock] | type[Bottleneck], inplanes: int, planes: int,
               blocks: int, stride: int = 1) -> nn.Sequential:
    """A residual layer as the official ``_make_layer``: the first block gets a conv1x1+BN
    shortcut (``downsample.0/1``) when stride or width change."""
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * block.expansion, kernel_size=1, stride=stride, bias=False),
            _bn(planes * block.expansion),
        )
    layers: list[nn.Module] = [block(inplanes, planes, stride, downsample)]
    for _ in range(1, blocks):
        layers.append(block(planes * block.expansion, planes))
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches followed by the exchange unit (``branches.B.K.*``, ``fuse_layers.i.j.*``).

    ``fuse_layers[i][j]`` brings branch j to branch i's resolution: conv1x1+BN then nearest
    upsampling when j > i, a chain of (i - j) conv3x3 stride-2 + BN links (ReLU on all but the
    last) when j < i, nothing when j == i. Each output is the sum over j, then ReLU. With
    ``multi_scale_output=False`` only the highest-resolution output is produced (and only its
    fuse layers exist, as in pose_hrnet's last module).
    """

    def __init__(self, num_branches: int, block: type[BasicBlock] | type[Bottleneck],
                 num_blocks: Sequence[int], num_inchannels: Sequence[int],
                 num_channels: Sequence[int], multi_scale_output: bool = True) -> None:
        super().__init__()
        if not (len(num_blocks) == len(num_inchannels) == len(num_channels) == num_branches):
            raise ValueError(
                f"HighResolutionModule: {num_branches} branches but num_blocks={list(num_blocks)}, "
                f"num_inchannels={list(num_inchannels)}, num_channels={list(num_channels)}")
        self.num_branches = num_branches
        self.multi_scale_output = multi_scale_output
        self.num_inchannels = list(num_inchannels)
        self.branches = nn.ModuleList(
            self._make_branch(b, block, num_blocks[b], num_channels[b]) for b in range(num_branches))
        self.fuse_layers = self._make_fuse_layers()
        self.relu = nn.ReLU()

    def _make_branch(self, index: int, block: type[BasicBlock] | type[Bottleneck],
                     num_blocks: int, channels: int) -> nn.Sequential:
        layer = make_layer(block, self.num_inchannels[index], channels, num_blocks)
        # the official code updates the branch width in place; the fuse layers read it after
        self.num_inchannels[index] = channels * block.expansion
        return layer

    def _make_fuse_layers(self) -> nn.ModuleList | None:
        if self.num_branches == 1:
            return None
        ch = self.num_inchannels
        fuse_layers: list[nn.ModuleList] = []
        for i in range(self.num_branches if self.multi_scale_output else 1):
            row: list[nn.Module | None] = []
            for j in range(self.num_branches):
                if j > i:
                    row.append(nn.Sequential(
                        nn.Conv2d(ch[j], ch[i], 1, 1, 0, bias=False),
                        _bn(ch[i]),
                        nn.Upsample(scale_factor=float(2 ** (j - i)), mode="nearest"),
                    ))
                elif j == i:
                    row.append(None)
                else:
                    links: list[nn.Module] = []
                    for k in range(i - j):
                        if k == i - j - 1:
                            links.append(nn.Sequential(conv3x3(ch[j], ch[i], 2), _bn(ch[i])))
                        else:
                            links.append(nn.Sequential(conv3x3(ch[j], ch[j], 2), _bn(ch[j]), nn.ReLU()))
                    row.append(nn.Sequential(*links))
            fuse_layers.append(nn.ModuleList(row))
        return nn.ModuleList(fuse_layers)

    def get_num_inchannels(self) -> list[int]:
        return list(self.num_inchannels)

    def forward(self, x: list[Tensor]) -> list[Tensor]:
        xs = [branch(xi) for branch, xi in zip(self.branches, x)]
        if self.fuse_layers is None:
            return xs
        out: list[Tensor] = []
        for i, row in enumerate(self.fuse_layers):
            y = xs[0] if i == 0 else row[0](xs[0])
            for j in range(1, self.num_branches):
                y = y + (xs[j] if i == j else row[j](xs[j]))
            out.append(self.relu(y))
        return out


@dataclass(frozen=True)
class StageConfig:
    """One HRNet stage (the official ``STAGEn`` yaml block)."""

    num_modules: int
    num_branches: int
    block: str
    num_blocks: tuple[int, ...]
    num_channels: tuple[int, ...]


@dataclass(frozen=True)
class HRNetConfig:
    """The backbone layout: stem, stage 1 (``layer1``) and stages 2-4.

    ``last_multi_scale_output`` applies to stage 4's last module: ``False`` in pose_hrnet (only
    the high-resolution branch comes out), ``True`` in HRNet-C and DEKR.
    """

    stage2: StageConfig
    stage3: StageConfig
    stage4: StageConfig
    stem_channels: int = 64
    layer1_block: str = "BOTTLENECK"
    layer1_num_blocks: int = 4
    layer1_channels: int = 64
    last_multi_scale_output: bool = True

    @property
    def width(self) -> int:
        return self.stage2.num_channels[0]


def _standard_stages(width: int, modules: tuple[int, int, int], blocks: int) -> dict[str, StageConfig]:
    c = width
    return {
        "stage2": StageConfig(modules[0], 2, "BASIC", (blocks,) * 2, (c, 2 * c)),
        "stage3": StageConfig(modules[1], 3, "BASIC", (blocks,) * 3, (c, 2 * c, 4 * c)),
        "stage4": StageConfig(modules[2], 4, "BASIC", (blocks,) * 4, (c, 2 * c, 4 * c, 8 * c)),
    }


HRNET_CLS_WIDTHS = (18, 30, 32, 40, 44, 48, 64)
HRNET_CLS_VARIANTS = ("w18_small_v1", "w18_small_v2") + tuple(f"w{w}" for w in HRNET_CLS_WIDTHS)


def hrnet_cls_config(width: int | str) -> HRNetConfig:
    """The official HRNet-C layouts (experiments/cls_hrnet_<variant>_*.yaml): ``18`` / ``"w18"``
    ... ``"w64"``, ``"w18_small_v1"``, ``"w18_small_v2"``."""
    name = width if isinstance(width, str) else f"w{int(width)}"
    if name == "w18_small_v1":
        return HRNetConfig(layer1_num_blocks=1, layer1_channels=32,
                           **_standard_stages(16, (1, 1, 1), 2))
    if name == "w18_small_v2":
        return HRNetConfig(layer1_num_blocks=2, layer1_channels=64,
                           **_standard_stages(18, (1, 3, 2), 2))
    if name.startswith("w") and name[1:].isdigit() and int(name[1:]) in HRNET_CLS_WIDTHS:
        return HRNetConfig(**_standard_stages(int(name[1:]), (1, 4, 3), 4))
    raise ValueError(f"unknown HRNet-C variant {width!r} (known: {', '.join(HRNET_CLS_VARIANTS)})")


def pose_hrnet_config(width: int | str) -> HRNetConfig:
    """pose_hrnet (HRNet-Human-Pose-Estimation) w32/w48: the HRNet-C w32/w48 backbone whose
    last stage-4 module only outputs the high-resolution branch."""
    w = int(str(width).lstrip("w"))
    if w not in (32, 48):
        raise ValueError(f"pose_hrnet exists in widths 32 and 48, not {width!r}")
    return replace(hrnet_cls_config(w), last_multi_scale_output=False)


class HRNetBackbone(nn.Module):
    """Stem, stage 1 and stages 2-4 with the official attribute names.

    Subclasses add their head after calling ``super().__init__(config)`` so the state_dict
    order matches the official one (backbone first, head last). :meth:`forward_features`
    returns the branch outputs of stage 4, highest resolution first (a single tensor in the
    list when ``last_multi_scale_output`` is False). ``self.stage_channels`` holds the widths
    of those outputs.
    """

    def __init__(self, config: HRNetConfig) -> None:
        super().__init__()
        self.config = config
        stem = config.stem_channels
        self.conv1 = nn.Conv2d(3, stem, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = _bn(stem)
        self.conv2 = nn.Conv2d(stem, stem, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn2 = _bn(stem)
        self.relu = nn.ReLU()

        block1 = BLOCKS[config.layer1_block]
        self.layer1 = make_layer(block1, stem, config.layer1_channels, config.layer1_num_blocks)
        pre = [block1.expansion * config.layer1_channels]

        stages = (config.stage2, config.stage3, config.stage4)
        for n, cfg in enumerate(stages, start=2):
            channels = [c * BLOCKS[cfg.block].expansion for c in cfg.num_channels]
            setattr(self, f"transition{n - 1}", self._make_transition(pre, channels))
            multi = config.last_multi_scale_output if n == 4 else True
            stage, pre = self._make_stage(cfg, channels, multi)
            setattr(self, f"stage{n}", stage)
        self.stage_channels: list[int] = pre

    @staticmethod
    def _make_transition(pre: list[int], cur: list[int]) -> nn.ModuleList:
        layers: list[nn.Module | None] = []
        for i, out_ch in enumerate(cur):
            if i < len(pre):
                if out_ch != pre[i]:
                    layers.append(nn.Sequential(conv3x3(pre[i], out_ch), _bn(out_ch), nn.ReLU()))
                else:
                    layers.append(None)
            else:
                # a new, lower-resolution branch grows from the previous lowest one
                convs: list[nn.Module] = []
                for j in range(i + 1 - len(pre)):
                    in_ch = pre[-1]
                    o = out_ch if j == i - len(pre) else in_ch
                    convs.append(nn.Sequential(conv3x3(in_ch, o, 2), _bn(o), nn.ReLU()))
                layers.append(nn.Sequential(*convs))
        return nn.ModuleList(layers)

    @staticmethod
    def _make_stage(cfg: StageConfig, inchannels: list[int],
                    multi_scale_output: bool) -> tuple[nn.Sequential, list[int]]:
        block = BLOCKS[cfg.block]
        modules: list[HighResolutionModule] = []
        channels = list(inchannels)
        for m in range(cfg.num_modules):
            multi = multi_scale_output or m < cfg.num_modules - 1
            module = HighResolutionModule(cfg.num_branches, block, cfg.num_blocks, channels,
                                          cfg.num_channels, multi)
            channels = module.get_num_inchannels()
            modules.append(module)
        if not multi_scale_output:
            channels = channels[:1]
        return nn.Sequential(*modules), channels

    @staticmethod
    def _apply_transition(transition: nn.ModuleList, xs: list[Tensor]) -> list[Tensor]:
        out: list[Tensor] = []
        for i, t in enumerate(transition):
            if t is None:
                out.append(xs[i])
            else:
                out.append(t(xs[i] if i < len(xs) else xs[-1]))
        return out

    def forward_features(self, x: Tensor) -> list[Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        xs = [self.layer1(x)]
        xs = self.stage2(self._apply_transition(self.transition1, xs))
        xs = self.stage3(self._apply_transition(self.transition2, xs))
        return self.stage4(self._apply_transition(self.transition3, xs))

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.forward_features(x)


def state_dict_shapes(module: nn.Module) -> dict[str, list[int]]:
    """key -> shape of a module's state_dict, in order (works on the meta device)."""
    return {k: list(v.shape) for k, v in module.state_dict().items()}


__all__ = [
    "BN_EPS", "BN_MOMENTUM", "BLOCKS", "BasicBlock", "Bottleneck", "HighResolutionModule",
    "HRNetBackbone", "HRNetConfig", "StageConfig", "HRNET_CLS_VARIANTS", "HRNET_CLS_WIDTHS",
    "conv3x3", "hrnet_cls_config", "make_layer", "pose_hrnet_config", "state_dict_shapes",
]
