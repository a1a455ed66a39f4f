"""pose_hrnet (HRNet-Human-Pose-Estimation ``lib/models/pose_hrnet.py``) on the shared backbone.

The state_dict has the official keys in the official order: the backbone (``conv1`` ...
``stage4``, whose last module only outputs the high-resolution branch) then ``final_layer``.
"""
from __future__ import annotations

from torch import Tensor, nn

from hrdeploy.nn.hrnet import HRNetBackbone, pose_hrnet_config

NUM_JOINTS = 17


class PoseHighResolutionNet(HRNetBackbone):
    """image (N, 3, H, W) -> heatmaps (N, 17, H/4, W/4)."""

    def __init__(self, width: int = 32, num_joints: int = NUM_JOINTS) -> None:
        super().__init__(pose_hrnet_config(width))
        self.width = width
        # official FINAL_CONV_KERNEL 1: a 1x1 conv with bias on branch 0
        self.final_layer = nn.Conv2d(self.stage_channels[0], num_joints, kernel_size=1, stride=1, padding=0)

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return self.final_layer(self.forward_features(x)[0])
