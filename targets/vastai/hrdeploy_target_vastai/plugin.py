"""Entry point ``vastai`` of the group ``hrdeploy.targets``."""
from __future__ import annotations

from hrdeploy import hookimpl


@hookimpl
def hrdeploy_targets() -> list:
    from .target import VastaiTarget

    return [VastaiTarget()]
