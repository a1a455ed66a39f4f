"""Entry point of the ``hrnet_pose`` model plugin (imports no torch)."""
from __future__ import annotations

from hrdeploy import hookimpl


@hookimpl
def hrdeploy_models() -> list:
    from .spec import HRNetPoseSpec

    return [HRNetPoseSpec()]
