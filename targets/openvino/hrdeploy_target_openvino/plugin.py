"""Entry point of the OpenVINO target (group ``hrdeploy.targets``): imports nothing heavy, so
``hrdeploy list`` stays fast and works where openvino is absent (the probe says so)."""
from __future__ import annotations

from hrdeploy import hookimpl


@hookimpl
def hrdeploy_targets() -> list:
    from .target import OpenVinoTarget

    return [OpenVinoTarget()]
