"""hrdeploy model plugin: top-down HRNet human pose (pose_hrnet w32/w48, COCO-17 keypoints)."""
from __future__ import annotations

__all__: list[str] = []
