"""PyTorch building blocks shared by model plugins (imports torch: use only in build/load code)."""
from __future__ import annotations

from .hrnet import (BasicBlock, Bottleneck, HighResolutionModule, HRNetBackbone, HRNetConfig,
                    StageConfig, hrnet_cls_config, pose_hrnet_config, state_dict_shapes)

__all__ = ["BasicBlock", "Bottleneck", "HighResolutionModule", "HRNetBackbone", "HRNetConfig",
           "StageConfig", "hrnet_cls_config", "pose_hrnet_config", "state_dict_shapes"]
